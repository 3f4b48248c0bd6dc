"""What the benchmark scripts share, so that no script imports another.

* the command line: :func:`run` runs a script's click command; :func:`list_option` is an option that takes
  one or more values after one flag (``--datasets mnist10k cifar10``, as every recorded command writes it);
  :func:`command_line` is the command written beside a table; :func:`script_command` starts a script in a
  child process;
* CSV rows: :func:`read_rows`, :func:`write_csv`;
* datasets and their held-out splits: :func:`held_out`, :func:`glyph_split`, :func:`cifar10_nchw`, :class:`Split` with
  :func:`load_split` and :func:`pool_indices` (the embedding benchmark's datasets and pool shapes);
* the strategy matrix's data: :func:`load_images`, :func:`dataset_embeddings`, :func:`matrix_split`,
  :func:`make_pool`, and its strategy specs (:func:`parse_strategy`, :func:`product_default`);
* embeddings fitted on a pool (:class:`Fitted`): PCA of the pixels (:func:`fit_pca`, the pipeline's pixel
  view; :func:`pca_rows`, the matrix's full-SVD PCA), an encoder trained on the pool (:func:`fit_simclr`),
  the product itself (:func:`fit_via_selector`, :func:`fit_default`), and their :func:`score`;
* synthetic embeddings: :func:`make_data`.

The product is imported as ``selector.*`` inside the functions, so ``--help`` loads neither torch nor FAISS.
"""
from __future__ import annotations

import csv
import os
import shlex
import shutil
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click
import numpy as np

#: The repository root (the folder that holds ``benchmarks/``).
REPO = Path(__file__).resolve().parents[1]


# -- the command line ----------------------------------------------------------------------------

class ListOption(click.Option):
    """An option that takes one or more values after one flag (``--datasets a b``); :func:`run` turns
    that into the repeated flag click reads (``--datasets a --datasets b``)."""


def list_option(*decls: str, **kwargs):
    """``click.option`` for :class:`ListOption`: the value is a tuple (the default when the flag is absent)."""
    kind = kwargs.get("type")
    choices = "[" + "|".join(kind.choices) + "]..." if isinstance(kind, click.Choice) else None
    kwargs.setdefault("metavar", choices or "VALUE...")
    return click.option(*decls, cls=ListOption, multiple=True, **kwargs)


def _is_value(arg: str) -> bool:
    """Whether a command-line word after a list option is one of its values (not the next flag)."""
    if not arg.startswith("-"):
        return True
    try:
        float(arg)
    except ValueError:
        return False
    return True


def spread_lists(command: click.Command, args: list[str]) -> list[str]:
    """``--datasets a b --seeds 1`` -> ``--datasets a --datasets b --seeds 1`` for the command's
    :class:`ListOption` flags; a list flag with no value is kept bare, so click reports it."""
    flags = {o for p in command.params if isinstance(p, ListOption) for o in p.opts}
    out: list[str] = []
    flag, n = None, 0
    for arg in args:
        if flag is not None and _is_value(arg):
            out += [flag, arg]
            n += 1
            continue
        if flag is not None and n == 0:
            out.append(flag)
        flag, n = (arg, 0) if arg in flags else (None, 0)
        if flag is None:
            out.append(arg)
    if flag is not None and n == 0:
        out.append(flag)
    return out


def run(command: click.Command, argv: list[str] | None = None):
    """Run a script's click command on ``argv`` (default: the process's arguments).

    From the shell (``argv`` None) click handles errors and exits with the status; from Python (``argv`` a
    list) the command's return value comes back and errors are raised. The words as given are kept for
    :func:`command_line`.
    """
    words = list(sys.argv[1:] if argv is None else argv)
    kw = {"prog_name": f"python -m benchmarks.{command.name}", "obj": {"argv": words}}
    if argv is None:
        return command.main(args=spread_lists(command, words), **kw)
    return command.main(args=spread_lists(command, words), standalone_mode=False, **kw)


def help_text(doc: str) -> str:
    """A module docstring as click help, every paragraph kept as written (click rewraps otherwise)."""
    return "\n\n".join("\b\n" + p for p in doc.strip().split("\n\n"))


def command_line(drop: tuple[str, ...] = ()) -> str:
    """The command that made a table, as written beside it: ``python -m benchmarks.NAME`` and the words it
    was given, without those in ``drop`` (flags that change only what is printed)."""
    ctx = click.get_current_context()
    words = (ctx.find_root().obj or {}).get("argv", sys.argv[1:])
    return f"python -m benchmarks.{ctx.command.name} " + " ".join(shlex.quote(a) for a in words if a not in drop)


#: Flags that change only what is printed, left out of a recorded command.
PRINT_ONLY = ("--summary-only", "-v", "--verbose")


def record_command(out: str | os.PathLike, line: str) -> None:
    """Append the command line ``line`` to ``<out>/commands.txt``, the record of the runs behind a results folder
    whose runs add rows (each run's summary lists them all, :func:`recorded_commands`)."""
    with open(Path(out) / "commands.txt", "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def recorded_commands(out: str | os.PathLike) -> list[str]:
    """The command lines :func:`record_command` appended to ``<out>/commands.txt``, in order ([] without it)."""
    path = Path(out) / "commands.txt"
    return [c for c in path.read_text(encoding="utf-8").split("\n") if c] if path.exists() else []


def write_page(path: str | os.PathLike, text: str) -> None:
    """Write a results page (``summary.md`` and the like) atomically and print its path."""
    from selector.atomic import atomic_write

    with atomic_write(Path(path)) as fh:
        fh.write(text)
    print(path)


def script_command(name: str) -> tuple[list[str], dict]:
    """``python -m benchmarks.NAME`` for a child process, and an environment in which it finds
    ``benchmarks`` and the checkout's ``selector`` (the repository root first on PYTHONPATH)."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    return [sys.executable, "-m", f"benchmarks.{name}"], dict(os.environ, PYTHONPATH=path)


# -- CSV rows ------------------------------------------------------------------------------------

def read_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of a CSV file as dicts of strings; no file: no rows."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_csv(rows: list[dict], path: str | os.PathLike, fields) -> None:
    """One row per dict (only ``fields``, floats to 6 significant digits), written atomically."""
    from selector.atomic import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if k in fields})


# -- datasets and held-out splits ----------------------------------------------------------------

def nchw(x: np.ndarray) -> np.ndarray:
    """(n, S, S) or (n, S, S, C) images -> contiguous (n, C, S, S)."""
    if x.ndim == 3:
        return np.ascontiguousarray(x[:, None])
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def data_folder(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir``, or the project's shared data folder."""
    from selector.eval.datasets import default_data_dir

    return Path(data_dir) if data_dir else default_data_dir()


def held_out(y: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A balanced, seeded test split of ``per_class`` items per class and the rest (sorted indices)."""
    from selector.eval.pools import balanced_pool

    test = balanced_pool(y, per_class, np.random.default_rng(seed))
    rest = np.setdiff1d(np.arange(y.shape[0]), test)
    return test, rest


def cifar10_nchw(data_dir, cache_dir, n_per_class: int | None = 1000):
    """CIFAR-10 from the shared JPEG archive: ``n_per_class`` train images per class (None: all) and the
    whole test split, as (x, y, x_test, y_test) with (n, 3, 32, 32) uint8 images."""
    from selector.eval.datasets import cifar10

    tar = data_folder(data_dir) / "cifar10-jpeg.tar.gz"
    x, y, _ = cifar10("train", n_per_class, tar, cache_dir)
    xt, yt, _ = cifar10("test", None, tar, cache_dir)
    return nchw(x), y, nchw(xt), yt


#: The embedding benchmark's datasets and pool shapes (:func:`load_split`, :func:`pool_indices`).
DATASETS = ("mnist10k", "notmnist10k", "cifar10", "digits")
SHAPES = ("full", "small", "lt100")


@dataclass
class Split:
    """A dataset as (n, C, S, S) uint8 images: the pool source and a held-out balanced test split."""

    name: str
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def glyph_split(name: str, data_dir, per_class: int, seed: int):
    """``mnist10k`` or ``notmnist10k`` as (n, 1, 28, 28) uint8 with a balanced, seeded test split of ``per_class``
    per class held out: (x, y, x_test, y_test), the rest first."""
    from selector.eval.datasets import load_dataset

    x, y, _ = load_dataset(name, path=data_folder(data_dir) / f"{name}.npz")
    test, rest = held_out(y, per_class, seed)
    x = nchw(x)
    return x[rest], y[rest], x[test], y[test]


def load_split(name: str, data_dir: Path | None, cache_dir: Path | None, seed: int = 0) -> Split:
    """Load ``name`` and hold out its balanced test split: 100 per class for ``mnist10k`` and
    ``notmnist10k``, 30 for ``digits``; ``cifar10``: the first 1,000 train images per class, tested on
    200 per class of its test split."""
    from selector.eval.datasets import digits
    from selector.eval.pools import balanced_pool

    if name == "cifar10":
        x, y, xt, yt = cifar10_nchw(data_dir, cache_dir)
        keep = balanced_pool(yt, 200, np.random.default_rng(seed))
        return Split(name, x, y, xt[keep], yt[keep])
    if name in ("mnist10k", "notmnist10k"):
        return Split(name, *glyph_split(name, data_dir, 100, seed))
    if name != "digits":
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    x, y, _ = digits()
    test, rest = held_out(y, 30, seed)
    x = nchw(x)
    return Split(name, x[rest], y[rest], x[test], y[test])


def pool_indices(split: Split, shape: str, seed: int) -> np.ndarray:
    """Indices into ``split.x`` of the pool of the given shape: ``full`` (every non-test image), ``small``
    (a seeded balanced 200 per class, 100 for digits), ``lt100`` (long-tailed, ratio 100)."""
    from selector.eval.pools import balanced_pool, long_tail_pool

    rng = np.random.default_rng(seed + 1)
    if shape == "full":
        return np.arange(split.y.shape[0])
    if shape == "small":
        return balanced_pool(split.y, 100 if split.name == "digits" else 200, rng)
    if shape == "lt100":
        return long_tail_pool(split.y, 100.0, rng)
    raise ValueError(f"unknown pool shape {shape!r}; choose from {', '.join(SHAPES)}")


# -- the strategy matrix's data and strategies ---------------------------------------------------

#: The strategy matrix's datasets (mixed20: MNIST + notMNIST, notMNIST's labels offset by 10) and pool shapes.
#: The photo folders (:mod:`benchmarks.folders`) have no pixel arrays: their rows are the folder's files in the
#: order the pool reader sorts them, and they take no ``pca50`` embedding.
FOLDER_DATASETS = ("caltech101", "natural_images", "eurosat", "cifar10")
MATRIX_DATASETS = ("mnist10k", "notmnist10k", "digits", "mixed20") + FOLDER_DATASETS
MATRIX_SHAPES = ("balanced", "lt10", "lt100", "subset")


def load_images(dataset: str, cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(n, H, W) or (n, H, W, 3) uint8 images and (n,) int64 labels, rows in the order the matrix's
    embeddings use (``cache_dir``: where the decoded CIFAR-10 arrays are kept)."""
    from selector.eval.datasets import load_dataset

    if dataset == "mixed20":
        xa, ya = load_images("mnist10k", cache_dir)
        xb, yb = load_images("notmnist10k", cache_dir)
        return np.concatenate([xa, xb]), np.concatenate([ya, yb + 10])
    kw = {"n_per_class": 1000, "cache_dir": cache_dir} if dataset == "cifar10" else {}
    x, y, _ = load_dataset(dataset, **kw)
    return x, np.asarray(y, dtype=np.int64)


def flat_pixels(x: np.ndarray) -> np.ndarray:
    """uint8 images -> (n, pixels) float32 in [0, 1]."""
    return x.reshape(x.shape[0], -1).astype(np.float32) / 255.0


def load_pixels(dataset: str, cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(n, pixels) float32 in [0, 1] and (n,) int64 labels, rows in the order the embeddings use."""
    x, y = load_images(dataset, cache_dir)
    return flat_pixels(x), y


def l2n(e: np.ndarray) -> np.ndarray:
    """Rows as contiguous float32 first, then scaled to unit L2 norm (the matrix's normalisation: the cast
    comes before the division, unlike :func:`selector.pixels.unit_rows`)."""
    e = np.ascontiguousarray(e, dtype=np.float32)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def pca_rows(pixels: np.ndarray, dim: int = 50) -> np.ndarray:
    """PCA-``dim`` (scikit-learn, full SVD, fitted on every row) of (n, pixels) rows, L2-normalised."""
    from sklearn.decomposition import PCA

    return l2n(PCA(dim, random_state=0).fit_transform(pixels))


def embeddings_for(dataset: str, n: int, emb_dir: Path | None, only: list[str] | None) -> dict[str, np.ndarray]:
    """``{name: ...}`` for every ``{dataset}__{name}.npy`` in ``emb_dir`` (n rows each), L2-normalised."""
    out: dict[str, np.ndarray] = {}
    if emb_dir is not None and emb_dir.is_dir():
        for p in sorted(emb_dir.glob(f"{dataset}__*.npy")):
            name = p.stem.split("__", 1)[1]
            if only and name not in only:
                continue
            e = np.load(p, mmap_mode="r")
            if e.ndim != 2 or e.shape[0] != n:
                raise SystemExit(f"{p}: expected {n} rows aligned to load_dataset({dataset!r}), got shape {e.shape}")
            out[name] = l2n(e)
    return out


def dataset_embeddings(dataset: str, emb_dir: Path | None, only: list[str] | None,
                       cache_dir: Path | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The matrix's embeddings of one dataset, ``{"pca50": ..., name: ...}`` (``pca50`` unless ``only``
    leaves it out, or the dataset is a photo folder; the others from :func:`embeddings_for`), and its (n,)
    labels."""
    if dataset in FOLDER_DATASETS:
        from benchmarks.folders import dataset_folder, pool_folder

        root = cache_dir or Path(".bench_data")
        _, _, y = pool_folder(dataset_folder(dataset, root), "full", root)
        return embeddings_for(dataset, y.shape[0], emb_dir, only), y
    pixels, y = load_pixels(dataset, cache_dir)
    embs = {} if only and "pca50" not in only else {"pca50": pca_rows(pixels)}
    del pixels
    embs.update(embeddings_for(dataset, y.shape[0], emb_dir, only))
    return embs, y


def make_pool(shape: str, y: np.ndarray, train: np.ndarray, rng: np.random.Generator, per_class: int,
              n_max: int) -> np.ndarray:
    """Indices into ``y`` (a subset of ``train``) of one matrix pool of the given shape (:data:`MATRIX_SHAPES`)."""
    from selector.eval.pools import balanced_pool, long_tail_pool

    yt = y[train]
    counts = np.bincount(yt)
    if shape == "balanced":
        return train[balanced_pool(yt, min(per_class, int(counts[counts > 0].min())), rng=rng)]
    if shape in ("lt10", "lt100"):
        ratio = float(shape[2:])
        try:
            return train[long_tail_pool(yt, ratio, rng=rng, n_max=n_max, shuffle_classes=True)]
        except ValueError:  # a small dataset (digits): the largest head every class can supply
            return train[long_tail_pool(yt, ratio, rng=rng, n_max=None, shuffle_classes=True)]
    if shape == "subset":
        classes = np.flatnonzero(counts)
        pick = np.sort(rng.choice(classes, size=max(2, classes.shape[0] // 2), replace=False))
        c = pick.shape[0]
        sizes = np.floor(n_max * 10.0 ** (-np.arange(c) / max(c - 1, 1))).astype(int)
        rng.shuffle(sizes)
        sizes = np.minimum(sizes, counts[pick])
        rows = [rng.choice(np.flatnonzero(yt == k), int(s), replace=False) for k, s in zip(pick, sizes)]
        return train[np.sort(np.concatenate(rows))]
    raise ValueError(f"unknown pool shape {shape!r}; choose from {', '.join(MATRIX_SHAPES)}")


def matrix_split(y: np.ndarray, test_per_class: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """The matrix's fixed (seed 12345) split of a dataset's rows into the training rows pools are drawn
    from and a class-balanced test split of ``test_per_class`` per class (at most a third of the
    smallest class)."""
    from selector.eval.pools import train_test_split_balanced

    per_test = min(test_per_class, int(np.bincount(y).min()) // 3)
    return train_test_split_balanced(y, per_test, rng=np.random.default_rng(12345))


def parse_strategy(spec: str):
    """``"balanced"`` or ``"balanced:explore=0,k_nn=10"`` -> a strategy instance (values parsed as
    Python literals: numbers, None, True/False); a bad spec raises ValueError."""
    from selector.strategies import get_strategy
    from selector.strategies.registry import parse_params

    name, _, params = spec.partition(":")
    return get_strategy(name, **parse_params(name, filter(None, params.split(","))))


def product_default() -> str:
    """The product's default strategy: the default of :class:`selector.Selector`'s ``strategy``."""
    import inspect

    from selector.api import Selector

    return inspect.signature(Selector.__init__).parameters["strategy"].default


#: Strategy parameters that only add to the report and never change the picks (tested per strategy).
REPORT_ONLY = ("count_classes",)


# -- embeddings fitted on a pool -----------------------------------------------------------------

@dataclass
class Fitted:
    """An embedding fitted on a pool: the pool's embedding and a function that embeds new images."""

    pool_emb: np.ndarray
    transform: Callable[[np.ndarray], np.ndarray]
    fit_s: float = 0.0
    embed_s: float = 0.0
    note: str = ""
    extra: dict = field(default_factory=dict)


def fit_pca(x: np.ndarray, seed: int, device=None, cache_dir=None, dim: str = "50") -> Fitted:
    """PCA of the pixels in [0, 1], fitted on the pool: the pipeline's pixel view
    (:class:`selector.pixels.PixelPCA`) on its own."""
    from selector.pixels import PixelPCA

    t0 = time.perf_counter()
    pca = PixelPCA(dim=int(dim)).fit(x, seed=seed)
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    emb = pca.transform(x)
    return Fitted(emb, pca.transform, fit_s, time.perf_counter() - t1, f"pca{pca.pca_.n_components_}")


def encoder_fitted(enc, x: np.ndarray, device, fit_s: float, note: str) -> Fitted:
    """A frozen encoder as a :class:`Fitted`: ``x`` embedded now, new images by its transform."""
    from selector.embed import embed_array

    t1 = time.perf_counter()
    emb = embed_array(enc, x, device)
    return Fitted(emb, lambda z: embed_array(enc, z, device), fit_s, time.perf_counter() - t1, note)


def fit_simclr(x: np.ndarray, seed: int, device, cache_dir=None, images: str | None = None, loss: str = "simclr",
               flip: str | None = None, crop: str | None = None, temp: str | None = None, lr: str | None = None,
               bs: str | None = None, opt: str | None = None, arch: str = "resnet-small") -> Fitted:
    """``arch`` trained on the pool with the product's training loop; unset keys keep the product's defaults."""
    from dataclasses import replace

    from selector.backbones import EncoderConfig
    from selector.train import TrainConfig, auto_epochs, train_encoder

    n = int(x.shape[0])
    cfg = TrainConfig(loss=loss, seed=seed)
    kw: dict = {}
    if bs is not None:
        kw["batch_size"] = int(bs)
    if lr is not None:
        kw["lr"] = float(lr)
    if opt is not None:
        kw["optimizer"] = opt
    if temp is not None:
        kw["loss_params"] = {**cfg.loss_params, "temperature": float(temp)}
    if flip is not None:
        kw["flip"] = bool(int(flip))
    if crop is not None:
        kw["crop_scale"] = float(crop)
    cfg = replace(cfg, **kw)
    steps_per_epoch = max(1, n // min(cfg.batch_size, n))
    per_epoch = steps_per_epoch * min(cfg.batch_size, n)
    epochs = auto_epochs(n) if images is None else max(1, int(round(float(images) / per_epoch)))
    cfg = replace(cfg, epochs=epochs)
    enc_cfg = EncoderConfig(arch=arch, in_channels=int(x.shape[1]), image_size=int(x.shape[2]))
    t0 = time.perf_counter()
    enc = train_encoder(x, enc_cfg, cfg, device)
    fit_s = time.perf_counter() - t0
    return encoder_fitted(enc, x, device, fit_s, f"{arch} {loss} {epochs} epochs ({epochs * per_epoch} images seen)")


def fit_via_selector(x: np.ndarray, seed: int, device, cache_dir=None, **kw) -> Fitted:
    """Run :class:`selector.Selector` (keyword arguments ``kw``) on ``x`` ((n, C, S, S) uint8) written as an
    .npz pool, as a user would. With ``cache_dir``, the content-keyed embedding cache is shared by the
    fits that embed with the same frozen backbone, so each image is embedded once."""
    from selector import Selector

    tmp = Path(tempfile.mkdtemp(prefix="bench-emb-"))
    dev = getattr(device, "type", str(device))
    sel = Selector(seed=seed, device=dev, cache_dir=cache_dir, **kw)

    def as_file(z: np.ndarray) -> Path:
        p = tmp / f"x{z.shape[0]}.npz"
        np.savez(p, x=z.transpose(0, 2, 3, 1) if z.shape[1] == 3 else z[:, 0])
        return p

    try:
        pool = as_file(x)
        t0 = time.perf_counter()
        sel.fit(pool)
        total = time.perf_counter() - t0
        pool.unlink()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fit_s = sel.timings_.get("train", 0.0)

    def transform(z: np.ndarray) -> np.ndarray:
        p = as_file(z)
        try:
            return np.asarray(sel.embed(p))
        finally:
            p.unlink()

    weakref.finalize(transform, shutil.rmtree, tmp, ignore_errors=True)  # the folder lives as long as transform

    note = f"{sel.backbone_} {sel.encoder_.config.mode}" + (" + pixel view" if sel.pixel_view_ is not None else "")
    rep = getattr(sel, "train_report_", None)
    if rep:
        note += f" ({rep['epochs']:.1f} epochs, {rep['images_seen']:,} images seen)"
    return Fitted(np.asarray(sel.embeddings_), transform, fit_s, max(0.0, total - fit_s), note)


def fit_default(x: np.ndarray, seed: int, device, cache_dir=None) -> Fitted:
    """Exactly what ``selector select`` embeds with no options."""
    return fit_via_selector(x, seed, device, cache_dir)


def score(pool_emb: np.ndarray, y: np.ndarray, test_emb: np.ndarray, y_test: np.ndarray, k: int = 20,
          seed: int = 0) -> dict:
    """Leave-one-out kNN on the pool (plain and class-balanced) and the linear probe on the test split."""
    from selector.eval.metrics import accuracy, balanced_accuracy
    from selector.eval.retrain import linear_probe, loo_knn_predict

    from selector.pixels import unit_rows

    pred = loo_knn_predict(pool_emb, y, k=k)
    lin = linear_probe(unit_rows(pool_emb), y, unit_rows(test_emb), seed=seed)
    return {"loo_knn": accuracy(y, pred), "loo_knn_bal": balanced_accuracy(y, pred),
            "linear": accuracy(y_test, lin), "linear_bal": balanced_accuracy(y_test, lin)}


# -- synthetic embeddings ------------------------------------------------------------------------

def make_data(n: int, d: int, kind: str, seed: int = 0, return_labels: bool = False):
    """(n, d) L2-normalised float32 embeddings, generated in chunks: "random" = isotropic Gaussian vectors,
    "clustered" = 50 Gaussian blobs on the unit sphere with sizes decaying geometrically (largest/smallest
    = 20). With ``return_labels`` also the (n,) int64 blob of each row (-1 for "random")."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, d), dtype=np.float32)
    if kind == "clustered":
        k = 50
        c = rng.standard_normal((k, d)).astype(np.float32)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        w = 20.0 ** (-np.arange(k) / (k - 1))
        lab = rng.choice(k, size=n, p=w / w.sum())
    step = max(1, min(100_000, (1 << 24) // d))  # chunks of at most 16M values: the draws are the same either way
    for s in range(0, n, step):
        e = min(n, s + step)
        z = rng.standard_normal((e - s, d), dtype=np.float32)
        if kind == "clustered":
            z = c[lab[s:e]] + (0.5 / np.sqrt(d)) * z
        x[s:e] = z / np.linalg.norm(z, axis=1, keepdims=True)  # row by row: no temporary the size of x
    if return_labels:
        return x, (lab.astype(np.int64) if kind == "clustered" else np.full(n, -1, dtype=np.int64))
    return x
