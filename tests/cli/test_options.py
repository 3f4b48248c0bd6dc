"""Shared options arrive as small frozen dataclasses (selector.cli.options.OptionGroup): a command takes a
handful of them instead of dozens of parameters, and no option passes its value through ctx.meta."""
from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import subprocess
import sys
import typing
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from selector.cli import main
from selector.cli.options import BackboneOptions, DistOptions, EncoderOptions, OptionGroup, RunOptions, backbone_options

CLI = Path(__file__).resolve().parents[2] / "selector" / "cli"


def _hints(command: click.Command) -> dict[str, type]:
    fn = inspect.unwrap(command.callback)
    return typing.get_type_hints(fn, globalns=sys.modules[fn.__module__].__dict__)


def _is_frozen_dataclass(t) -> bool:
    return dataclasses.is_dataclass(t) and t.__dataclass_params__.frozen


def test_select_takes_a_handful_of_frozen_dataclasses():
    hints = _hints(main.commands["select"])
    hints.pop("return", None)
    assert len(hints) <= 8, list(hints)
    assert all(_is_frozen_dataclass(t) for t in hints.values()), hints
    assert {RunOptions, EncoderOptions, DistOptions} <= set(hints.values())
    n_options = sum(len(dataclasses.fields(t)) for t in hints.values())
    assert n_options >= 40  # every option of select arrives inside one of them


@pytest.mark.parametrize("name, groups", [("train", {RunOptions, EncoderOptions, DistOptions}),
                                          ("embed", {RunOptions, BackboneOptions, DistOptions})])
def test_train_and_embed_share_the_groups(name, groups):
    assert groups <= set(_hints(main.commands[name]).values())


def test_an_option_group_hands_one_frozen_dataclass():
    seen = []

    @click.command()
    @click.option("--x", default=1)
    @backbone_options
    def cmd(x, backbone):
        seen.append((x, backbone))

    r = CliRunner().invoke(cmd, ["--x", "3", "--backbone-mode", "frozen", "--backbone-size", "64"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    x, bk = seen[0]
    assert x == 3 and bk == BackboneOptions(backbone=None, backbone_mode="frozen", weights=None, backbone_size=64)
    with pytest.raises(dataclasses.FrozenInstanceError):
        bk.backbone = "resnet18"
    assert [p.name for p in cmd.params][:2] == ["x", "backbone"]  # the help order: the group where it was put


def test_a_group_whose_name_is_also_a_parameter_is_refused():
    @dataclasses.dataclass(frozen=True)
    class G:
        a: int

    @click.command()
    @click.option("--g", default=0)
    @OptionGroup(G, "g", click.option("--a", default=1))
    def cmd(g):
        pass

    r = CliRunner().invoke(cmd, [])
    assert isinstance(r.exception, TypeError) and "both a parameter and an option group" in str(r.exception)


def test_the_encoder_options_give_the_selector_arguments():
    enc = EncoderOptions(backbone=None, backbone_mode="auto", weights=None, backbone_size=None, image_size=None,
                         epochs=None, loss="simclr", arch=None, pixel_view=False, flip=False, autoencoder=None,
                         time_budget=2.0)
    assert enc.selector_kwargs() == {"backbone": None, "backbone_mode": "auto", "weights": None, "backbone_size": None,
                                     "time_budget": 2.0, "flip": False, "autoencoder": 0.0, "pixel_view": False}
    train = enc.selector_kwargs(train=True)
    assert train["backbone_mode"] == "finetune" and "pixel_view" not in train  # selector train trains


def test_no_option_passes_its_value_through_ctx_meta():
    sources = {f.name: f.read_text(encoding="utf-8") for f in CLI.glob("*.py")}
    assert "select.py" in sources and not [n for n, s in sources.items() if "ctx.meta" in s or ".meta[" in s]


COMMANDS = ("select", "train", "embed", "eval", "show", "cache", "demo")


@pytest.mark.parametrize("name", COMMANDS)
def test_command_modules_are_small_and_import_only_click_and_light_modules_at_the_top(name):
    path = CLI / f"{name}.py"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert 30 <= len(lines) <= 250, len(lines)
    top = [n for n in ast.parse("\n".join(lines)).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    heavy = [ast.unparse(n) for n in top if isinstance(n, ast.Import) and n.names[0].name.split(".")[0]
             in ("numpy", "torch", "faiss", "PIL", "kornia", "selector")]
    heavy += [ast.unparse(n) for n in top if isinstance(n, ast.ImportFrom) and not n.level
              and (n.module or "").split(".")[0] in ("numpy", "torch", "faiss", "PIL", "kornia")]
    assert heavy == []


@pytest.mark.processes
def test_importing_the_command_line_loads_no_numpy_and_no_pipeline():
    code = ("import json, sys, selector.cli\nprint(json.dumps([m for m in ('numpy', 'torch', 'faiss', 'selector.api', "
            "'selector.workflow') if m in sys.modules]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []
