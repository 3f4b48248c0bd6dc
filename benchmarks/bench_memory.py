"""Peak memory of reading and embedding a large pool: the pool is streamed through a
memory-mapped array on disk, so memory grows with the (n, dim) embedding, not with the images.

    python -m benchmarks.bench_memory --n 1000000                 # synthetic uncompressed .npz, 32 px RGB
    python -m benchmarks.bench_memory --n 20000 --source folder   # generated PNG files, decoded by workers

The synthetic pool is written first, streaming, by a separate process; then a fresh process reads it
with :func:`selector.pool.load_pool` (memory-mapped scratch file in the cache folder) and embeds it
with :func:`selector.embed.embed_pool` (a seeded, untrained ``resnet-small``: weights do not change the
memory) while a thread samples ``/proc/self/status`` every 10 ms. Printed side by side:

* ``in-memory baseline``: the bytes a pipeline holding the decoded pool and the embedding in memory
  needs at least (n x 3 x 32 x 32 uint8 + n x 256 float32), computed, not run;
* ``peak anon``: the measured peak of anonymous (heap) memory, RssAnon: what the process really holds;
* ``peak RSS``: VmHWM, which also counts pages of the memory-mapped files that the kernel happened to
  keep resident (page cache, reclaimable; it can reach the file size when memory is plentiful);
* the ratio peak anon / baseline.

Linux only (reads /proc). Writes its files under ``--workdir`` (default: a temporary folder, removed).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import click
import numpy as np

from benchmarks.common import help_text, run, script_command

# ----------------------------------------------------------------------------- synthetic pools


def _images(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    """(k, size, size, 3) uint8: a random colour per image plus noise (every image distinct)."""
    base = rng.integers(0, 256, size=(k, 1, 1, 3), dtype=np.uint8)
    noise = rng.integers(0, 64, size=(k, size, size, 3), dtype=np.uint8)
    return base + noise  # uint8 wrap-around is fine: any pixels will do


def write_npz(path: Path, n: int, size: int = 32, seed: int = 0, step: int = 20_000) -> None:
    """An uncompressed .npz with ``x`` (n, size, size, 3) uint8, written in pieces (never all in memory)."""
    rng = np.random.default_rng(seed)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
              "shape": (n, size, size, 3)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_2_0(f, header)
            for s in range(0, n, step):
                f.write(_images(rng, min(step, n - s), size).tobytes())


def write_folder(folder: Path, n: int, size: int = 32, seed: int = 0) -> None:
    """``n`` PNG files in sub-folders of 1,000."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for s in range(0, n, 1000):
        sub = folder / f"{s // 1000:05d}"
        sub.mkdir(parents=True, exist_ok=True)
        for j, img in enumerate(_images(rng, min(1000, n - s), size)):
            Image.fromarray(img).save(sub / f"{s + j:07d}.png", compress_level=1)


# ----------------------------------------------------------------------------- measuring


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    return out


class PeakSampler(threading.Thread):
    def __init__(self, every_s: float = 0.01):
        super().__init__(daemon=True)
        self.every_s, self.peak_anon, self._halt = every_s, 0, threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak_anon = max(self.peak_anon, _status().get("RssAnon", 0))
            time.sleep(self.every_s)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        self.peak_anon = max(self.peak_anon, _status().get("RssAnon", 0))
        return self.peak_anon


def measure(pool: str, cache: str, device: str, batch_size: int, workers: int | None) -> dict:
    """Read and embed ``pool`` in this process; returns figures in bytes and seconds."""
    import torch

    from selector.backbones import Encoder, EncoderConfig
    from selector.device import resolve_device
    from selector.embed import embed_pool
    from selector.pool import load_pool

    dev = resolve_device(device)
    torch.manual_seed(0)
    enc = Encoder(EncoderConfig(arch="resnet-small", in_channels=3, image_size=32)).to(dev).eval()
    if dev.type == "cuda":
        torch.zeros(1, device=dev)
    start = _status()
    sampler = PeakSampler()
    sampler.start()
    t0 = time.perf_counter()
    p = load_pool(pool, image_size=32, channels=3, scratch_dir=cache, workers=workers)
    t1 = time.perf_counter()
    after_read = _status()
    emb, n_run = embed_pool(p.images, p.digests, enc, dev, cache_dir=cache, batch_size=batch_size)
    t2 = time.perf_counter()
    peak_anon = sampler.stop()
    end = _status()
    return {"n": len(p), "image_bytes": int(p.images.nbytes), "emb_bytes": int(emb.nbytes), "embedded": n_run,
            "memmapped": isinstance(p.images, np.memmap), "device": str(dev),
            "anon_at_start": start["RssAnon"], "anon_after_read": after_read["RssAnon"],
            "peak_anon": peak_anon, "peak_rss": end["VmHWM"], "read_s": t1 - t0, "embed_s": t2 - t1}


def _mib(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


@click.command("bench_memory", help=help_text(__doc__))
@click.option("--n", type=int, default=100_000, show_default=True, help="images in the synthetic pool")
@click.option("--source", type=click.Choice(["npz", "folder"]), default="npz", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", type=int, default=1024, show_default=True)
@click.option("--workers", type=int, default=None, help="decoding processes for --source folder")
@click.option("--workdir", type=click.Path(path_type=Path), default=None, help="keep the generated pool and cache here")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="also write the figures here")
@click.option("--_measure", nargs=2, default=None, hidden=True)
def cli(n, source, device, batch_size, workers, workdir, json_path, _measure) -> int:
    if _measure:  # the child: measure only
        print(json.dumps(measure(_measure[0], _measure[1], device, batch_size, workers)))
        return 0

    work = workdir or Path(tempfile.mkdtemp(prefix="bench-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        pool = work / ("pool.npz" if source == "npz" else "pool")
        t = time.perf_counter()
        if not pool.exists():
            (write_npz if source == "npz" else write_folder)(pool, n)
        gen_s = time.perf_counter() - t
        cache = work / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        cmd, env = script_command("bench_memory")
        cmd += ["--_measure", str(pool), str(cache), "--device", device, "--batch-size", str(batch_size)]
        cmd += ["--workers", str(workers)] if workers is not None else []
        child = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if child.returncode != 0:
            print(child.stdout, child.stderr, file=sys.stderr)
            return 1
        r = json.loads(child.stdout.strip().splitlines()[-1])
        r.update(source=source, generate_s=gen_s)
        baseline = r["image_bytes"] + r["emb_bytes"]
        grown = r["peak_anon"] - r["anon_at_start"]
        print(f"pool: {r['n']:,} images of 32 px RGB from {source} ({_mib(r['image_bytes'])} decoded, "
              f"memory-mapped: {r['memmapped']}), device {r['device']}")
        print(f"{'':28}{'bytes':>14}{'x baseline':>12}")
        print(f"{'in-memory baseline':28}{_mib(baseline):>14}{1.0:>12.2f}")
        print(f"{'  of which embedding':28}{_mib(r['emb_bytes']):>14}{r['emb_bytes'] / baseline:>12.2f}")
        print(f"{'peak anon (RssAnon)':28}{_mib(r['peak_anon']):>14}{r['peak_anon'] / baseline:>12.2f}")
        print(f"{'  growth over start':28}{_mib(grown):>14}{grown / baseline:>12.2f}")
        print(f"{'peak RSS (VmHWM, + page cache)':28}{_mib(r['peak_rss']):>14}{r['peak_rss'] / baseline:>12.2f}")
        print(f"time: generate {gen_s:.1f} s, read {r['read_s']:.1f} s, embed {r['embed_s']:.1f} s "
              f"({r['embedded']:,} images embedded)")
        if json_path:
            json_path.write_text(json.dumps(r, indent=1))
    finally:
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(cli, argv)


if __name__ == "__main__":
    sys.exit(main())
