"""The experiment of ``selector eval``: compare strategies on a labeled dataset with the project's own encoder.

The encoder is trained (without labels) on the dataset's training images, exactly as ``selector
select`` would train it on a user's pool, and cached; the training images and the held-out test
images are embedded with it; then :func:`selector.eval.loop.run_eval` builds the pools, lets each strategy
choose, retrains on the chosen labels only and scores on the balanced test split
(:func:`run_experiment`). Imports nothing heavy at the top: the command line lists :data:`DATASETS`.
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


def embed_dataset(x_train, x_test, name: str, cache: Path, encoder, epochs, loss, arch, device, seed, progress):
    """Train (or load) the encoder on the unlabeled training images; embed train and test."""
    from selector import Selector

    cache.mkdir(parents=True, exist_ok=True)
    tr, te = cache / f"{name}-train.npz", cache / f"{name}-test.npz"
    for path, x in ((tr, x_train), (te, x_test)):
        if not path.exists():
            import numpy as np

            from selector.atomic import atomic_write

            with atomic_write(path, "wb") as f:
                np.savez(f, x=x)
    sel = Selector(encoder=encoder, strategy="random", seed=seed, device=device, epochs=epochs, loss=loss,
                   arch=arch, cache_dir=cache, progress=progress).fit(tr)
    return sel.embeddings_, sel.embed(te), sel


@dataclass
class Experiment:
    """What :func:`run_experiment` did: the dataset's name and split sizes, the encoder, the result
    rows (one per strategy, budget, seed and round) and the report files by kind."""

    name: str
    n_train: int
    n_test: int
    encoder: str
    rows: list[dict[str, Any]]
    files: dict[str, Path]


def run_experiment(data: str, out: Path, *, strategies: Sequence[str], budgets: Sequence[int], seeds: int,
                   pool_spec: str = "balanced", rounds: int = 1, retrainer: str = "linear",
                   encoder: Path | None = None, epochs: int | None = None, loss: str = "simclr",
                   arch: str = "resnet-small", train_per_class: int = 1000, test_per_class: int = 200,
                   data_dir: Path | None = None, cache_dir: Path | None = None, device: str = "auto",
                   progress: bool = False) -> Experiment:
    """Hide the labels of ``data``, let each strategy choose, retrain on the chosen labels (``retrainer``:
    linear, knn or finetune), score on a balanced test split; writes results.csv, summary.md and the
    plots to ``out`` (the cache, by default, to OUT/.selector-cache)."""
    from .loop import run_eval
    from .report import write_report

    out.mkdir(parents=True, exist_ok=True)
    cache = cache_dir if cache_dir is not None else out / ".selector-cache"
    xtr, ytr, xte, yte, name = load_split(data, train_per_class if data == "cifar10" else None, test_per_class,
                                          0, cache, data_dir)
    etr, ete, sel = embed_dataset(xtr, xte, name, cache, encoder, epochs, loss, arch, device, 0, progress)
    retrain: Any = retrainer
    if retrainer == "finetune":
        from selector.pool import load_pool

        from .finetune import finetune_retrainer

        test_pool = load_pool(cache / f"{name}-test.npz", image_size=sel.pool_.size, channels=sel.pool_.channels)
        retrain = finetune_retrainer(sel.encoder_, sel.pool_.images, etr, test_pool.images, ete,
                                     device=sel.encoder_.head[0].weight.device)
        retrain.__name__ = "finetune"
    rows = run_eval(etr, ytr, ete, yte, strategies=list(strategies), budgets=list(budgets), seeds=list(range(seeds)),
                    pool_spec=pool_spec, rounds=rounds, retrainer=retrain, progress=progress, dataset=name)
    files = write_report(rows, out, title=f"{name}, pool {pool_spec}")
    enc_text = str(encoder) if encoder else f"{arch}, {loss}, {sel.train_config(len(xtr)).epochs} epochs"
    return Experiment(name=name, n_train=len(xtr), n_test=len(xte), encoder=enc_text, rows=rows, files=files)
