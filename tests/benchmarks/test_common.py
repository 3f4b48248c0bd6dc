"""benchmarks/common.py: list options as the recorded commands write them, the recorded command itself, and every
command recorded under benchmarks/results still parsing with the script it names."""
import importlib
import re
import shlex
from pathlib import Path

import click
import pytest

from benchmarks.common import command_line, list_option, run, spread_lists

pytestmark = pytest.mark.slow

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


@click.command("demo")
@list_option("--datasets", default=("a", "b"), type=click.Choice(("a", "b", "c")))
@list_option("--mults", type=float)
@click.option("--seeds", type=int, default=1)
@click.option("--summary-only", is_flag=True)
def demo(datasets, mults, seeds, summary_only):
    return datasets, mults, seeds, command_line(("--summary-only",))


def test_list_options_take_every_value_after_one_flag():
    assert spread_lists(demo, ["--datasets", "a", "c", "--seeds", "2", "--mults", "0.5", "-1"]) == [
        "--datasets", "a", "--datasets", "c", "--seeds", "2", "--mults", "0.5", "--mults", "-1"]
    assert run(demo, ["--datasets", "c", "a", "--summary-only", "--mults", "1", "2"]) == (
        ("c", "a"), (1.0, 2.0), 1, "python -m benchmarks.demo --datasets c a --mults 1 2")
    assert run(demo, [])[:3] == (("a", "b"), (), 1)
    with pytest.raises(click.UsageError):  # a list flag with no value is an error, as with argparse
        run(demo, ["--datasets", "--seeds", "2"])
    with pytest.raises(click.BadParameter):
        run(demo, ["--datasets", "a", "z"])


def recorded_commands():
    """(file, script, words) of every ``python -m benchmarks.NAME ...`` written in a results file: the lines of a
    text file, fenced and indented code lines of a markdown file (continuation lines joined) and its inline code
    spans."""
    found = []
    for path in sorted(RESULTS.rglob("*")):
        if path.suffix not in (".md", ".txt"):
            continue
        text = path.read_text(encoding="utf-8").replace("\\\n", " ")
        fences = text.split("```") if path.suffix == ".md" else ["", text]
        pieces = [line for block in fences[1::2] for line in block.splitlines()]
        for prose in fences[::2]:
            pieces += re.findall(r"`([^`]+)`", prose)
            pieces += [line for line in prose.splitlines() if line.startswith("    ")]
        for piece in pieces:
            for m in re.finditer(r"python -m benchmarks\.(\w+)(.*)", piece.replace("\n", " ")):
                words = shlex.split(m.group(2), comments=True)
                if not any(c in w for w in words for c in "$*>&;"):  # shell loops and globs are not one command
                    found.append((path.relative_to(RESULTS), m.group(1), words))
    return found


def test_every_recorded_command_parses_with_its_script():
    found = recorded_commands()
    assert len(found) >= 69
    for path, script, words in found:
        cmd = importlib.import_module(f"benchmarks.{script}").cli
        try:
            cmd.make_context(script, spread_lists(cmd, list(words)))
        except click.ClickException as e:
            pytest.fail(f"{path}: python -m benchmarks.{script} {shlex.join(words)}: {e.format_message()}")


def test_recorded_commands_are_the_recorded_lines_in_order(tmp_path):
    from benchmarks.common import record_command, recorded_commands

    assert recorded_commands(tmp_path) == []
    record_command(tmp_path, "python -m benchmarks.x --a 1")
    record_command(tmp_path, "python -m benchmarks.x --a 2")
    assert recorded_commands(tmp_path) == ["python -m benchmarks.x --a 1", "python -m benchmarks.x --a 2"]
    assert (tmp_path / "commands.txt").read_text(encoding="utf-8").endswith("--a 2\n")
