"""Encoder checkpoint files and the training recipe's digest.

A checkpoint holds the encoder's configuration and weights, the training configuration and, while training
runs, the optimizer, schedule, step and RNG states that make a resumed run end with the same weights as an
uninterrupted one (:func:`selector.train.train_encoder`). Files are written atomically and read with
``weights_only=True``: a pickle with code in it is refused.

:func:`code_digest` hashes the package version and the code that produced a cached artefact: the training
recipe (:data:`RECIPE_MODULES`, :func:`recipe_digest`) is part of the name of a cached encoder, the embedding
code (:data:`EMBED_MODULES`) of the embedding cache's key, so an upgrade or an edit of that code never reuses
an older one.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write
from .backbones import Encoder, EncoderConfig

CHECKPOINT_FORMAT = "selector-encoder"
CHECKPOINT_VERSION = 1

#: The training recipe: the code whose change must retrain a cached encoder (files or folders of this package).
RECIPE_MODULES = ("train.py", "checkpoint.py", "augment.py", "backbones", "distributed.py", "losses")

#: The code that turns image files into cached embedding vectors: the pool's reading, decoding and resizing,
#: the encoder and every backbone, and the embedding itself (batching, precision, normalisation).
EMBED_MODULES = ("pool", "augment.py", "backbones", "embed.py")


class CheckpointError(ValueError):
    """An encoder file that cannot be used; the message names the file."""


def save_checkpoint(path: str | os.PathLike, encoder: Encoder, train_cfg: Any, *, epoch: int,
                    step: int, optimizer=None, scheduler=None, rng_state=None, pseudo=None,
                    elapsed: float = 0.0, total_steps: int | None = None, steps_done: int | None = None,
                    steps_per_epoch: int | None = None, world_size: int = 1, decoder=None) -> None:
    """Write an encoder checkpoint atomically (tensors and plain Python values only). ``train_cfg``: the
    :class:`selector.train.TrainConfig` (its ``to_dict()`` is stored). ``world_size``: the number of
    processes that trained it (stored when above 1; a resume needs as many)."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": encoder.config.to_dict(),
        "train": train_cfg.to_dict(),
        "epochs_done": int(epoch),
        "step_in_epoch": int(step),
        "state_dict": {k: v.detach().cpu() for k, v in encoder.state_dict().items()},
        "elapsed_s": float(elapsed),
    }
    if world_size > 1:
        state["world_size"] = int(world_size)
    if total_steps is not None:  # the plan (a time budget's is measured, so it must be kept) and progress
        state.update(total_steps=int(total_steps), steps_done=int(steps_done), steps_per_epoch=int(steps_per_epoch))
    if decoder is not None:  # the autoencoder's decoder (its optimizer state is in the optimizer's)
        state["decoder"] = {"config": decoder.config(),
                            "state_dict": {k: v.detach().cpu() for k, v in decoder.state_dict().items()}}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
        state["scheduler"] = scheduler.state_dict()
        state["rng"] = rng_state
        state["pseudo"] = None if pseudo is None else torch.as_tensor(pseudo)
    buf = io.BytesIO()  # serialised first: a full disk is then one OSError of the write, named by atomic_write
    torch.save(state, buf)
    with atomic_write(path, "wb") as f:
        f.write(buf.getbuffer())


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load and check a checkpoint with ``weights_only=True`` (a pickle with code in it is refused)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"encoder {path} is a folder; give the checkpoint file (from 'selector train')")
    if not path.is_file():
        raise CheckpointError(f"encoder file {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt, truncated, or unsafe pickles all end here
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if "Weights only load failed" in first:
            first = "it holds Python objects other than weights; refused (only weights are ever loaded)"
        raise CheckpointError(f"cannot load encoder {path}: {first[:200]}") from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a selector encoder checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')} is not supported")
    return state


def load_encoder(path: str | os.PathLike, map_location="cpu") -> tuple[Encoder, dict]:
    """Rebuild the encoder stored in ``path``; returns (encoder in eval mode, checkpoint dict)."""
    state = read_checkpoint(path, map_location)
    try:
        cfg = EncoderConfig(**state["config"])
        enc = Encoder(cfg, load_weights=False)  # a pretrained backbone's own file is not needed
        enc.load_state_dict(state["state_dict"])
    except Exception as e:  # noqa: BLE001
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: weights do not fit the stored architecture: {first[:200]}") from e
    return enc.eval(), state


def checkpoint_finished(state: dict) -> bool:
    """True when a checkpoint holds a finished training (every planned step done)."""
    if "total_steps" in state and "steps_done" in state:
        return state["steps_done"] >= state["total_steps"]
    return state["epochs_done"] >= state["train"]["epochs"]


def checkpoint_report(state: dict, batch_size: int, elapsed: float, time_budget_s: float | None) -> dict:
    """What a finished checkpoint's training did (steps, epochs, images seen, seconds; ``batch_size`` global)."""
    spe = int(state.get("steps_per_epoch", 0)) or 1
    done = int(state.get("steps_done", state["epochs_done"] * spe))
    return {"steps": done, "batch_size": batch_size, "epochs": done / spe, "images_seen": done * batch_size,
            "seconds": float(elapsed), "time_budget_s": time_budget_s, "processes": int(state.get("world_size", 1))}


def rng_state(device: torch.device) -> dict:
    """The global RNG states a checkpoint holds (the CPU's, and the device's on CUDA)."""
    st = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def set_rng_state(st: dict, device: torch.device) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(st["cpu"])
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)


def code_files(modules: tuple[str, ...]) -> list[Path]:
    """The source files of ``modules`` (files or folders of this package), in a fixed order."""
    here = Path(__file__).resolve().parent
    out: list[Path] = []
    for name in modules:
        p = here / name
        out.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return out


def recipe_files() -> list[Path]:
    """The source files of the training recipe (:data:`RECIPE_MODULES`), in a fixed order."""
    return code_files(RECIPE_MODULES)


def _file_bytes(f: Path) -> bytes:
    return f.read_bytes()


def code_digest(modules: tuple[str, ...]) -> str:
    """Hex digest of the package version and the code of ``modules`` (:func:`code_files`): part of the key of
    every cached artefact, so an upgrade, or any edit of the code that made an artefact, never reuses one
    made before it. The one function behind :func:`recipe_digest` (trained encoders) and
    :func:`embed_digest` (the embedding cache)."""
    from . import _version

    here = Path(__file__).resolve().parent
    h = hashlib.blake2b(digest_size=12)
    h.update(f"selector {_version.__version__}\0".encode())
    for f in code_files(modules):
        h.update(f.relative_to(here).as_posix().encode() + b"\0" + _file_bytes(f) + b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def recipe_digest() -> str:
    """:func:`code_digest` of the training recipe (:data:`RECIPE_MODULES`): part of the encoder cache key,
    so an upgrade that changes how encoders are trained never reuses an encoder cached before it."""
    return code_digest(RECIPE_MODULES)


@functools.lru_cache(maxsize=1)
def embed_digest() -> str:
    """:func:`code_digest` of the embedding code (:data:`EMBED_MODULES`): part of the embedding cache's key
    (:func:`selector.embed.encoder_key`), so a change to how images are read, resized or embedded never
    reuses vectors cached before it."""
    return code_digest(EMBED_MODULES)
