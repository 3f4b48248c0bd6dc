"""Scripting with `selector select`: --json, -o -, progress bars only on a terminal (log lines elsewhere), -q keeps
warnings, shell completion without the heavy imports."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from selector.cli import main
from selector.cli.options import progress_bars


@pytest.fixture
def emb(tmp_path):
    """40 rows that are not unit length (so the reader warns), with ids."""
    x = np.random.default_rng(0).normal(size=(40, 16)).astype(np.float32)
    np.save(tmp_path / "emb.npy", x)
    (tmp_path / "ids.txt").write_text("".join(f"img_{i}.jpg\n" for i in range(40)), encoding="utf-8")
    return ["--embeddings", str(tmp_path / "emb.npy"), "--ids", str(tmp_path / "ids.txt")]


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_json_summary_is_the_only_stdout(emb, tmp_path):
    out = tmp_path / "sel.csv"
    r = _run("select", "-b", 7, *emb, "-s", "random", "-o", out, "--json")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 1  # one JSON object, nothing else
    data = json.loads(lines[0])
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert data["chosen"] == 7 and data["outputs"] == [str(out)] and data["strategy"] == "random"
    assert data["paths"] == [row["path"] for row in rows]
    assert data["summary"]["embeddings"] == f"40 x 16 from {tmp_path / 'emb.npy'}"
    assert "WARNING" in r.stderr and "not unit length" in r.stderr  # warnings go to stderr


def test_dash_out_streams_the_selection(emb, tmp_path):
    r_file = _run("select", "-b", 7, *emb, "-s", "random", "-o", tmp_path / "sel.csv")
    r = _run("select", "-b", 7, *emb, "-s", "random", "-o", "-")
    assert r.exit_code == 0, r.output
    assert r.stdout == (tmp_path / "sel.csv").read_text(encoding="utf-8")  # same bytes as the file
    assert "chosen:" in r.stderr and "chosen:" not in r.stdout and "chosen:" in r_file.stdout
    assert len(list(csv.DictReader(io.StringIO(r.stdout)))) == 7
    r = _run("select", "-b", 3, *emb, "-s", "random", "-o", "-", "--format", "jsonl")
    assert r.exit_code == 0, r.output
    assert [json.loads(ln)["path"] for ln in r.stdout.splitlines()][0].startswith("img_")
    assert not list(tmp_path.glob("-*")) and not (tmp_path / "-").exists()


def test_dash_out_refuses_what_it_cannot_stream(emb):
    r = _run("select", "-b", 3, *emb, "-o", "-", "--format", "cvat")
    assert r.exit_code == 2 and "-o - writes csv, jsonl, paths" in r.output
    r = _run("select", "-b", 3, *emb, "-o", "-", "--json")
    assert r.exit_code == 2 and "--json and -o - both write to stdout" in r.output


def test_quiet_keeps_warnings_and_hides_info(emb, tmp_path):
    r = _run("select", "-b", 3, *emb, "-o", tmp_path / "a.csv", "-v")
    assert "INFO:" in r.stderr and "WARNING:" in r.stderr
    r = _run("select", "-b", 3, *emb, "-o", tmp_path / "b.csv", "-v", "-q")
    assert r.exit_code == 0, r.output
    assert "INFO:" not in r.stderr and "WARNING:" in r.stderr and "not unit length" in r.stderr
    assert "chosen:" in r.stdout  # the result still shows


def test_progress_unless_quiet_wherever_stderr_goes(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_bars(quiet=False) is True  # redirected: log lines (selector.progress), not bars
    monkeypatch.setattr(sys, "stderr", Tty())
    assert progress_bars(quiet=False) is True and progress_bars(quiet=True) is False


def test_no_progress_bar_in_redirected_stderr(digits_pool, tmp_path):
    r = _run("select", "-b", 3, "-p", digits_pool, "-s", "random", "--epochs", 1, "-o", tmp_path / "s.csv")
    assert r.exit_code == 0, r.output
    assert "it/s" not in r.stderr and "%|" not in r.stderr and "s/it" not in r.stderr


def _complete(words: str, cword: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, _SELECTOR_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=str(cword))
    code = ("import sys\nfrom selector.cli import main\ntry:\n    main(prog_name='selector')\nexcept SystemExit:\n"
            "    pass\nprint('HEAVY', *[m for m in ('torch', 'faiss', 'kornia') if m in sys.modules], file=sys.stderr)")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.processes
def test_shell_completion_answers_without_heavy_imports():
    r = _complete("selector sel", 1)
    assert "plain,select" in r.stdout.splitlines()
    assert r.stderr.strip().splitlines()[-1] == "HEAVY"
    r = _complete("selector select --bud", 2)
    assert "plain,--budget" in r.stdout.splitlines() and r.stderr.strip().splitlines()[-1] == "HEAVY"
    env = dict(os.environ, _SELECTOR_COMPLETE="bash_source")
    src = subprocess.run([sys.executable, "-c", "from selector.cli import main; main(prog_name='selector')"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert "_selector_completion()" in src.stdout and "_SELECTOR_COMPLETE=bash_complete" in src.stdout
