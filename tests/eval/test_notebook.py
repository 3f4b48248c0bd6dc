"""eval/compare_strategies.ipynb runs top to bottom (small configuration), so it never rots."""
from __future__ import annotations

import pytest

from tests.conftest import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = REPO / "eval" / "compare_strategies.ipynb"


@pytest.mark.processes
def test_compare_strategies_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("SELECTOR_NB_QUICK", "1")
    monkeypatch.setenv("SELECTOR_NB_OUT", str(tmp_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO)}}).execute()
    assert (tmp_path / "accuracy.png").stat().st_size > 1000
    assert (tmp_path / "labels.png").stat().st_size > 1000
    outputs = "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
                      for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "| strategy | budget |" in outputs
    for c in nb.cells:
        for o in c.get("outputs", []):
            assert o.get("output_type") != "error", o
