"""Reading a pool a chunk of rows at a time at any side (selector.pool.read, scan_folder, decode_pool): the same
pixels as decoding the whole pool, the side capped by the images' own size, files that fail named, the next
chunk read ahead, and the decoder's workers gone when a reader is left early."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from selector.pool import PoolError, decode_pool, load_folder, load_pool, scan_folder
from selector.pool.decode import decode_file
from selector.pool.read import RowReader, decode_side
from tests.conftest import alive, children, wait_until, write_photos


def test_decode_side_is_capped_by_the_images_own_size():
    assert decode_side(224, 256, 64) == 224  # photos larger than the input: decoded at the input side
    assert decode_side(224, 64, 64) == 64  # 64 px chips: at their size; the network resizes
    assert decode_side(96, 8, 16) == 16  # never below the side the whole pool is decoded at
    assert decode_side(224, 0, 0) == 224  # sizes unknown


def test_scanning_digests_without_decoding_and_decoding_later_gives_the_same_pool(tmp_path):
    folder = write_photos(tmp_path / "p", n=6, size=90)
    scanned = scan_folder(folder)
    assert scanned.images is None and not scanned.decoded
    assert (scanned.format.channels, scanned.format.short_side) == (3, 90)
    whole = load_folder(folder)
    assert scanned.ids == whole.ids and scanned.digests == whole.digests and scanned.key == whole.key
    decoded = decode_pool(scanned)
    np.testing.assert_array_equal(decoded.images, whole.images)
    assert decode_pool(decoded) is decoded


def test_rows_read_at_a_side_are_what_decode_file_gives(tmp_path):
    folder = write_photos(tmp_path / "p", n=7, size=120)
    pool = scan_folder(folder, workers=2)
    with RowReader(pool, 100, batch=3) as reader:
        got = list(reader.chunks(np.arange(7)))
    assert [len(rows) for _, rows, _ in got] == [3, 3, 1]
    images = np.concatenate([imgs for imgs, _, _ in got])
    want = np.stack([decode_file(folder / r, 3, 100)[0] for r in pool.ids])
    np.testing.assert_array_equal(images, want)
    with RowReader(pool, 100, batch=3, prefetch=False) as reader:  # reading ahead changes nothing
        again = np.concatenate([imgs for imgs, _, _ in reader.chunks(np.arange(7))])
    np.testing.assert_array_equal(again, images)


def test_decoded_and_array_pools_read_from_their_images(tmp_path):
    npz = tmp_path / "x.npz"
    x = np.random.default_rng(0).integers(0, 255, (5, 28, 28), dtype=np.uint8)
    np.savez(npz, x=x)
    pool = load_pool(npz)
    with RowReader(pool, 28) as reader:  # the pool's own side: its images as they are
        imgs, rows, errors = reader.read(np.array([4, 1]))
    np.testing.assert_array_equal(imgs, pool.images[[4, 1]])
    assert rows.tolist() == [4, 1] and errors == {}
    with RowReader(pool, 56) as reader:  # another side: resized from the array
        assert reader.read(np.array([0]))[0].shape == (1, 1, 56, 56)


def test_a_file_that_does_not_decode_is_reported_or_fails(tmp_path):
    folder = write_photos(tmp_path / "p", n=4, size=64)
    good = (folder / "001.jpg").read_bytes()
    (folder / "001.jpg").write_bytes(good[:200])  # truncated: read for its digest, fails to decode
    pool = scan_folder(folder, workers=1)
    assert len(pool) == 4 and pool.skipped == []
    with RowReader(pool, 64) as reader:
        imgs, rows, errors = reader.read(np.arange(4))
    assert rows.tolist() == [0, 2, 3] and len(imgs) == 3 and list(errors) == [1]
    with RowReader(pool, 64, on_bad="fail") as reader, pytest.raises(PoolError, match="001.jpg"):
        reader.read(np.arange(4))
    decoded = decode_pool(pool)
    assert decoded.ids == ["000.jpg", "002.jpg", "003.jpg"] and [p for p, _ in decoded.skipped] == ["001.jpg"]


@pytest.mark.processes
def test_leaving_a_reader_early_stops_its_workers(tmp_path):
    folder = write_photos(tmp_path / "p", n=40, size=64)
    pool = scan_folder(folder, workers=2)
    reader = RowReader(pool, 64, batch=4)
    chunks = reader.chunks(np.arange(40))
    next(chunks)
    workers = children(os.getpid())
    assert workers  # the decoder's processes are running
    chunks.close()  # the consumer stops after one chunk: the chunk read ahead is abandoned
    reader.close()
    assert wait_until(lambda: not any(alive(w) for w in workers), 10)


def test_a_subset_of_a_scanned_pool_reads_its_own_rows(tmp_path):
    folder = write_photos(tmp_path / "p", n=5, size=70)
    pool = scan_folder(folder)
    sub = pool.subset(np.array([1, 3]), skipped=[("x.jpg", "gone")])
    assert sub.ids == [pool.ids[1], pool.ids[3]] and ("x.jpg", "gone") in sub.skipped
    with RowReader(sub, 70) as reader:
        imgs, _, _ = reader.read(np.array([1]))
    np.testing.assert_array_equal(imgs[0], decode_file(folder / pool.ids[3], 3, 70)[0])
    Image.open(folder / pool.ids[3]).verify()
