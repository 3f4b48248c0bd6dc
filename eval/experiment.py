"""The experiment of ``selector eval``: compare strategies on a labeled dataset with the product's embedding.

The dataset's training images (labels hidden) are written to the cache as an ``.npz`` pool and embedded by
:meth:`selector.Selector.fit` exactly as ``selector select`` embeds a user's pool: by default ``--backbone
auto`` (:func:`selector.encoding.choose_backbone`: today a frozen ImageNet-pretrained EfficientNet-Lite0
chosen by the pool's kind), or the backbone, architecture, loss and epochs asked for (an encoder trained on
the images without labels, cached); the held-out test images are embedded with the same encoder. Then
:func:`selector.eval.loop.run_eval` builds the pools, lets each strategy choose, retrains on the chosen labels
only and scores on the balanced test split (:func:`run_experiment`). So a strategy comparison describes what
users get. Imports nothing heavy at the top: the command line lists :data:`DATASETS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

#: The datasets ``selector eval --data`` takes.
DATASETS = ("digits", "mnist10k", "notmnist10k", "cifar10")


def load_split(data: str, n_train_per_class: int | None, n_test_per_class: int, seed: int, cache: Path,
               data_dir: Path | None):
    """(x_train, y_train, x_test, y_test, name): CIFAR-10 uses its official test split; the others
    hold out a balanced ``n_test_per_class`` per class (seeded)."""
    import numpy as np

    from .datasets import cifar10, load_dataset
    from .pools import train_test_split_balanced

    if data == "cifar10":
        tar = None if data_dir is None else data_dir / "cifar10-jpeg.tar.gz"
        xtr, ytr, name = cifar10("train", n_per_class=n_train_per_class, tar_path=tar, cache_dir=cache)
        xte, yte, _ = cifar10("test", tar_path=tar, cache_dir=cache)
        return xtr, ytr, xte, yte, name
    kw = {} if data == "digits" or data_dir is None else {"path": data_dir / f"{data}.npz"}
    x, y, name = load_dataset(data, **kw)
    train, test = train_test_split_balanced(y, n_test_per_class, np.random.default_rng(seed))
    return x[train], y[train], x[test], y[test], name


def pool_file(cache: Path, name: str, split: str, x) -> Path:
    """``x`` (n, C, S, S) uint8 written to ``cache`` as an ``.npz`` pool (once): its name holds a digest of
    the images, so another split of the same dataset (another ``--test-per-class``) never reads a stale file."""
    import hashlib

    import numpy as np

    from selector.atomic import atomic_write

    x = np.ascontiguousarray(x)
    h = hashlib.blake2b(f"{x.shape} {x.dtype}".encode(), digest_size=6)
    h.update(x.tobytes())
    path = cache / f"{name}-{split}-{h.hexdigest()}.npz"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as f:
            np.savez(f, x=x)
    return path


def embed_dataset(x_train, x_test, name: str, cache: Path, encoder=None, epochs=None, loss: str = "simclr",
                  arch: str | None = None, device: str = "auto", seed: int = 0, progress: bool = False,
                  **selector_kw: Any):
    """(training embeddings, test embeddings, the fitted :class:`selector.Selector`): the training images,
    written to ``cache`` as an ``.npz`` pool (:func:`pool_file`), go through ``Selector.fit`` as a user's pool
    does (the encoder planned, trained on them without labels only when one is trained, the embedding cached by
    content); the test images are embedded with the same encoder. ``encoder``: a checkpoint; ``arch`` (or
    ``backbone`` among ``selector_kw``, the other keyword arguments of the Selector): None for the product's
    default, ``--backbone auto``."""
    from selector import Selector

    tr, te = pool_file(cache, name, "train", x_train), pool_file(cache, name, "test", x_test)
    sel = Selector(encoder=encoder, strategy="random", seed=seed, device=device, epochs=epochs, loss=loss,
                   arch=arch, cache_dir=cache, progress=progress, **selector_kw).fit(tr)
    return sel.embeddings_, sel.embed(te), sel


@dataclass
class Experiment:
    """What :func:`run_experiment` did: the dataset's name and split sizes, the encoder (``encoder``: what it
    was and why, as ``selector select``'s summary says it; ``backbone``: its registered name, or the checkpoint),
    the result rows (one per strategy, budget, seed and round) and the report files by kind."""

    name: str
    n_train: int
    n_test: int
    encoder: str
    rows: list[dict[str, Any]]
    files: dict[str, Path]
    backbone: str = ""


def run_experiment(data: str, out: Path, *, strategies: Sequence[str], budgets: Sequence[int], seeds: int,
                   pool_spec: str = "balanced", rounds: int = 1, retrainer: str = "linear",
                   encoder: Path | None = None, epochs: int | None = None, loss: str = "simclr",
                   arch: str | None = None, backbone: str | None = None, backbone_size: int | None = None,
                   pixel_view: bool | None = None, train_per_class: int = 1000, test_per_class: int = 200,
                   data_dir: Path | None = None, cache_dir: Path | None = None, device: str = "auto",
                   progress: bool = False, **selector_kw: Any) -> Experiment:
    """Hide the labels of ``data``, let each strategy choose, retrain on the chosen labels (``retrainer``:
    linear, knn or finetune), score on a balanced test split; writes results.csv, summary.md and the
    plots to ``out`` (the cache, by default, to OUT/.selector-cache).

    The embedding is the product's (:func:`embed_dataset`): ``backbone`` and ``arch`` None means ``--backbone
    auto``; ``arch`` (with ``loss`` and ``epochs``) trains that encoder on the training images; ``encoder`` uses a
    checkpoint. ``selector_kw``: other keyword arguments of :class:`selector.Selector` (``backbone_mode``,
    ``weights``, ``image_size``, ``flip``, ``time_budget``, ...)."""
    from selector.summary import encoder_line

    from .loop import run_eval
    from .report import write_report

    out.mkdir(parents=True, exist_ok=True)
    cache = cache_dir if cache_dir is not None else out / ".selector-cache"
    xtr, ytr, xte, yte, name = load_split(data, train_per_class if data == "cifar10" else None, test_per_class,
                                          0, cache, data_dir)
    etr, ete, sel = embed_dataset(xtr, xte, name, cache, encoder, epochs, loss, arch, device, 0, progress,
                                  backbone=backbone, backbone_size=backbone_size, pixel_view=pixel_view,
                                  **selector_kw)
    retrain: Any = retrainer
    if retrainer == "finetune":
        from selector.pool import load_pool

        from .finetune import finetune_retrainer

        test_pool = load_pool(pool_file(cache, name, "test", xte), image_size=sel.pool_.size,
                              channels=sel.pool_.channels)
        retrain = finetune_retrainer(sel.encoder_, sel.pool_.images, etr, test_pool.images, ete,
                                     device=next(sel.encoder_.parameters()).device)
        retrain.__name__ = "finetune"
    rows = run_eval(etr, ytr, ete, yte, strategies=list(strategies), budgets=list(budgets), seeds=list(range(seeds)),
                    pool_spec=pool_spec, rounds=rounds, retrainer=retrain, progress=progress, dataset=name)
    files = write_report(rows, out, title=f"{name}, pool {pool_spec}")
    enc_text = str(encoder) if encoder else encoder_line(sel, len(xtr), cache)
    return Experiment(name=name, n_train=len(xtr), n_test=len(xte), encoder=enc_text, rows=rows, files=files,
                      backbone=str(encoder) if encoder else sel.backbone_)
