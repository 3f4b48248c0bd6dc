"""selector.embeddings_io: every format reads to the same selection as the .npy of the same rows; bad files,
empty or huge embeddings and a bad ``--ids`` file are one line on the command line."""
from __future__ import annotations

import csv
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from selector.cli import main
from selector.embeddings_io import READERS, EmbeddingsError, non_unit_rows, normalize_rows, read_embeddings
from tests.conftest import error_line, run

N, D = 80, 12


@pytest.fixture
def rows():
    rng = np.random.default_rng(3)
    e = rng.normal(size=(N, D)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    ids = [f"imgs/cls {i % 4}/{i:03d}.jpg" for i in range(N)]
    return e, ids


def write_all(tmp, e, ids):
    """The same rows (and ids) in every supported format; returns {suffix: path}."""
    files = {}
    np.savez(tmp / "e.npz", embeddings=e, ids=np.array(ids))
    files[".npz"] = tmp / "e.npz"
    with open(tmp / "lightly.csv", "w", newline="", encoding="utf-8") as f:  # Lightly's embeddings CSV
        w = csv.writer(f)
        w.writerow(["filenames", *[f"embedding_{j}" for j in range(D)], "labels"])
        for i, row in zip(ids, e):
            w.writerow([i, *[repr(float(v)) for v in row], 0])
    files[".csv"] = tmp / "lightly.csv"
    torch.save({"embeddings": torch.from_numpy(e), "filenames": ids}, tmp / "lightly_train.pth")  # lightly-train
    files[".pth"] = tmp / "lightly_train.pth"
    torch.save(torch.from_numpy(e), tmp / "tensor.pt")
    files[".pt"] = tmp / "tensor.pt"
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"filename": ids, "embedding": [r.tolist() for r in e]}), tmp / "e.parquet")
        files[".parquet"] = tmp / "e.parquet"
    except ImportError:
        pass
    return files


def test_every_format_reads_the_same_rows_and_ids(tmp_path, rows):
    e, ids = rows
    files = write_all(tmp_path, e, ids)
    for suffix, path in files.items():
        got, got_ids = read_embeddings(path)
        assert got.dtype == np.float32 and got.shape == (N, D), suffix
        np.testing.assert_allclose(got, e, rtol=0, atol=1e-7 if suffix == ".csv" else 0)
        assert got_ids == (None if suffix == ".pt" else ids), suffix


def _select(args, with_output=False):
    r = CliRunner().invoke(main, [str(a) for a in ["select", "-b", 15, "-s", "kcenter", *args]],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    with open(args[args.index("-o") + 1], encoding="utf-8") as f:
        paths = [row["path"] for row in csv.DictReader(f)]
    return (paths, r.output) if with_output else paths


@pytest.mark.parametrize("suffix", [".npz", ".csv", ".pth", ".pt", ".parquet"])
def test_each_format_gives_the_same_selection_as_npy(tmp_path, rows, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    e, ids = rows
    np.save(tmp_path / "e.npy", e)
    (tmp_path / "ids.txt").write_text("".join(i + "\n" for i in ids), encoding="utf-8")
    want = _select(["--embeddings", tmp_path / "e.npy", "--ids", tmp_path / "ids.txt", "-o", tmp_path / "npy.csv"])
    path = write_all(tmp_path, e, ids)[suffix]
    extra = ["--ids", tmp_path / "ids.txt"] if suffix == ".pt" else []  # a bare tensor has no ids
    got = _select(["--embeddings", path, *extra, "-o", tmp_path / "other.csv"])
    assert got == want and len(set(got)) == 15


def test_rows_not_unit_length_warn_and_normalize(tmp_path, rows):
    e, ids = rows
    scale = np.linspace(0.2, 5, N, dtype=np.float32)[:, None]
    np.save(tmp_path / "raw.npy", e * scale)
    np.save(tmp_path / "unit.npy", e)
    assert non_unit_rows(e) == 0 and non_unit_rows(e * scale) == N  # no scale is within 1e-3 of 1
    _, out = _select(["--embeddings", tmp_path / "raw.npy", "-o", tmp_path / "raw.csv"], with_output=True)
    assert f"WARNING: {N} of {N} rows of" in out and "--normalize" in out
    normed = _select(["--embeddings", tmp_path / "raw.npy", "--normalize", "-o", tmp_path / "n.csv"])
    assert normed == _select(["--embeddings", tmp_path / "unit.npy", "-o", tmp_path / "u.csv"])
    np.testing.assert_allclose(normalize_rows(e * scale), e, atol=1e-6)
    with pytest.raises(EmbeddingsError, match="all zero"):
        normalize_rows(np.zeros((2, 3), dtype=np.float32))


class NotATensor:
    pass


@pytest.mark.parametrize("make, match", [
    (lambda p: p.with_suffix(".h5").write_bytes(b"x") and p.with_suffix(".h5"), "unknown suffix"),
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros(5)) or p.with_suffix(".npy"), r"shape \(5,\)"),
    (lambda p: np.save(p.with_suffix(".npy"), np.array([[1.0, np.nan]])) or p.with_suffix(".npy"), "NaN"),
    (lambda p: np.savez(p.with_suffix(".npz"), a=np.zeros((2, 2)), b=np.zeros((2, 3))) or p.with_suffix(".npz"),
     "name the"),
    (lambda p: np.savez(p.with_suffix(".npz"), embeddings=np.zeros((2, 2)), ids=np.array(["a"]))
     or p.with_suffix(".npz"), "1 ids for 2 rows"),
    (lambda p: torch.save({"embeddings": torch.zeros(2, 2), "ids": ["a", "a"]}, p.with_suffix(".pt"))
     or p.with_suffix(".pt"), "ids repeat"),
    (lambda p: torch.save({"w": torch.zeros(2)}, p.with_suffix(".pt")) or p.with_suffix(".pt"), "'embeddings'"),
    (lambda p: torch.save(NotATensor(), p.with_suffix(".pt")) or p.with_suffix(".pt"), "weights_only"),
    (lambda p: p.with_suffix(".csv").write_text("path,label\na,1\n") and p.with_suffix(".csv"), "embedding_0"),
    (lambda p: p.with_suffix(".csv").write_text("filenames,embedding_0\na,x\n") and p.with_suffix(".csv"),
     "not numeric"),
])
def test_bad_files_name_the_file(tmp_path, make, match):
    path = make(tmp_path / "bad")
    with pytest.raises(EmbeddingsError, match=match) as ei:
        read_embeddings(path)
    assert str(path) in str(ei.value)


def test_cli_error_is_one_line(tmp_path):
    np.savez(tmp_path / "two.npz", a=np.zeros((4, 2)), b=np.zeros((4, 3)))
    r = CliRunner().invoke(main, ["select", "-b", "2", "--embeddings", str(tmp_path / "two.npz"),
                                  "-o", str(tmp_path / "s.csv")])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1 and "two.npz" in r.output
    assert not (tmp_path / "s.csv").exists()
    assert set(READERS) == {".npy", ".npz", ".csv", ".pt", ".pth", ".parquet"}


def test_huge_embeddings_from_the_cli_are_refused_clearly(tmp_path):
    """In-process: the command line reaches faiss through the same select_embeddings, whose check the
    subprocess test above guards against an abort."""
    x = np.random.default_rng(0).normal(size=(300, 8)) * 1e30
    np.save(tmp_path / "e.npy", x)
    r = run("select", "--embeddings", tmp_path / "e.npy", "-b", 10, "--out", tmp_path / "s.csv")
    assert r.exit_code == 1, r.output
    assert re.match(r"Error: embeddings hold values up to \d(\.\d)?e\+30 in magnitude", error_line(r)), r.output
    assert not (tmp_path / "s.csv").exists()


def test_embeddings_with_no_rows(tmp_path):
    np.save(tmp_path / "e.npy", np.zeros((0, 8), dtype=np.float32))
    r = run("select", "--embeddings", tmp_path / "e.npy", "-b", 1, "--out", tmp_path / "s.csv")
    assert r.exit_code == 1
    line = error_line(r)
    assert line.startswith(f"Error: embeddings {tmp_path / 'e.npy'} ") and "(0, 8)" in line, line
    assert "labeled" not in line


def test_ids_file_with_duplicates(tmp_path):
    np.save(tmp_path / "e.npy", np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32))
    (tmp_path / "ids.txt").write_text("a.png\nb.png\nc.png\nb.png\n")
    r = run("select", "--embeddings", tmp_path / "e.npy", "--ids", tmp_path / "ids.txt", "-b", 1,
            "--out", tmp_path / "s.csv")
    assert r.exit_code == 1
    assert error_line(r) == f"Error: ids file {tmp_path / 'ids.txt'}: 'b.png' is on lines 2 and 4"


@pytest.mark.parametrize("ids, found", [(5, "got int"), ("abc", "got str"), ([["a"], ["b"]], "an id is a list")])
def test_ids_that_are_not_names_are_one_line(tmp_path, ids, found):
    """lightly-train's dict with a 'filenames' entry that is not a list of names (a number, one string, lists)."""
    path = tmp_path / "ids_int.pt"
    torch.save({"embeddings": torch.randn(2, 4), "filenames": ids}, path)
    with pytest.raises(EmbeddingsError, match=found) as e:
        read_embeddings(path)
    assert str(path) in str(e.value)
    r = run("select", "--embeddings", path, "-b", 1, "--out", tmp_path / "s.csv")
    assert r.exit_code == 1 and str(path) in error_line(r) and "Traceback" not in r.output, r.output


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("make, found", [
    (lambda t: t.to_sparse(), "holds a sparse_coo tensor; save a dense one"),
    (lambda t: t.to_sparse_csr(), "holds a sparse_csr tensor; save a dense one"),
    (lambda t: torch.complex(t, t), "must be real numbers, got tensor dtype complex64"),
])
def test_sparse_or_complex_tensor_is_one_line(tmp_path, make, found):
    path = tmp_path / "e.pt"
    torch.save(make(torch.randn(10, 4)), path)
    r = run("select", "--embeddings", path, "-b", 1, "--out", tmp_path / "s.csv")
    assert r.exit_code == 1, r.output
    hint = " (tensor.to_dense())" if "dense" in found else ""
    assert error_line(r) == f"Error: embeddings {path} {found}{hint}", r.output
    assert "TypeError" not in r.output


def test_a_pickle_with_code_is_refused_without_suggesting_to_run_it(tmp_path):
    import os
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "e.pt"
    path.write_bytes(pickle.dumps(Payload()))
    r = run("select", "--embeddings", path, "-b", 1, "--out", tmp_path / "s.csv")
    assert r.exit_code == 1
    line = error_line(r)
    assert "refused: not a plain tensor/state-dict file" in line and str(path) in line, line
    assert "weights_only=False" not in r.output and "will likely succeed" not in r.output
    assert not marker.exists()


@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_normalize_huge_or_tiny_rows_without_overflow(tmp_path, rows, scale):
    """Rows of ~1e30 in float32 (what the huge-embeddings error suggests normalising) used to overflow to all
    zero rows and a meaningless selection reported as success; now they normalise to the unit rows."""
    e, _ = rows
    x = (e.astype(np.float64) * scale).astype(np.float32)
    assert np.isfinite(x).all() and (np.abs(x).max(axis=1) > 0).all()
    np.testing.assert_allclose(normalize_rows(x), e, atol=2e-6)
    assert non_unit_rows(x) == N and non_unit_rows(normalize_rows(x)) == 0
    np.save(tmp_path / "huge.npy", x)
    np.save(tmp_path / "unit.npy", e)
    got, out = _select(["--embeddings", tmp_path / "huge.npy", "--normalize", "-o", tmp_path / "h.csv"],
                       with_output=True)
    assert got == _select(["--embeddings", tmp_path / "unit.npy", "-o", tmp_path / "u.csv"])
    assert "RuntimeWarning" not in out and "overflow" not in out


@pytest.mark.parametrize("make, what", [(lambda: np.zeros((N, D), np.float32), "zero"),
                                        (lambda: np.ones((N, D), np.float32), "the same vector")])
def test_rows_all_alike_are_refused(tmp_path, make, what):
    """An embedding whose rows are all one vector tells no item from another: refused, not a selection."""
    np.save(tmp_path / "e.npy", make())
    for extra in ([], ["--normalize"]):
        r = run("select", "--embeddings", tmp_path / "e.npy", "-b", 3, "--out", tmp_path / "s.csv", *extra)
        assert r.exit_code == 1, r.output
        assert error_line(r) == (f"Error: embeddings {tmp_path / 'e.npy'}: all {N} rows are {what}; nothing tells "
                                 "the items apart")
        assert not (tmp_path / "s.csv").exists()
    x = make()
    x[0, 0] = 2.0  # one row differs: read as it is (its zero rows, if any, are for --normalize to refuse)
    np.save(tmp_path / "e.npy", x)
    assert read_embeddings(tmp_path / "e.npy")[0].shape == (N, D)


def test_scans_of_wide_embeddings_work_in_small_blocks_and_float32_is_not_copied(tmp_path):
    from selector.embeddings_io import block_rows, non_unit_rows, normalize_rows, read_embeddings

    assert block_rows(1280) == (1 << 22) // 1280 and block_rows(10**9) == 1
    x = np.random.default_rng(0).standard_normal((7, 3)).astype(np.float32)
    unit = normalize_rows(x, step=2)  # blocks that do not divide the rows
    assert np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6) and non_unit_rows(unit, step=3) == 0
    assert non_unit_rows(x, step=3) == 7
    np.save(tmp_path / "e.npy", x)
    emb, _ = read_embeddings(tmp_path / "e.npy")
    assert emb.dtype == np.float32 and np.array_equal(emb, x)
    from selector.embeddings_io import _check
    same, _ = _check(tmp_path / "e.npy", x, None)
    assert np.shares_memory(same, x)  # a float32 array is checked in place, not copied
