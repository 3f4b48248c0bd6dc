"""Import direction: FAISS primitives (selector.cluster) <- strategies <- pipeline/API <- CLI.

Each check runs in a fresh interpreter, so what other tests imported does not count."""
from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest


def _loaded_after(statement: str, watch: tuple[str, ...]) -> list[str]:
    """Modules of ``watch`` present in ``sys.modules`` after running ``statement`` in a new interpreter."""
    code = f"import json, sys\n{statement}\nprint(json.dumps([m for m in {watch!r} if m in sys.modules]))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, name
    return Path(list(spec.submodule_search_locations)[0])


def _selector_imports(path: Path, package: str) -> list[str]:
    """Absolute names of the ``selector`` modules that the file at ``path`` (a module of ``package``)
    imports, relative imports resolved."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from selector import train` and `from .. import api` name a module after `import`
            names += [f"{mod}.{a.name}" for a in node.names] if mod == "selector" or not node.module else [mod]
    return [n for n in names if n == "selector" or n.startswith("selector.")]


def test_importing_the_strategies_loads_no_pipeline_and_no_torch():
    loaded = _loaded_after("import selector.strategies", ("selector.api", "selector.cli", "selector.train",
                                                          "selector.embed", "torch", "kornia"))
    assert loaded == []


def test_strategies_import_nothing_of_selector_but_the_faiss_leaf():
    folder = _package_dir("selector.strategies")
    files = sorted(folder.glob("*.py"))
    assert len(files) >= 8, folder  # the check really looked at the strategy modules
    bad = {}
    for f in files:
        outside = [m for m in _selector_imports(f, "selector.strategies")
                   if m != "selector.cluster" and not m.startswith("selector.strategies")]
        if outside:
            bad[f.name] = outside
    assert bad == {}, f"strategies may import only selector.cluster from the pipeline: {bad}"


def test_the_faiss_leaf_imports_no_other_selector_module():
    assert _selector_imports(_package_dir("selector") / "cluster.py", "selector") == []


def test_import_resolution_sees_a_forbidden_import(tmp_path):
    """The checker itself: a relative import that climbs out of the strategies is found."""
    f = tmp_path / "bad.py"
    f.write_text("from ..api import Selector\nfrom selector import train\nimport selector.cli\nfrom .base import x\n")
    assert _selector_imports(f, "selector.strategies") == ["selector.api", "selector.train", "selector.cli",
                                                           "selector.strategies.base"]


@pytest.mark.parametrize("module", ["selector", "selector.cli"])
def test_command_line_and_package_import_without_torch_faiss_kornia(module):
    assert _loaded_after(f"import {module}", ("torch", "faiss", "kornia", "selector.api")) == []


def test_lazy_names_still_resolve():
    loaded = _loaded_after("import selector\nassert selector.Selector.__name__ == 'Selector'\n"
                           "assert 'balanced' in selector.STRATEGIES", ("selector.api", "torch"))
    assert loaded == ["selector.api", "torch"]  # the first use loads the pipeline


def test_only_the_cli_imports_the_evaluation_package():
    folder = _package_dir("selector")
    users = sorted(f.name for f in folder.glob("*.py")
                   if any(m == "selector.eval" or m.startswith("selector.eval.")
                          for m in _selector_imports(f, "selector")))
    assert users == ["cli.py"]


def test_lazy_option_choices_are_the_registries():
    """The CLI's lazily loaded choices list exactly what the registries hold."""
    from selector.backbones import ARCHS
    from selector.cli import main
    from selector.formats import FORMATS
    from selector.losses import LOSSES
    from selector.strategies import STRATEGIES

    params = {p.name: p for p in main.commands["select"].params}
    assert list(params["strategy"].type.choices) == sorted(STRATEGIES)
    assert list(params["loss"].type.choices) == sorted(LOSSES)
    assert list(params["arch"].type.choices) == list(ARCHS)
    assert list(params["fmt"].type.choices) == list(FORMATS)
