"""The one boundary of the command line (selector.cli.errors): any exception a command raises ends as one
``Error:`` line with exit status 1 (the traceback only with --debug); click's usage errors and Ctrl-C
keep their own behaviour."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from selector.cli import main
from selector.cli.errors import DEBUG_HINT, one_line, unexpected_line

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def emb(tmp_path):
    np.save(tmp_path / "e.npy", np.eye(8, dtype=np.float32))
    return tmp_path / "e.npy"


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _error_lines(r) -> list[str]:
    return [ln for ln in r.output.splitlines() if ln.startswith("Error:")]


def _boom(*a, **k):
    raise TypeError("boom\nsecond line of the message")


def test_an_unexpected_exception_is_one_line_naming_the_input(emb, tmp_path, monkeypatch):
    import selector.workflow

    monkeypatch.setattr(selector.workflow, "select_from_embeddings", _boom)
    r = _run("select", "-b", 2, "--embeddings", emb, "-o", tmp_path / "o.csv")
    assert r.exit_code == 1
    assert r.output.splitlines() == [f"Error: selector select --embeddings {emb}: TypeError: boom {DEBUG_HINT}"]
    assert "Traceback" not in r.output and not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_lets_the_exception_through(emb, tmp_path, monkeypatch, where):
    import selector.workflow

    monkeypatch.setattr(selector.workflow, "select_from_embeddings", _boom)
    args = ["select", "-b", "2", "--embeddings", str(emb), "-o", str(tmp_path / "o.csv")]
    r = CliRunner().invoke(main, ["--debug", *args] if where == "before" else [*args, "--debug"])
    assert r.exit_code == 1 and isinstance(r.exception, TypeError)
    assert "Error:" not in r.output


PATCHED = """
import sys
import selector.workflow
def boom(*a, **k):
    raise TypeError("boom")
selector.workflow.select_from_embeddings = boom
from selector.cli import main
main(prog_name="selector")
"""


@pytest.mark.processes
def test_the_traceback_shows_with_debug_only(emb, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = ["select", "-b", "2", "--embeddings", str(emb), "-o", str(tmp_path / "o.csv")]
    plain = subprocess.run([sys.executable, "-c", PATCHED, *args], capture_output=True, text=True, timeout=300, env=env)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    line = f"Error: selector select --embeddings {emb}: TypeError: boom {DEBUG_HINT}"
    assert plain.stderr.strip().splitlines() == [line]
    debug = subprocess.run([sys.executable, "-c", PATCHED, "--debug", *args], capture_output=True, text=True,
                           timeout=300, env=env)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr and debug.stderr.strip().endswith("TypeError: boom")


def test_the_step_names_the_file_being_read(emb, tmp_path, monkeypatch):
    import selector.plan

    def key_error(*a, **k):
        raise KeyError(0)

    labels = tmp_path / "done.json"
    labels.write_text("[]")
    monkeypatch.setattr(selector.plan, "read_label_files", key_error)
    r = _run("select", "-b", 2, "--embeddings", emb, "--labeled", labels, "-o", tmp_path / "o.csv")
    assert r.exit_code == 1
    assert _error_lines(r) == [f"Error: labels file {labels}: KeyError: 0 {DEBUG_HINT}"], r.output


@pytest.mark.parametrize("exc", [RecursionError("maximum recursion depth exceeded"), MemoryError(),
                                 AssertionError("Wrong image height! Expected 224 but got 96!"),
                                 RuntimeError("use_gpu=True but faiss sees no GPU"), AttributeError("x")])
def test_every_kind_of_exception_is_one_line(emb, tmp_path, monkeypatch, exc):
    import selector.api

    def raise_it(*a, **k):
        raise exc

    monkeypatch.setattr(selector.api, "select_embeddings", raise_it)
    r = _run("select", "-b", 2, "--embeddings", emb, "-s", "random", "-o", tmp_path / "o.csv")
    assert r.exit_code == 1
    kind = type(exc).__name__
    assert _error_lines(r) == [f"Error: strategy random: {kind}: {exc} {DEBUG_HINT}" if str(exc)
                               else f"Error: strategy random: {kind} {DEBUG_HINT}"], r.output
    assert len(r.output.splitlines()) == 1


def test_a_pillow_decompression_bomb_in_show_names_the_pool(tmp_path, monkeypatch):
    from PIL import Image

    import selector.show

    pool = tmp_path / "pool"
    pool.mkdir()
    sel = tmp_path / "sel.csv"
    sel.write_text("rank,path,group,score\n1,a.png,0,0.0\n")

    def bomb(*a, **k):
        raise Image.DecompressionBombError("Image size (2500000000 pixels) exceeds limit")

    monkeypatch.setattr(selector.show, "contact_sheet", bomb)
    r = _run("show", sel, "--pool", pool)
    assert r.exit_code == 1
    assert _error_lines(r) == [f"Error: images of {pool}: DecompressionBombError: Image size (2500000000 pixels) "
                               f"exceeds limit {DEBUG_HINT}"], r.output


def test_known_errors_keep_their_line_and_debug_shows_their_traceback(tmp_path):
    from selector.pool import PoolError

    r = _run("select", "-b", 2, "--pool", tmp_path / "nope", "--encoder", tmp_path / "none.pt",
             "-o", tmp_path / "o.csv")
    assert r.exit_code == 1 and r.output.splitlines() == [f"Error: encoder file {tmp_path / 'none.pt'} does not exist"]
    r = _run("select", "-b", 2, "--pool", tmp_path / "nope", "--workers", 0, "--cache-dir", tmp_path / "c", "-q",
             "-o", tmp_path / "o.csv")
    assert r.exit_code == 1 and r.output.splitlines() == [f"Error: pool {tmp_path / 'nope'} does not exist"]
    r = _run("--debug", "select", "-b", 2, "--pool", tmp_path / "nope", "--workers", 0, "--cache-dir", tmp_path / "c",
             "-o", tmp_path / "o.csv")
    assert r.exit_code == 1 and isinstance(r.exception, PoolError)


def test_usage_errors_and_ctrl_c_are_left_to_click(emb, tmp_path, monkeypatch):
    r = _run("select", "-b", 0, "--embeddings", emb)
    assert r.exit_code == 2 and "budget must be positive" in r.output
    import selector.workflow

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(selector.workflow, "select_from_embeddings", interrupt)
    r = _run("select", "-b", 2, "--embeddings", emb, "-o", tmp_path / "o.csv")
    assert r.exit_code == 1 and "Aborted!" in r.output and "Error:" not in r.output


def test_an_exception_while_parsing_options_is_one_line_too(monkeypatch, tmp_path):
    import selector.encoding

    def broken(name):
        raise TypeError("registry broken")

    monkeypatch.setattr(selector.encoding, "check_backbone", broken)
    r = _run("embed", "--pool", tmp_path, "--backbone", "efficientnet-lite0")
    assert r.exit_code == 1
    assert r.output.splitlines() == [f"Error: selector: TypeError: registry broken {DEBUG_HINT}"]


def test_every_command_runs_behind_the_boundary():
    from selector.cli.errors import Command, Group

    def walk(cmd):
        yield cmd
        for sub in getattr(cmd, "commands", {}).values():
            yield from walk(sub)

    cmds = list(walk(main))
    assert len(cmds) == 11  # main, 8 commands (serve among them), cache's 2
    assert all(isinstance(c, Group if isinstance(c, click.Group) else Command) for c in cmds)


def test_the_lines():
    assert one_line(FileNotFoundError(2, "No such file or directory", "/x/y")) == "/x/y: No such file or directory"
    assert one_line(ValueError("first\nsecond")) == "first" and one_line(ValueError()) == "ValueError"
    assert unexpected_line(KeyError(0), "labels file a.json") == f"labels file a.json: KeyError: 0 {DEBUG_HINT}"
    assert unexpected_line(MemoryError(), "pool p") == f"pool p: MemoryError {DEBUG_HINT}"
