"""CPU inference of the default backbone, end to end (decoding included), each variant side by side with the
previous release's path in the same run.

The same ``--n`` photos (the first files of the ``photos10k`` folder of :mod:`benchmarks.bench_photos`, 200 px or
more on the short side) are embedded by EfficientNet-Lite0 at ``--side`` px, with nothing cached, by each variant;
the variants run in turn, ``--repeats`` times (in alternating order), and each is reported as images per second
(median over the repeats) and as a ratio to ``release`` measured in the same round:

* ``release``: the previous release's path: the folder decoded whole by the pool reader at the input side, then the
  network under ``torch.no_grad`` in float32, contiguous memory, batches of 512;
* ``+inference_mode``, ``+channels_last``, ``+bf16`` (bfloat16 autocast with channels-last; only where the CPU runs
  bfloat16 natively): one change after another, same decoding;
* ``bf16 batch B``: the last with other batch sizes;
* ``stream``: the images read a chunk at a time by the pool's :class:`selector.pool.read.RowReader` with the next
  chunk decoded ahead by the worker processes while the network runs (``stream no-prefetch``: one after the other);
* ``compile``: ``torch.compile`` of the network (its compile time is reported apart and left out of the rate);
* ``onnxruntime``: the network exported to ONNX and run by ONNX Runtime (float32; needs ``pip install
  onnxruntime``);
* ``product``: ``selector.Selector().fit(folder)`` with no cache: the default as ``selector select`` runs it
  (listing, digests, the automatic choice, streaming, bfloat16 where native); ``product efficientnet-lite1``
  and ``product efficientnet-lite2``: the same with that backbone at its native side (240 and 260 px), to place
  the larger backbones against the 3-minute budget for 10,000 photos.

Also the network alone on decoded arrays (``net:`` rows), to tell the network's share from the decoding's.

    python -m benchmarks.bench_inference --n 800 --repeats 2 --out benchmarks/results/inference
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from benchmarks.common import command_line, help_text, list_option, run, write_page

VARIANTS = ("release", "+inference_mode", "+channels_last", "+bf16", "bf16 batch 16", "bf16 batch 32",
            "bf16 batch 64", "bf16 batch 128", "stream", "stream no-prefetch", "compile", "onnxruntime", "product",
            "product efficientnet-lite1", "product efficientnet-lite2",
            "net: fp32", "net: bf16 batch 64")


def _encoder(side: int):
    from selector.backbones import Encoder
    from selector.encoding import encoder_config

    return Encoder(encoder_config("efficientnet-lite0", 3, side, "frozen", size=side)).eval()


def _network(enc, images: np.ndarray, *, batch: int, grad: str = "inference", channels_last: bool = False,
             bf16: bool = False, fn=None) -> np.ndarray:
    """The encoder's features of ``images`` (n, 3, S, S) uint8 with the given knobs (``fn``: a compiled or other
    callable in place of ``enc.embed``)."""
    import torch

    from selector.augment import to_float

    fn = fn or enc.embed
    ctx = torch.inference_mode if grad == "inference" else torch.no_grad
    if channels_last:
        enc.to(memory_format=torch.channels_last)
    else:
        enc.to(memory_format=torch.contiguous_format)
    out = []
    with ctx():
        for s in range(0, len(images), batch):
            x = to_float(torch.from_numpy(np.ascontiguousarray(images[s:s + batch])))
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out.append(fn(x).float().numpy())
    return np.concatenate(out)


def _decoded(folder: Path, side: int) -> np.ndarray:
    from selector.pool import load_folder

    return np.asarray(load_folder(folder, image_size=side, channels=3).images)


def _streamed(enc, folder: Path, side: int, batch: int, prefetch: bool) -> int:
    from selector.pool import scan_folder
    from selector.pool.read import RowReader

    pool = scan_folder(folder, channels=3)
    n = 0
    with RowReader(pool, side, batch=batch, prefetch=prefetch) as reader:
        for imgs, rows, _ in reader.chunks(np.arange(len(pool))):
            _network(enc, imgs, batch=batch, channels_last=True, bf16=True)
            n += len(rows)
    return n


class _Onnx:
    def __init__(self, enc, side: int, threads: int):
        import onnxruntime as ort
        import torch

        self.path = Path(tempfile.mkdtemp(prefix="bench-onnx-")) / "lite0.onnx"

        class Features(torch.nn.Module):
            def __init__(self, e):
                super().__init__()
                self.e = e

            def forward(self, x):
                return self.e.embed(x)

        torch.onnx.export(Features(enc.to(memory_format=torch.contiguous_format)), torch.zeros(1, 3, side, side),
                          str(self.path), input_names=["x"], output_names=["f"], dynamic_axes={"x": {0: "n"}},
                          dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, images: np.ndarray, batch: int) -> np.ndarray:
        out = []
        for s in range(0, len(images), batch):
            x = images[s:s + batch].astype(np.float32) / 255.0
            out.append(self.session.run(None, {"x": x})[0])
        return np.concatenate(out)


def measure(variant: str, folder: Path, side: int, ctx: dict) -> tuple[float, int]:
    """(seconds, images) of one run of ``variant``."""
    enc = ctx["enc"]
    t = time.perf_counter()
    if variant.startswith("product"):
        from selector import Selector

        backbone = variant.partition(" ")[2] or None  # None: the default (auto)
        n = len(Selector(cache_dir=None, device="cpu", backbone=backbone).fit(folder).pool_)
        return time.perf_counter() - t, n
    if variant.startswith("stream"):
        n = _streamed(enc, folder, side, 64, prefetch=variant == "stream")
        return time.perf_counter() - t, n
    if variant.startswith("net:"):
        x = ctx["arrays"]
        t = time.perf_counter()
        _network(enc, x, batch=64, channels_last="bf16" in variant, bf16="bf16" in variant)
        return time.perf_counter() - t, len(x)
    x = _decoded(folder, side)
    if variant == "release":
        _network(enc, x, batch=512, grad="no_grad")
    elif variant == "+inference_mode":
        _network(enc, x, batch=512)
    elif variant == "+channels_last":
        _network(enc, x, batch=512, channels_last=True)
    elif variant == "+bf16":
        _network(enc, x, batch=512, channels_last=True, bf16=True)
    elif variant.startswith("bf16 batch"):
        _network(enc, x, batch=int(variant.split()[-1]), channels_last=True, bf16=True)
    elif variant == "compile":
        _network(enc, x, batch=64, channels_last=True, bf16=True, fn=ctx["compiled"])
    elif variant == "onnxruntime":
        ctx["onnx"](x, 64)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    return time.perf_counter() - t, len(x)


@click.command("bench_inference", help=help_text(__doc__))
@click.option("--n", type=int, default=800, show_default=True, help="photos embedded by each variant")
@click.option("--side", type=int, default=224, show_default=True)
@click.option("--repeats", type=int, default=2, show_default=True)
@list_option("--variants", default=VARIANTS, show_default=True)
@click.option("--threads", type=int, default=None, help="torch threads [default: torch's]")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path(".bench_data"), show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks/results/inference"),
              show_default=True)
def cli(n, side, repeats, variants, threads, data_dir, cache_dir, out) -> None:
    import shutil

    import torch

    from benchmarks.bench_photos import build_folder
    from selector.embed import bf16_native

    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    bf16 = bf16_native(torch.device("cpu"))
    variants = [v for v in variants if v in VARIANTS]
    if not bf16:
        variants = [v for v in variants if "bf16" not in v and v not in ("compile", "stream", "stream no-prefetch")]
    source = build_folder("photos10k", cache_dir, data_dir)
    files = sorted(p for p in source.rglob("*.jpg"))[:n]
    folder = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    for f in files:
        os.link(f, folder / f.name)
    ctx = {"enc": _encoder(side), "threads": threads}
    notes = []
    if any(v.startswith("net:") for v in variants):
        ctx["arrays"] = _decoded(folder, side)
    if "compile" in variants:
        t = time.perf_counter()
        try:
            ctx["compiled"] = torch.compile(ctx["enc"].embed)
            _network(ctx["enc"], ctx["arrays"] if "arrays" in ctx else _decoded(folder, side)[:64], batch=64,
                     channels_last=True, bf16=True, fn=ctx["compiled"])
            notes.append(f"`torch.compile`: {time.perf_counter() - t:.0f} s to compile (not in its rate).")
        except Exception as e:  # noqa: BLE001 - no compiler here: the variant is left out, and said so
            variants.remove("compile")
            notes.append(f"`torch.compile` left out: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    if "onnxruntime" in variants:
        try:
            ctx["onnx"] = _Onnx(ctx["enc"], side, threads)
        except Exception as e:  # noqa: BLE001 - onnxruntime missing or the export failed: said so
            variants.remove("onnxruntime")
            notes.append(f"ONNX Runtime left out: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    times: dict[str, list[float]] = {v: [] for v in variants}
    ratios: dict[str, list[float]] = {v: [] for v in variants}
    loads = []
    try:
        for rep in range(repeats):
            order = variants if rep % 2 == 0 else variants[::-1]
            got = {}
            for v in order:
                loads.append(os.getloadavg()[0])
                secs, k = measure(v, folder, side, ctx)
                got[v] = k / secs
                print(f"round {rep + 1} {v}: {got[v]:.1f} img/s", file=sys.stderr, flush=True)
            for v in variants:
                times[v].append(got[v])
                if "release" in got:
                    ratios[v].append(got[v] / got["release"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    lines = ["# CPU inference of the default backbone, end to end", "", "Command:", "", "    " + command_line(), "",
             f"{n} photos (200 px or more) embedded by EfficientNet-Lite0 at {side} px, nothing cached; {threads} "
             f"torch threads on {os.cpu_count()} CPUs; bfloat16 native: {bf16}; load average during the run "
             f"{min(loads):.1f}-{max(loads):.1f}. Rates: median images per second over {repeats} rounds; ratio: to "
             "`release` in the same round (median over the rounds). `net:` rows time the network alone on "
             "decoded arrays.", "", "| variant | img/s | x release |", "|---|---|---|"]
    for v in variants:
        ratio = f"{statistics.median(ratios[v]):.2f}" if ratios[v] else ""
        lines.append(f"| `{v}` | {statistics.median(times[v]):.1f} | {ratio} |")
    lines += [""] + notes
    out.mkdir(parents=True, exist_ok=True)
    write_page(out / "summary.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None):
    return run(cli, argv)


if __name__ == "__main__":
    main()
