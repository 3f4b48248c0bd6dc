"""Read embeddings someone else computed: one reader per file suffix, all giving (n, d) float32 and ids.

:func:`read_embeddings` picks a reader from :data:`READERS` by the file's suffix:

* ``.npy``: an (n, d) numeric array (no pickles).
* ``.npz``: the array ``embeddings`` (or the only array in the archive), plus optional ``ids``
  (n strings: the item paths).
* ``.csv``: Lightly's embeddings CSV, header ``filenames,embedding_0,...,embedding_{d-1},labels``
  (``labels`` optional and ignored); ids from ``filenames``.
* ``.pt`` / ``.pth``: a tensor, or a dict with ``embeddings`` and optional ``filenames``/``ids``
  (lightly-train's ``embed`` output), read with ``torch.load(weights_only=True)`` (no code runs).
* ``.parquet``: a list column ``embedding``/``embeddings`` or columns ``embedding_0...``, plus an
  optional id column (``filenames``, ``filename``, ``path``, ``id``); needs ``pyarrow``
  (``pip install selector[parquet]``).

Rows that are not unit length change which items the strategies pick (they compare inner
products); :func:`non_unit_rows` counts them so the caller can warn, and :func:`normalize_rows`
scales them.
"""
from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

ID_KEYS = ("ids", "filenames", "filename", "paths", "path", "id")
EMB_KEYS = ("embeddings", "embedding", "features")


class EmbeddingsError(ValueError):
    """An embeddings file that cannot be read; the message names the file and what was found."""


def _check(path: Path, emb: Any, ids: Any) -> tuple[np.ndarray, list[str] | None]:
    emb = np.asarray(emb)
    if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[1] == 0:
        raise EmbeddingsError(f"embeddings {path} must be a non-empty (n, d) array, got shape {emb.shape}")
    if not (np.issubdtype(emb.dtype, np.number) or emb.dtype == bool) or np.iscomplexobj(emb):
        raise EmbeddingsError(f"embeddings {path} must be real numbers, got dtype {emb.dtype}")
    emb = emb.astype(np.float32, copy=False)  # a float32 file is not copied: the pool may be gigabytes
    step = block_rows(emb.shape[1])
    bad = np.concatenate([~np.isfinite(emb[s:s + step]).all(axis=1) for s in range(0, emb.shape[0], step)])
    if bad.any():
        raise EmbeddingsError(f"embeddings {path}: {int(bad.sum())} rows hold NaN or infinity "
                              f"(first: row {int(np.argmax(bad))})")
    if ids is not None:
        ids = _id_list(path, ids)
        if len(ids) != emb.shape[0]:
            raise EmbeddingsError(f"embeddings {path}: {len(ids)} ids for {emb.shape[0]} rows")
        if len(set(ids)) != len(ids):
            raise EmbeddingsError(f"embeddings {path}: ids repeat")
    if emb.shape[0] > 1 and all_rows_equal(emb):
        what = "zero" if not emb[0].any() else "the same vector"
        raise EmbeddingsError(f"embeddings {path}: all {emb.shape[0]} rows are {what}; nothing tells the items "
                              "apart")
    return np.ascontiguousarray(emb), ids


def _id_list(path: Path, ids: Any) -> list[str]:
    """The ids of a file as strings: a sequence (list, tuple, 1-d array or tensor) of names or numbers."""
    seq = ids.tolist() if hasattr(ids, "tolist") else ids
    if isinstance(seq, (str, bytes)) or not isinstance(seq, (list, tuple)):
        raise EmbeddingsError(f"embeddings {path}: the ids must be a list of names, got {type(ids).__name__}")
    bad = next((i for i in seq if isinstance(i, bool) or not isinstance(i, (str, int))), None)
    if bad is not None:
        raise EmbeddingsError(f"embeddings {path}: an id is a {type(bad).__name__} ({str(bad)[:40]!r}), "
                              "not a name")
    return [str(i) for i in seq]


def _read_npy(path: Path) -> tuple[np.ndarray, list[str] | None]:
    try:
        emb = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise EmbeddingsError(f"cannot read embeddings {path}: not a plain .npy array ({e})") from None
    if not isinstance(emb, np.ndarray):
        raise EmbeddingsError(f"embeddings {path} is an .npz archive saved with a .npy name; rename it to .npz")
    return _check(path, emb, None)


def _read_npz(path: Path) -> tuple[np.ndarray, list[str] | None]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        raise EmbeddingsError(f"cannot read embeddings {path}: {e}") from None
    key = next((k for k in EMB_KEYS if k in arrays), None)
    if key is None:
        numeric = [k for k, a in arrays.items() if a.ndim == 2 and np.issubdtype(a.dtype, np.number)]
        if len(numeric) != 1:
            raise EmbeddingsError(f"embeddings {path} holds arrays {sorted(arrays)}; name the (n, d) one "
                                  "'embeddings' (and the ids 'ids')")
        key = numeric[0]
    id_key = next((k for k in ID_KEYS if k in arrays), None)
    return _check(path, arrays[key], arrays[id_key] if id_key else None)


def _read_lightly_csv(path: Path) -> tuple[np.ndarray, list[str] | None]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if r]
    if not rows:
        raise EmbeddingsError(f"embeddings {path} is empty")
    head = [h.strip() for h in rows[0]]
    cols = [i for i, h in enumerate(head) if h.startswith("embedding_")]
    if not cols:
        raise EmbeddingsError(f"embeddings {path}: header {','.join(head[:4])}... has no embedding_0... columns "
                              "(Lightly's format: filenames,embedding_0,...,labels)")
    name_col = next((head.index(k) for k in ("filenames", "filename", "path", "id") if k in head), None)
    try:
        emb = np.array([[float(r[i]) for i in cols] for r in rows[1:]], dtype=np.float64)
    except (ValueError, IndexError) as e:
        raise EmbeddingsError(f"embeddings {path}: a row is not numeric or is short ({e})") from None
    ids = [r[name_col] for r in rows[1:]] if name_col is not None else None
    return _check(path, emb, ids)


def _read_torch(path: Path) -> tuple[np.ndarray, list[str] | None]:
    import pickle

    import torch

    from .backbones.weights import load_failure

    try:
        with warnings.catch_warnings():  # e.g. the pickle protocol of a refused file: the error says it all
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        raise EmbeddingsError(f"cannot read embeddings {path} as tensors (weights_only): {load_failure(e)}") from None
    ids = None
    if isinstance(obj, dict):
        key = next((k for k in EMB_KEYS if k in obj), None)
        if key is None:
            raise EmbeddingsError(f"embeddings {path} is a dict with keys {sorted(map(str, obj))}; "
                                  "expected 'embeddings' (and optional 'filenames' or 'ids')")
        id_key = next((k for k in ID_KEYS if k in obj), None)
        ids = obj[id_key] if id_key else None
        obj = obj[key]
    if not isinstance(obj, torch.Tensor):
        raise EmbeddingsError(f"embeddings {path} holds a {type(obj).__name__}, not a tensor")
    if obj.layout != torch.strided:  # densifying could take any amount of memory: the user decides
        raise EmbeddingsError(f"embeddings {path} holds a {str(obj.layout).replace('torch.', '')} tensor; save a "
                              "dense one (tensor.to_dense())")
    dtype = str(obj.dtype).replace("torch.", "")
    if obj.is_complex():
        raise EmbeddingsError(f"embeddings {path} must be real numbers, got tensor dtype {dtype}")
    try:
        emb = obj.detach().float().numpy()
    except (TypeError, RuntimeError) as e:  # a quantized or other exotic tensor
        raise EmbeddingsError(f"embeddings {path}: a {dtype} tensor that does not convert to numbers "
                              f"({str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__})"
                              ) from None
    return _check(path, emb, ids)


def _read_parquet(path: Path) -> tuple[np.ndarray, list[str] | None]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise EmbeddingsError(f"reading {path} needs pyarrow: pip install pyarrow") from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises its own error types
        raise EmbeddingsError(f"cannot read embeddings {path}: {e}") from None
    names = table.column_names
    key = next((k for k in EMB_KEYS if k in names), None)
    if key is not None:
        emb = np.array(table.column(key).to_pylist(), dtype=np.float64)
    else:
        cols = sorted((c for c in names if c.startswith("embedding_")), key=lambda c: int(c.split("_")[1]))
        if not cols:
            raise EmbeddingsError(f"embeddings {path}: columns {names} hold no 'embedding' list column and "
                                  "no embedding_0... columns")
        emb = np.stack([table.column(c).to_numpy() for c in cols], axis=1)
    id_key = next((k for k in ID_KEYS if k in names), None)
    return _check(path, emb, table.column(id_key).to_pylist() if id_key else None)


Reader = Callable[[Path], "tuple[np.ndarray, list[str] | None]"]

#: File suffix -> reader ``path -> (embeddings (n, d) float32, ids or None)``.
READERS: dict[str, Reader] = {
    ".npy": _read_npy,
    ".npz": _read_npz,
    ".csv": _read_lightly_csv,
    ".pt": _read_torch,
    ".pth": _read_torch,
    ".parquet": _read_parquet,
}


def read_embeddings(path: str | os.PathLike) -> tuple[np.ndarray, list[str] | None]:
    """``(embeddings (n, d) float32, ids or None)`` from a file; the reader follows the suffix.

    Raises:
        EmbeddingsError: a missing file, an unknown suffix, or contents that are not an (n, d)
            array of finite numbers (with matching, distinct ids when the file has ids).
    """
    p = Path(path)
    reader = READERS.get(p.suffix.lower())
    if reader is None:
        raise EmbeddingsError(f"embeddings {p}: unknown suffix {p.suffix!r}; use one of {', '.join(READERS)}")
    if not p.is_file():
        raise EmbeddingsError(f"embeddings file {p} does not exist")
    return reader(p)


def block_rows(d: int, elements: int = 1 << 22) -> int:
    """Rows per block when an (n, d) array is scanned in blocks of about ``elements`` values (32 MB in
    float64), so that a scan's temporaries stay small however wide the embedding."""
    return int(max(1, int(elements) // max(1, int(d))))


def all_rows_equal(emb: np.ndarray, step: int | None = None) -> bool:
    """Whether every row of ``emb`` equals the first (an embedding no strategy can choose from)."""
    first = emb[:1]
    step = step or block_rows(emb.shape[1])
    return all(bool((emb[s:s + step] == first).all()) for s in range(0, emb.shape[0], step))


def _row_norms(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(largest magnitude, L2 norm of the row divided by it) of each row, in float64: dividing by the
    largest magnitude first, no square overflows (1e30 in float32) or underflows (1e-30)."""
    b = np.abs(block.astype(np.float64))
    top = b.max(axis=1)
    b /= np.where(top > 0, top, 1.0)[:, None]
    return top, np.sqrt(np.einsum("ij,ij->i", b, b))


def non_unit_rows(emb: np.ndarray, tol: float = 1e-3, step: int | None = None) -> int:
    """How many rows have an L2 norm off 1 by more than ``tol`` (computed without overflow, in blocks of
    ``step`` rows, default :func:`block_rows`)."""
    off = 0
    step = step or block_rows(emb.shape[1])
    for s in range(0, emb.shape[0], step):
        top, rel = _row_norms(emb[s:s + step])
        off += int((np.abs(top * rel - 1.0) > tol).sum())
    return off


def normalize_rows(emb: np.ndarray, step: int | None = None) -> np.ndarray:
    """Rows scaled to unit length (float32), in float64 blocks of ``step`` rows, each row divided by its
    largest magnitude first (so rows of 1e30 or 1e-30 do not overflow or vanish). A zero row cannot be
    scaled and is an error."""
    out = np.empty(emb.shape, dtype=np.float32)
    zero, first = 0, -1
    step = step or block_rows(emb.shape[1])
    for s in range(0, emb.shape[0], step):
        block = emb[s:s + step].astype(np.float64)
        top, rel = _row_norms(block)
        z = top == 0
        if z.any():
            first = s + int(np.argmax(z)) if first < 0 else first
            zero += int(z.sum())
            continue
        out[s:s + step] = block / top[:, None] / rel[:, None]
    if zero:
        raise EmbeddingsError(f"{zero} embedding rows are all zero and cannot be normalised (first: row {first})")
    return out
