"""The default cache lives in the user cache folder, is shared across output folders, and can be listed and pruned."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from selector.cache import cache_entries, default_cache_dir, prune
from selector.cli import main
from tests.conftest import write_digits


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "selector"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # invalid per the XDG spec: ignored
    assert default_cache_dir() == Path.home() / ".cache" / "selector"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "selector"


def test_conftest_keeps_tests_out_of_the_real_home():
    assert not Path(os.environ["XDG_CACHE_HOME"]).resolve().is_relative_to(Path.home().resolve() / ".cache")


@pytest.mark.trains
def test_outputs_in_two_folders_share_one_cache(tmp_path):
    pool = write_digits(tmp_path / "pool", 40)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    args = ["select", "-b", 5, "-p", pool, "--arch", "resnet-small", "--epochs", 1, "-s", "random", "-q"]
    r1 = CliRunner().invoke(main, [str(a) for a in [*args, "-o", tmp_path / "a" / "s.csv"]])
    assert r1.exit_code == 0, r1.output
    r2 = CliRunner().invoke(main, [str(a) for a in [*args, "-o", tmp_path / "b" / "s.csv"]])
    assert r2.exit_code == 0, r2.output
    assert "loaded from the cache" in r2.output and "0 images embedded, 40 from cache" in r2.output
    assert str(default_cache_dir()) in r2.output
    assert not list(tmp_path.rglob(".selector-cache"))  # nothing beside the outputs

    info = CliRunner().invoke(main, ["cache", "info"])
    assert info.exit_code == 0 and str(default_cache_dir()) in info.output
    assert "encoders:   1" in info.output and "1 encoders' embeddings" in info.output


def _entry(root: Path, kind: str, name: str, nbytes: int, age_days: float) -> Path:
    path = root / ("encoders" if kind == "encoder" else "embeddings") / name
    target = path if kind == "encoder" else path / "chunk-x.npz"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"\0" * nbytes)
    t = time.time() - age_days * 86400
    os.utime(target, (t, t))
    return path


def test_prune_by_age_size_and_all(tmp_path):
    root = tmp_path / "c"
    old = _entry(root, "encoder", "encoder-old.pt", 1000, 40)
    mid = _entry(root, "embeddings", "mid", 3000, 10)
    new = _entry(root, "encoder", "encoder-new.pt", 2000, 0)
    assert [e.path for e in cache_entries(root)] == [old, mid, new]  # oldest use first
    assert [e.path for e in prune(root, older_than_days=30, dry_run=True)] == [old] and old.exists()
    assert [e.path for e in prune(root, older_than_days=30)] == [old] and not old.exists()
    assert [e.path for e in prune(root, keep_bytes=2500)] == [mid] and not mid.exists() and new.exists()
    assert [e.path for e in prune(root)] == [new] and cache_entries(root) == []
    assert prune(tmp_path / "missing") == []
    with pytest.raises(ValueError, match="older_than_days"):
        prune(root, older_than_days=-1)


def test_cache_prune_cli(tmp_path):
    root = tmp_path / "c"
    _entry(root, "encoder", "encoder-old.pt", 1000, 40)
    keep = _entry(root, "encoder", "encoder-new.pt", 10, 1)
    r = CliRunner().invoke(main, ["cache", "prune", "--cache-dir", str(root), "--older-than", "30"])
    assert r.exit_code == 0 and "removed encoder" in r.output and "encoder-old.pt" in r.output
    assert [e.path for e in cache_entries(root)] == [keep]
    r = CliRunner().invoke(main, ["cache", "prune", "--cache-dir", str(root)])
    assert r.exit_code == 2 and "--all" in r.output and keep.exists()
    r = CliRunner().invoke(main, ["cache", "prune", "--cache-dir", str(root), "--all", "--dry-run"])
    assert "would remove" in r.output and keep.exists()
    assert len(cache_entries(root)) == 1


@pytest.mark.parametrize("size", ["inf", "1e308"])
@pytest.mark.parametrize("dry_run", [True, False])
def test_prune_max_size_inf_means_no_limit(tmp_path, size, dry_run):
    """--max-size inf (or a size no float of bytes holds) is no limit: nothing is removed for size."""
    root = tmp_path / "c"
    entries = [_entry(root, "encoder", "encoder-old.pt", 1000, 40), _entry(root, "embeddings", "e", 3000, 1)]
    r = CliRunner().invoke(main, ["cache", "prune", "--cache-dir", str(root), "--max-size", size]
                           + (["--dry-run"] if dry_run else []))
    assert r.exit_code == 0, r.output
    assert re.search(r"(would remove|removed): +0 entries", r.output), r.output
    assert all(p.exists() for p in entries)
    r = CliRunner().invoke(main, ["cache", "prune", "--cache-dir", str(root), "--max-size", size,
                                  "--older-than", "30"])  # the age still applies
    assert r.exit_code == 0 and not entries[0].exists() and entries[1].exists(), r.output


@pytest.mark.parametrize("option", ["--max-size", "--older-than"])
def test_prune_nan_is_a_usage_error(tmp_path, option):
    root = tmp_path / "c"
    kept = _entry(root, "encoder", "encoder-old.pt", 1000, 40)
    r = CliRunner().invoke(main, ["cache", "prune", "--cache-dir", str(root), option, "nan"])
    assert r.exit_code == 2, r.output
    err = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert err == [f"Error: Invalid value for '{option}': nan is not a number; give a number >= 0 (inf: no limit)"]
    assert "Traceback" not in r.output and kept.exists()


def test_prune_refuses_nan_which_would_remove_everything(tmp_path):
    import math

    root = tmp_path / "c"
    kept = _entry(root, "encoder", "encoder-old.pt", 1000, 40)
    for kw in ({"keep_bytes": math.nan}, {"older_than_days": math.nan}, {"keep_bytes": -1}):
        with pytest.raises(ValueError, match="must be a number >= 0"):
            prune(root, **kw)
    assert prune(root, keep_bytes=math.inf) == [] and prune(root, older_than_days=math.inf) == [] and kept.exists()
