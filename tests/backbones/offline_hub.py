"""A Hugging Face cache written by a test (the layout ``hf download`` leaves), with the hub library told it is
offline: what the ``timm:`` and ``open_clip:`` tests look weights up in."""
from __future__ import annotations

import shutil
from pathlib import Path

REVISION = "0123456789abcdef0123456789abcdef01234567"


def offline_hf_cache(monkeypatch, tmp_path) -> Path:
    """An empty Hugging Face cache folder in ``tmp_path``, used from now on; the hub library refuses any download."""
    from huggingface_hub import constants

    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def put_in_cache(cache: Path, repo_id: str, filename: str, source: Path | None = None) -> Path:
    """``source`` (an empty file if None) as ``filename`` of model repository ``repo_id`` in ``cache``, at its
    main revision, as a download leaves it; returns its path."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(REVISION)
    path = folder / "snapshots" / REVISION / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    if source is None:
        path.write_bytes(b"")
    else:
        shutil.copyfile(source, path)
    return path
