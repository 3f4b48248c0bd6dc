"""The default on large folders of real photos, run as a user runs it: ``selector select`` in a fresh process with
a fresh cache, timed, its peak resident memory read by ``/usr/bin/time -v``.

Two folders, written once under ``--cache-dir`` (:func:`build_folder`), every file distinct (so the content-keyed
cache embeds each one):

* ``photos10k``: 10,000 photos of 200 px or more on the short side: the Caltech-101 and Natural Images files of
  that size (3,841), each also flipped left-right and upside down (JPEG, quality 90), the first 10,000 in name
  order;
* ``eurosat100k``: 100,000 EuroSAT chips (64 px): the 27,000 files and their three flips.

For each folder and repeat: ``selector select --budget B --pool FOLDER --cache-dir <fresh> --json`` (the default:
``--backbone auto``), recording the wall time, the embedding's own seconds from the summary, images per second,
the peak resident set size and the machine's load average before and after. Rows go to ``results.csv`` (a rerun
adds rows), the page to ``summary.md``.

    python -m benchmarks.bench_photos --folders photos10k --repeats 2 --out benchmarks/results/photos
    python -m benchmarks.bench_photos --folders eurosat100k --repeats 1 --out benchmarks/results/photos
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import click
import numpy as np

from benchmarks.common import (
    REPO,
    command_line,
    help_text,
    list_option,
    read_rows,
    record_command,
    recorded_commands,
    run,
    write_csv,
    write_page,
)
from benchmarks.folders import _build, dataset_folder

FOLDERS = ("photos10k", "eurosat100k")
FIELDS = ("folder", "images", "budget", "wall_s", "embed_s", "img_per_s", "peak_rss_mib", "tree_rss_mib",
          "tree_pss_mib", "load_before",
          "load_after", "threads", "backbone", "summary_encoder")


def _flips(img):
    from PIL import Image

    return [img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), img.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
            img.transpose(Image.Transpose.ROTATE_180)]


def build_folder(name: str, cache_dir: Path, data_dir: Path | None = None) -> Path:
    """The folder ``name`` (one of :data:`FOLDERS`) under ``<cache_dir>/photo-folders`` (written once)."""
    from PIL import Image

    target = Path(cache_dir) / "photo-folders" / name
    if name == "photos10k":
        sources = []
        for ds_name in ("caltech101", "natural_images"):
            ds = dataset_folder(ds_name, cache_dir, data_dir)
            for rel in ds.files:
                with Image.open(ds.root / rel) as im:
                    if min(im.size) >= 200:
                        sources.append(ds.root / rel)
        n_variants, total = 3, 10_000
    elif name == "eurosat100k":
        ds = dataset_folder("eurosat", cache_dir, data_dir)
        sources, n_variants, total = [ds.root / rel for rel in ds.files], 4, 100_000
    else:
        raise ValueError(f"unknown folder {name!r}; choose from {', '.join(FOLDERS)}")

    def write(out: Path) -> None:
        names = sorted((f"{v}_{s.parent.name}_{s.stem}", s, v) for s in sources for v in range(n_variants))[:total]
        for k, (stem, src, v) in enumerate(names):
            sub = out / f"{k // 1000:03d}"
            sub.mkdir(exist_ok=True)
            if v == 0:
                shutil.copyfile(src, sub / f"{stem}.jpg")
            else:
                with Image.open(src) as im:
                    _flips(im.convert("RGB"))[v - 1].save(sub / f"{stem}.jpg", quality=90)

    _build(target, write)
    return target


def _peak_rss_mib(time_v_output: str) -> float:
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_v_output)
    return int(m.group(1)) / 1024 if m else float("nan")


def tree_memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of process ``pid`` and all its descendants (the decoding workers), summed, in MiB. The RSS sum
    counts the pages the processes share (a forked worker shares most of its parent's) once in each; the PSS
    sum divides each shared page among its sharers, so it is the memory the run holds."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0, 0.0
    rss = pss = 0
    for p in procs:
        try:
            rss += p.memory_info().rss
            with open(f"/proc/{p.pid}/smaps_rollup", encoding="ascii") as fh:
                pss += next(int(line.split()[1]) for line in fh if line.startswith("Pss:")) * 1024
        except (psutil.Error, OSError, StopIteration):
            pass
    return rss / 2**20, pss / 2**20


class TreeSampler(threading.Thread):
    """Polls :func:`tree_memory_mib` of a process every ``interval`` s until :meth:`stop`, which returns the
    peaks (RSS sum, PSS sum)."""

    def __init__(self, pid: int, interval: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, (0.0, 0.0)
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            rss, pss = tree_memory_mib(self.pid)
            self.peak = (max(self.peak[0], rss), max(self.peak[1], pss))

    def stop(self) -> tuple[float, float]:
        self._done.set()
        self.join()
        return self.peak


def time_select(folder: Path, budget: int, threads: int | None) -> dict:
    """One ``selector select`` run on ``folder`` with a fresh cache, under ``/usr/bin/time -v`` (the largest
    single process's peak), its process tree's summed resident memory sampled every half second beside it."""
    with tempfile.TemporaryDirectory(prefix="bench-photos-") as tmp:
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "selector", "select", "--budget", str(budget),
               "--pool", str(folder), "--out", str(Path(tmp) / "s.csv"), "--cache-dir", str(Path(tmp) / "cache"),
               "--json", "-q"]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        if threads:
            env.update(OMP_NUM_THREADS=str(threads))
        load_before = os.getloadavg()[0]
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        out, err = proc.communicate()
        wall = time.perf_counter() - t
        tree_rss, tree_pss = sampler.stop()
        r = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
        if r.returncode != 0:
            raise RuntimeError(f"selector select failed ({r.returncode}): {r.stderr[-2000:]}")
    summary = json.loads(r.stdout)
    m = re.search(r"\(([\d.]+) s\)$", summary["summary"]["embedding"])
    embed_s = float(m.group(1)) if m else float("nan")
    n = int(summary["summary"]["embedding"].split(",")[1].split()[0])  # "1280-d, N images embedded, ..."
    return {"images": n, "budget": budget, "wall_s": wall, "embed_s": embed_s, "img_per_s": n / embed_s,
            "peak_rss_mib": _peak_rss_mib(r.stderr), "tree_rss_mib": tree_rss, "tree_pss_mib": tree_pss,
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
            "threads": threads or os.cpu_count(), "backbone": summary["summary"]["encoder"].split(",")[0],
            "summary_encoder": summary["summary"]["encoder"]}


def summarise(rows: list[dict], commands: list[str]) -> str:
    lines = ["# The default on large folders of real photos", "", "Commands:", "", *["    " + c for c in commands], "",
             "`selector select` in a fresh process and a fresh cache (the default embedding), under "
             "`/usr/bin/time -v`. `embed s`: the embedding's own seconds from the summary (listing, digests, "
             "decoding and the network); `wall s`: the whole command (start-up, selection, writing); `peak RSS`: "
             "the largest single process's maximum resident set size (`/usr/bin/time -v`); `tree PSS`: the peak of "
             "the proportional set size of the command and its decoding workers summed, sampled every 0.5 s (the "
             "memory the run holds: a page the processes share counts once in all); `tree RSS`: the same with "
             "RSS (an upper bound: a forked worker's shared pages counted again in each).", "",
             "| folder | images | wall s | embed s | img/s | peak RSS MiB | tree PSS MiB | tree RSS MiB | "
             "load before / after | encoder |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['folder']} | {int(float(r['images'])):,} | {float(r['wall_s']):.0f} | "
                     f"{float(r['embed_s']):.0f} | {float(r['img_per_s']):.0f} | {float(r['peak_rss_mib']):,.0f} | "
                     f"{float(r.get('tree_pss_mib') or 'nan'):,.0f} | {float(r.get('tree_rss_mib') or 'nan'):,.0f} | "
                     f"{float(r['load_before']):.1f} / {float(r['load_after']):.1f} | {r['summary_encoder']} |")
    for name in FOLDERS:
        rs = [r for r in rows if r["folder"] == name]
        if rs:
            walls = [float(r["wall_s"]) for r in rs]
            rss = [float(r["peak_rss_mib"]) for r in rs]
            tree = max((float(r.get("tree_pss_mib") or "nan") for r in rs), default=float("nan"))
            lines += ["", f"{name}: wall time {min(walls):.0f}-{max(walls):.0f} s over {len(rs)} runs "
                          f"(median {np.median(walls):.0f} s); peak RSS at most {max(rss):,.0f} MiB (one process), "
                          f"{tree:,.0f} MiB (the tree's PSS)."]
    return "\n".join(lines) + "\n"


@click.command("bench_photos", help=help_text(__doc__))
@list_option("--folders", default=FOLDERS, type=click.Choice(FOLDERS), show_default=True)
@click.option("--repeats", type=int, default=1, show_default=True)
@click.option("--budget", type=int, default=100, show_default=True)
@click.option("--threads", type=int, default=None, help="OMP_NUM_THREADS of the run [default: unset]")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path(".bench_data"), show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks/results/photos"), show_default=True)
@click.option("--build-only", is_flag=True, help="write the folders, time nothing")
@click.option("--summary-only", is_flag=True, help="rewrite summary.md from results.csv")
def cli(folders, repeats, budget, threads, data_dir, cache_dir, out, build_only, summary_only) -> None:

    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "results.csv"
    rows = read_rows(csv_path) if csv_path.exists() else []
    if not summary_only:
        paths = {name: build_folder(name, cache_dir, data_dir) for name in folders}
        if build_only:
            return
        record_command(out, command_line())
        for name in folders:
            for _ in range(repeats):
                r = {"folder": name, **time_select(paths[name], budget, threads)}
                rows.append(r)
                write_csv(rows, csv_path, FIELDS)
                print(f"{name}: {r['wall_s']:.0f} s wall, {r['img_per_s']:.0f} img/s, "
                      f"peak RSS {r['peak_rss_mib']:,.0f} MiB", file=sys.stderr, flush=True)
    write_page(out / "summary.md", summarise(rows, recorded_commands(out)))


def main(argv: list[str] | None = None):
    return run(cli, argv)


if __name__ == "__main__":
    main()
