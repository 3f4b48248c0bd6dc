"""--time-budget: the step plan (a pure function) and training on a fake clock (no wall-clock assertion).

The fake clock advances a fixed number of seconds each time it is read; training reads it once per
step (and once per timed step before planning), so "seconds per step" is known exactly and the test
can check that the planned run ends within the budget and finishes its learning-rate schedule.
"""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from selector.backbones import EncoderConfig
from selector.checkpoint import read_checkpoint
from selector.train import TrainConfig, plan_steps, train_encoder

ENC = EncoderConfig("resnet-small", 1, 16, proj_dim=32)



pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FakeClock:
    """Seconds that advance by ``step`` at every reading."""

    def __init__(self, step: float):
        self.t, self.step, self.reads = 1000.0, step, 0

    def __call__(self) -> float:
        self.t += self.step
        self.reads += 1
        return self.t


def _budget_cfg(seconds: float, **kw) -> TrainConfig:
    base = dict(loss="simclr", epochs=0, batch_size=16, seed=5, time_budget_s=seconds)
    base.update(kw)
    return TrainConfig(**base)


def test_plan_steps():
    assert plan_steps(120.0, 0.0, 1.0) == 114  # 5 % margin
    assert plan_steps(120.0, 10.0, 1.0) == 104  # time already spent counts
    assert plan_steps(120.0, 0.0, 1.0, margin=0.0) == 120
    assert plan_steps(120.0, 0.0, 0.7) == int(114 // 0.7)
    assert plan_steps(10.0, 50.0, 1.0) == 1  # over budget already: one step, never zero
    for bad in [(0.0, 0.0, 1.0), (10.0, 0.0, 0.0), (-1.0, 0.0, 1.0)]:
        with pytest.raises(ValueError, match="positive"):
            plan_steps(*bad)


@pytest.mark.trains
def test_two_minute_budget_ends_within_it_and_runs_the_whole_schedule(tmp_path, digits_images):
    """``--time-budget 2`` on a fake clock of 8 s per step: training ends within 2 minutes (+10 %), the
    number of steps is the plan, and the cosine schedule reaches its end (lr 0 at the last step)."""
    clock = FakeClock(8.0)
    ckpt = tmp_path / "enc.pt"
    enc = train_encoder(digits_images, ENC, _budget_cfg(120.0), "cpu", checkpoint_path=ckpt, clock=clock)
    rep = enc.train_report
    state = read_checkpoint(ckpt)
    steps_per_epoch = 48 // 16
    assert rep["seconds"] <= 120.0 * 1.1
    assert rep["seconds"] >= 0.8 * 120.0  # the budget is used, not wasted
    assert rep["steps"] == state["total_steps"] == state["steps_done"]
    assert rep["steps"] == plan_steps(120.0, 8.0 * 5, 8.0) == 9  # 4 timing reads + 1 planning read
    assert rep["images_seen"] == rep["steps"] * 16 and rep["epochs"] == pytest.approx(rep["steps"] / steps_per_epoch)
    assert state["scheduler"]["last_epoch"] == rep["steps"]
    base = TrainConfig().lr
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12 * base)
    assert state["optimizer"]["param_groups"][0]["initial_lr"] == pytest.approx(base)


@pytest.mark.trains
def test_epochs_cap_a_budget(digits_images):
    enc = train_encoder(digits_images, ENC, _budget_cfg(120.0, epochs=1), "cpu", clock=FakeClock(2.0))
    assert enc.train_report["steps"] == 3


@pytest.mark.trains
def test_budget_run_resumes_with_its_plan(tmp_path, digits_images):
    """Interrupted and resumed (on another clock speed), a budgeted run keeps the stored plan and ends
    with the same weights as an uninterrupted one."""
    full = train_encoder(digits_images, ENC, _budget_cfg(60.0), "cpu", clock=FakeClock(4.0))
    ckpt = tmp_path / "enc.pt"
    train_encoder(digits_images, ENC, _budget_cfg(60.0), "cpu", checkpoint_path=ckpt, clock=FakeClock(4.0),
                  stop_after_steps=4)
    planned = read_checkpoint(ckpt)["total_steps"]
    assert planned == full.train_report["steps"] == 9 and read_checkpoint(ckpt)["steps_done"] == 4
    resumed = train_encoder(digits_images, ENC, _budget_cfg(60.0), "cpu", checkpoint_path=ckpt,
                            clock=FakeClock(0.5))  # a faster clock must not change the plan
    assert resumed.train_report["steps"] == planned
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.trains
def test_timing_leaves_training_unchanged(digits_images):
    """The timed steps restore weights, statistics and RNG: a budget that plans N steps trains exactly
    what a run capped at N steps by epochs trains."""
    budgeted = train_encoder(digits_images, ENC, _budget_cfg(48.0), "cpu", clock=FakeClock(4.0))
    assert budgeted.train_report["steps"] == plan_steps(48.0, 20.0, 4.0) == 6  # 2 epochs of 3 steps
    capped = train_encoder(digits_images, ENC, _budget_cfg(1e9, epochs=2), "cpu", clock=FakeClock(4.0))
    assert capped.train_report["steps"] == 6
    for (k, a), b in zip(budgeted.state_dict().items(), capped.state_dict().values()):
        assert torch.equal(a, b), k


def test_bad_budget_values(digits_images):
    with pytest.raises(ValueError, match="time budget must be positive"):
        train_encoder(digits_images, ENC, _budget_cfg(-5.0), "cpu")
    with pytest.raises(ValueError, match="epochs must be at least 1 without a time budget"):
        train_encoder(digits_images, ENC, TrainConfig(epochs=0), "cpu")


def test_selector_time_budget_in_minutes():
    from selector import Selector

    tc = Selector(time_budget=2).train_config(10_000)
    assert tc.time_budget_s == 120.0 and tc.epochs == 0
    assert Selector(time_budget=2, epochs=7).train_config(10_000).epochs == 7
    assert Selector().train_config(10_000).time_budget_s is None
    with pytest.raises(ValueError, match="positive number of minutes"):
        Selector(time_budget=0)


@pytest.mark.trains
def test_cli_time_budget_summary(tmp_path, digits_pool):
    from selector.cli import main

    out = tmp_path / "enc.pt"
    r = CliRunner().invoke(main, ["train", "-p", str(digits_pool), "-o", str(out), "--batch-size", "16",
                                  "--time-budget", "0.05", "--epochs", "1", "-q", "--device", "cpu", "--workers", "0"])
    assert r.exit_code == 0, r.output
    assert "time budget 0.05 min" in r.output and "images seen" in r.output
    assert read_checkpoint(out)["train"]["time_budget_s"] == pytest.approx(3.0)
    r = CliRunner().invoke(main, ["select", "--help"])
    assert "--time-budget" in r.output
    r = CliRunner().invoke(main, ["train", "-p", str(digits_pool), "-o", str(tmp_path / "x.pt"),
                                  "--time-budget", "0"])
    assert r.exit_code == 2 and "--time-budget" in r.output
