"""The families of other packages (``dinov2:``, ``timm:``, ``open_clip:``) cost nothing until named: importing
the package, its command line and the backbone registry, and ``selector select --help`` (which lists the
backbones), load neither timm, open_clip nor the Hugging Face hub library; naming ``timm:NAME`` loads timm.
Checked in a new interpreter, so what other tests imported does not count."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import subprocess_env

WATCH = ("timm", "open_clip", "huggingface_hub")


def loaded_after(statement: str) -> list[str]:
    """Modules of :data:`WATCH` in ``sys.modules`` after ``statement`` runs in a new interpreter."""
    code = f"import json, sys\n{statement}\nprint(json.dumps([m for m in {WATCH!r} if m in sys.modules]))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.processes
def test_help_and_imports_load_no_other_package():
    help_run = ("from click.testing import CliRunner\nfrom selector.cli import main\n"
                "r = CliRunner().invoke(main, ['select', '--help'])\nassert r.exit_code == 0, r.output\n"
                "text = ''.join(r.output.split())\n"
                "assert 'dinov2:NAME' in text and 'timm:NAME' in text and 'open_clip:NAME' in text, r.output")
    assert loaded_after("import selector, selector.cli, selector.backbones") == []
    assert loaded_after(help_run) == []


@pytest.mark.processes
def test_naming_a_timm_backbone_loads_timm():
    pytest.importorskip("timm")
    assert "timm" in loaded_after("from selector.backbones import get_backbone\nget_backbone('timm:test_vit')")
