"""The optional extras stay optional: the command line (``selector --help``, ``selector serve --help``) loads
neither FiftyOne nor Label Studio's SDK, and ``selector serve`` refuses a missing key or an unreachable Label
Studio in one line, before reading the pool."""
from __future__ import annotations

import socket
import subprocess
import sys

from tests.conftest import cli_cmd, error_line, run, subprocess_env

#: Top-level packages of the extras (and what they pull in) that the command line must not import.
EXTRAS = {"fiftyone", "fiftyone_brain", "label_studio", "label_studio_sdk", "django", "httpx", "mongoengine",
          "pymongo"}


def loaded_after(code: str) -> set[str]:
    """Top-level modules loaded by a fresh interpreter after running ``code``."""
    probe = code + "\nimport sys\nprint(','.join(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], env=subprocess_env(), capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return set(out.strip().splitlines()[-1].split(","))


def test_the_command_line_and_its_help_load_no_optional_extra():
    help_code = ("from selector.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
                 "    assert e.code == 0, e\n")
    loaded = loaded_after(help_code)
    assert "selector" in loaded and "click" in loaded  # the probe ran
    assert not loaded & EXTRAS, sorted(loaded & EXTRAS)
    assert not loaded_after("import selector, selector.integrations, selector.cli.serve") & EXTRAS


def test_serve_help_imports_no_optional_extra():
    """In this process (``serve --help`` lists the encoder choices, which loads torch as ``select --help`` does):
    no extra module appears that was not loaded before."""
    before = {m.split(".")[0] for m in sys.modules}
    assert run("serve", "--help").exit_code == 0
    new = {m.split(".")[0] for m in sys.modules} - before
    assert not new & EXTRAS, sorted(new & EXTRAS)


def test_serve_is_listed_and_documents_its_options():
    out = subprocess.run(cli_cmd("--help"), env=subprocess_env(), capture_output=True, text=True, timeout=120,
                         check=True).stdout
    assert "serve" in out.split("Commands:")[1]
    text = run("serve", "--help").output
    for option in ("--pool", "--budget", "--api-key", "--label-studio-url", "--host", "--port", "LABEL_STUDIO_API_KEY"):
        assert option in text, option
    assert "127.0.0.1" in text  # localhost by default


def test_serve_without_a_key_or_label_studio_is_one_line_before_reading_the_pool(tmp_path, monkeypatch):
    pool = tmp_path / "pool"
    pool.mkdir()  # an empty pool: reading it would be a different error
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    r = run("serve", "--pool", pool)
    assert r.exit_code == 2 and "--api-key" in error_line(r)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    r = run("serve", "--pool", pool, "--api-key", "x", "--label-studio-url", url)
    assert r.exit_code == 1 and error_line(r).startswith(f"Error: Label Studio {url}: who am I:"), r.output
    r = run("serve", "--pool", pool, "--api-key", "x", "--label-studio-url", "localhost:8080")
    assert r.exit_code == 1 and "must start with http:// or https://, got 'localhost:8080'" in error_line(r)
    r = run("serve", "--pool", pool, "--api-key", "x", "--param", "nope=1")
    assert r.exit_code == 2 and "nope" in error_line(r)
