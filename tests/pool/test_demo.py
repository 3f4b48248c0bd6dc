"""The demo pool (selector.pool.demo): scikit-learn's 1,797 digits written as a folder of class folders."""
from __future__ import annotations

from selector.pool import load_folder, write_demo_pool


def test_demo_pool(tmp_path):
    n = write_demo_pool(tmp_path / "demo")
    assert n == 1797
    pool = load_folder(tmp_path / "demo")
    assert len(pool) == 1797 and pool.channels == 1 and pool.size == 16
    assert {p.split("/")[0] for p in pool.ids} == {f"digit_{d}" for d in range(10)}
