"""The package's shape: import direction (FAISS primitives, selector.cluster <- strategies <- pipeline/API <-
CLI), no import circle anywhere in ``selector`` (every import statement, function-level ones included), no
file over 500 lines, and a wheel that holds every subpackage and none of the research in ``benchmarks/``.

The checks of what an import loads run in a fresh interpreter, so what other tests imported does not count.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from collections import deque
from pathlib import Path

import pytest

from tests.conftest import REPO

MAX_LINES = 500
# The installed package is assembled from three folders (pyproject's package-dir).
PACKAGE_ROOTS = ("selector", "selector.strategies", "selector.eval")


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


# ----------------------------------------------------------------------------- the import graph


def package_modules(folder: Path, package: str, skip: tuple[str, ...] = ()) -> dict[str, Path]:
    """{dotted module name: file} for ``folder`` (a package named ``package``) and every subpackage below it
    (folders with an ``__init__.py``); a package's name maps to its ``__init__.py``. Subfolders named in
    ``skip`` (relative names) are left out."""
    out = {}
    for f in sorted(folder.rglob("*.py")):
        rel = f.relative_to(folder)
        parts = list(rel.parent.parts)
        if parts and parts[0] in skip:
            continue
        if any(not (folder.joinpath(*parts[:i + 1]) / "__init__.py").is_file() for i in range(len(parts))):
            continue  # not inside a subpackage (a data or script folder)
        name = ".".join([package, *parts] + ([] if f.name == "__init__.py" else [f.stem]))
        out[name] = f
    return out


def selector_modules() -> dict[str, Path]:
    """Every module of the installed ``selector`` package, from its three source folders."""
    mods = {}
    for pkg in PACKAGE_ROOTS:
        nested = tuple(p.rsplit(".", 1)[1] for p in PACKAGE_ROOTS if p.startswith(pkg + "."))
        mods.update(package_modules(_package_dir(pkg), pkg, skip=nested))
    return mods


def imported_names(path: Path, module: str, is_package: bool, bases: bool = True) -> list[str]:
    """Absolute names of everything the file of ``module`` imports, from every import statement in it (top
    level, inside functions, under ``if``), relative imports resolved. ``from X import y`` gives ``X.y`` (a
    module or a name of X) and, with ``bases``, ``X`` too (the import runs it first)."""
    package = module if is_package else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if bases or any(a.name == "*" for a in node.names):
                names.append(mod)
            names += [f"{mod}.{a.name}" for a in node.names if a.name != "*"]
    return names


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """{module: modules it imports} over ``modules`` only. Importing ``a.b.c`` runs ``a``, ``a.b`` and
    ``a.b.c``: an edge goes to each, except to the importer itself and the packages that contain it (Python
    runs those before the importer in any case, so they are no direction of import)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        ancestors = {mod.rsplit(".", i)[0] for i in range(mod.count(".") + 1)}
        for name in imported_names(path, mod, path.name == "__init__.py"):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in modules and target not in ancestors:
                    graph[mod].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest circle ``[a, b, ..., a]`` for each group of modules that import each other (each
    strongly connected component of more than one module), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graphs are small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)

    cycles = []
    for group in groups:
        best: list[str] | None = None
        for start in sorted(group):  # shortest path from each member back to itself, inside the group
            prev = {start: None}
            queue = deque([start])
            found = None
            while queue and found is None:
                v = queue.popleft()
                for w in sorted(graph[v] & group):
                    if w == start:
                        found = v
                        break
                    if w not in prev:
                        prev[w] = v
                        queue.append(w)
            path = [start]
            v = found
            while v is not None and v != start:
                path.append(v)
                v = prev[v]
            path = [start] + path[1:][::-1] + [start]
            if best is None or len(path) < len(best):
                best = path
        cycles.append(best)
    return sorted(cycles)


def test_no_import_circle_inside_selector():
    modules = selector_modules()
    assert {"selector.api", "selector.strategies.base", "selector.eval.loop", "selector.backbones.registry",
            "selector.pool.folder", "selector.formats.tabular"} <= set(modules)  # the walk found the package
    cycles = find_cycles(import_graph(modules))
    assert cycles == [], "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def _write_package(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_the_circle_checker_finds_a_made_up_circle(tmp_path):
    """The checker itself: a circle through a function-level import and a relative import is found and
    named; a module importing its own package, and a package importing its modules, are not circles."""
    _write_package(tmp_path / "pkg", {
        "__init__.py": "from . import a\nfrom .sub import c\n",
        "a.py": "from .b import helper\nimport pkg\n",
        "b.py": "def helper():\n    from pkg.sub.c import thing\n    return thing\n",
        "sub/__init__.py": "",
        "sub/c.py": "import os\nfrom ... import pkg as _p\n\nif True:\n    from pkg import a as _a\nthing = 1\n",
        "lone.py": "from .sub import c\n",
    })
    modules = package_modules(tmp_path / "pkg", "pkg")
    assert set(modules) == {"pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c", "pkg.lone"}
    graph = import_graph(modules)
    assert graph["pkg"] == {"pkg.a", "pkg.sub", "pkg.sub.c"}
    assert graph["pkg.a"] == {"pkg.b"}  # `import pkg` runs its own package first: no edge
    assert graph["pkg.b"] == {"pkg.sub", "pkg.sub.c"}  # the import inside the function counts
    assert graph["pkg.sub.c"] == {"pkg.a"}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    (tmp_path / "pkg" / "b.py").write_text("def helper():\n    return 1\n")
    assert find_cycles(import_graph(package_modules(tmp_path / "pkg", "pkg"))) == []


def test_import_resolution_sees_a_forbidden_import(tmp_path):
    """The checker itself: a relative import that climbs out of the strategies is found, from a module and
    from a package's ``__init__``."""
    f = tmp_path / "bad.py"
    f.write_text("from ..api import Selector\nfrom selector import train\nimport selector.cli\nfrom .base import x\n"
                 "from . import random\n")
    assert _selector_imports(f, "selector.strategies.bad") == ["selector.api.Selector", "selector.train",
                                                              "selector.cli", "selector.strategies.base.x",
                                                              "selector.strategies.random"]
    assert imported_names(f, "selector.strategies.bad", is_package=False) == [
        "selector.api", "selector.api.Selector", "selector", "selector.train", "selector.cli",
        "selector.strategies.base", "selector.strategies.base.x", "selector.strategies",
        "selector.strategies.random"]
    assert imported_names(f, "selector.strategies", is_package=True)[0] == "selector.api"


# ----------------------------------------------------------------------------- import direction


def _selector_imports(path: Path, module: str) -> list[str]:
    """What the file of ``module`` imports from ``selector``, in statement order: ``import selector.x`` gives
    ``selector.x``, ``from selector.x import y`` gives ``selector.x.y`` (a module or a name in it)."""
    return [n for n in imported_names(path, module, path.name == "__init__.py", bases=False)
            if n == "selector" or n.startswith("selector.")]


def _under(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


@pytest.mark.processes
def test_importing_the_strategies_loads_no_pipeline_and_no_torch():
    loaded = _loaded_after("import selector.strategies", ("selector.api", "selector.cli", "selector.train",
                                                          "selector.embed", "torch", "kornia"))
    assert loaded == []


def test_strategies_import_nothing_of_selector_but_the_faiss_leaf():
    modules = {m: p for m, p in selector_modules().items() if m.startswith("selector.strategies")}
    assert len(modules) >= 8  # the check really looked at the strategy modules
    bad = {}
    for mod, path in modules.items():
        outside = [m for m in _selector_imports(path, mod) if not _under(m, "selector.cluster", "selector.strategies")]
        if outside:
            bad[mod] = outside
    assert bad == {}, f"strategies may import only selector.cluster from the pipeline: {bad}"


def test_the_faiss_leaf_imports_no_other_selector_module():
    assert _selector_imports(_package_dir("selector") / "cluster.py", "selector.cluster") == []


@pytest.mark.processes
@pytest.mark.parametrize("module", ["selector", "selector.cli"])
def test_command_line_and_package_import_without_torch_faiss_kornia(module):
    assert _loaded_after(f"import {module}", ("torch", "faiss", "kornia", "selector.api")) == []


@pytest.mark.processes
def test_lazy_names_still_resolve():
    loaded = _loaded_after("import selector\nassert selector.Selector.__name__ == 'Selector'\n"
                           "assert 'balanced' in selector.STRATEGIES", ("selector.api", "torch"))
    assert loaded == ["selector.api", "torch"]  # the first use loads the pipeline


def test_only_the_cli_imports_the_evaluation_package():
    users = sorted(m for m, p in selector_modules().items()
                   if not m.startswith("selector.eval")
                   and any(_under(n, "selector.eval") for n in _selector_imports(p, m)))
    assert users and all(m == "selector.cli" or m.startswith("selector.cli.") for m in users), users


def test_lazy_option_choices_are_the_registries():
    """The CLI's lazily loaded choices list exactly what the registries hold."""
    from selector.strategies import STRATEGIES

    from selector.backbones import ARCHS
    from selector.cli import main
    from selector.formats import FORMATS
    from selector.losses import LOSSES

    params = {p.name: p for p in main.commands["select"].params}
    assert list(params["strategy"].type.choices) == sorted(STRATEGIES)
    assert list(params["loss"].type.choices) == sorted(LOSSES)
    assert list(params["arch"].type.choices) == list(ARCHS)
    assert list(params["fmt"].type.choices) == list(FORMATS)


# ----------------------------------------------------------------------------- size and packaging


def test_no_file_of_the_package_over_500_lines():
    long = {str(p.relative_to(REPO)): n for p in selector_modules().values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"files over {MAX_LINES} lines: {long}"


def test_the_evaluation_package_imports_nothing_from_benchmarks():
    bad = {m: names for m, p in selector_modules().items()
           if (names := sorted({n for n in imported_names(p, m, p.name == "__init__.py") if _under(n, "benchmarks")}))}
    assert bad == {}, f"the package imports research scripts: {bad}"


# Folders at the repository root that a wheel build never reads (tests, caches, data, builds).
_NOT_COPIED = {".git", "tests", "build", "dist", ".venv", "venv", ".pytest_cache", ".selector-cache", ".bench_data",
               "demo_pool", "results", "docs", "examples", ".ci"}


@pytest.mark.processes
def test_the_wheel_holds_every_module_and_no_research(tmp_path):
    """``pip wheel .`` offline, from a copy of the working tree (the build writes into its source folder):
    every module and subpackage is in the wheel, and no benchmark script or result file is."""
    src = tmp_path / "src"

    def ignore(folder, names):
        skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
        return skip | (_NOT_COPIED & set(names) if Path(folder) == REPO else set())

    shutil.copytree(REPO, src, ignore=ignore, symlinks=True)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                        "--no-index", "-q", "-w", str(tmp_path / "wheel")],
                       capture_output=True, text=True, timeout=300, cwd=src)
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = (tmp_path / "wheel").glob("selector-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    files = [n for n in names if ".dist-info/" not in n]

    expected = set()
    for mod, path in selector_modules().items():
        parts = mod.split(".")
        expected.add("/".join(parts + ["__init__.py"]) if path.name == "__init__.py" else "/".join(parts) + ".py")
    assert sorted(expected - set(files)) == []  # every module, so every subpackage's __init__.py
    # nothing else but the evaluation notebook: no benchmark script, no result table, plot or array
    assert sorted(n for n in set(files) - expected if not n.endswith((".ipynb", "py.typed"))) == []
    assert "selector/eval/compare_strategies.ipynb" in files
    scripts = {p.name for p in (REPO / "benchmarks").glob("*.py")} - {"__init__.py"}
    assert scripts and (REPO / "benchmarks" / "results").is_dir()  # there is research the wheel must leave out
    assert [n for n in files if n not in expected and n.rsplit("/", 1)[-1] in scripts] == []
    assert [n for n in files if "benchmarks" in n or "/results/" in n or "/runs/" in n] == []
