"""Progress: a bar on a terminal, log lines elsewhere (every interval or tenth of the work, and a last line);
through the command line a redirected stderr gets the lines, -q none."""
from __future__ import annotations

import io
import logging
import sys

import pytest

from selector import progress as P
from selector.cli.options import progress_bars
from tests.conftest import run, write_digits


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="selector.progress")

    def got() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "selector.progress"]

    return got


def test_a_line_every_interval_and_every_tenth_and_a_last_line(lines):
    clock = Clock()
    bar = P.LineProgress(10_000, "embedding", "img", interval=30, clock=clock)
    clock.t = 1.0
    bar.update(500)  # 5 % after 1 s: nothing yet
    assert lines() == []
    clock.t = 2.0
    bar.update(500)  # a tenth, but within a tenth of the interval of the start: still nothing
    assert lines() == []
    clock.t = 4.0
    bar.update(100)  # 11 % and 4 s > 3 s: a line
    assert lines() == ["embedding: 1,100 of 10,000 images (11 %), 275 img/s, about 32 s left"]
    clock.t = 40.0
    bar.update(100)  # 36 s since the last line: a line although only 1 % more is done
    assert lines()[-1] == "embedding: 1,200 of 10,000 images (12 %), 30 img/s, about 5 min left"
    clock.t = 41.0
    bar.update(8_800)  # done: the last line is close()'s, not a progress line
    assert len(lines()) == 2
    bar.close()
    bar.close()  # once
    assert lines()[2:] == ["embedding: 10,000 images in 41 s (244 img/s)"]


def test_postfix_rates_and_a_step_that_stops_early(lines):
    clock = Clock()
    bar = P.LineProgress(200, "training (simclr)", "step", initial=50, interval=0, clock=clock)
    bar.set_postfix(epoch=2, loss="4.123", img_s="380")
    clock.t = 100.0
    bar.update(1)  # one step in 100 s: seconds per step; the steps resumed from are not counted in the rate
    assert lines() == ["training (simclr): 51 of 200 steps (26 %), 100.0 s/step, about 4 h 8 min left; "
                       "epoch 2, loss 4.123, 380 img/s"]
    bar.close()
    assert lines()[-1] == ("training (simclr): stopped at 51 of 200 steps after 1 min 40 s; "
                           "epoch 2, loss 4.123, 380 img/s")


def test_mode_follows_the_terminal_and_the_environment(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv(P.MODE_ENV, raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(P.progress(10, "x"), P.LineProgress)
    assert P.progress(10, "x", enabled=False) is None
    monkeypatch.setattr(sys, "stderr", Tty())
    bar = P.progress(10, "x")
    assert not isinstance(bar, P.LineProgress) and hasattr(bar, "update")  # a tqdm bar
    bar.close()
    monkeypatch.setenv(P.MODE_ENV, "lines")
    assert isinstance(P.progress(10, "x"), P.LineProgress)
    with pytest.raises(ValueError, match="progress mode"):
        P.progress(10, "x", mode="dots")
    # the command line wants progress unless -q, wherever stderr goes: the library picks bar or lines
    assert progress_bars(quiet=False) is True and progress_bars(quiet=True) is False


@pytest.mark.parametrize("text, want", [("", P.INTERVAL_S), ("5", 5.0), ("0", 0.0), ("-1", P.INTERVAL_S),
                                        ("soon", P.INTERVAL_S), ("nan", P.INTERVAL_S)])
def test_the_interval_from_the_environment(monkeypatch, text, want):
    monkeypatch.setenv(P.INTERVAL_ENV, text)
    assert P.line_interval() == want


def test_a_redirected_stderr_gets_progress_lines_and_quiet_none(tmp_path, monkeypatch):
    """selector select on a pool of 200 small digits (embedded in batches of 64), stderr captured (not a
    terminal), a line at every update; the network is a small one with random weights, to stay fast."""
    monkeypatch.setenv(P.INTERVAL_ENV, "0")
    monkeypatch.delenv(P.MODE_ENV, raising=False)
    pool = write_digits(tmp_path / "pool", 200)
    args = ["select", "-b", 3, "-p", pool, "-s", "random", "--backbone", "resnet-small", "--backbone-mode", "frozen",
            "--image-size", 16, "--workers", 0]
    r = run(*args, "-o", tmp_path / "a.csv", "--cache-dir", tmp_path / "cache-a")
    assert r.exit_code == 0, r.output
    err = r.stderr.splitlines()
    assert "INFO: reading pool: 200 images in " in r.stderr and "INFO: decoding pool: 200 images in " in r.stderr
    assert "INFO: embedding: 64 of 200 images (32 %), " in r.stderr
    assert any(ln.startswith("INFO: embedding: 128 of 200 images (64 %), ") and ln.endswith(" left") for ln in err)
    assert any(ln.startswith("INFO: embedding: 200 images in ") for ln in err), err
    assert "%|" not in r.stderr and "it/s" not in r.stderr  # lines, not a bar
    assert "chosen:" in r.stdout and " of 200 images (" not in r.stdout  # progress never goes to stdout
    r = run(*args, "-o", tmp_path / "b.csv", "--cache-dir", tmp_path / "cache-b", "-q")
    assert r.exit_code == 0, r.output
    assert "chosen:" in r.stdout
    assert "INFO" not in r.stderr and "reading pool" not in r.stderr and "embedding:" not in r.stderr
