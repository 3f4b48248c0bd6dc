"""Losses register themselves (``@register_loss``); LOSSES, TRAIN_PARAMS and ``--loss`` read the registry."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from selector.losses import LOSSES, TRAIN_PARAMS, NTXent, get_loss, register_loss


def test_a_loss_registered_by_decorator_is_in_losses():
    from selector import Selector
    from selector.cli.types import names_of

    try:
        @register_loss("test-mse", train_params={"temperature": 1.0})
        class Mse(nn.Module):
            needs_labels = False

            def __init__(self, temperature: float = 0.2):
                super().__init__()
                self.temperature = temperature

            def forward(self, z1, z2, labels=None):
                return ((z1 - z2) ** 2).mean() / self.temperature

        assert LOSSES["test-mse"] is Mse and TRAIN_PARAMS["test-mse"] == {"temperature": 1.0}
        loss = get_loss("test-mse", temperature=0.5)
        assert isinstance(loss, Mse) and loss(torch.ones(2, 3), torch.zeros(2, 3)).item() == 2.0
        assert "test-mse" in names_of("selector.losses", "LOSSES")()  # the --loss choices
        assert Selector(loss="test-mse").train_config(100).loss_params == {"temperature": 1.0}
        with pytest.raises(ValueError, match="already registered to Mse"):
            register_loss("test-mse")(NTXent)
    finally:
        LOSSES.pop("test-mse", None)
        TRAIN_PARAMS.pop("test-mse", None)
    assert "test-mse" not in LOSSES


def test_train_params_come_from_the_registrations():
    assert TRAIN_PARAMS == {"supcon-spread": {"temperature": 0.5, "alpha": 0.5}}
