"""Name -> loss class registry. Losses register themselves with ``@register_loss("name")``."""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from torch import nn

LOSSES: dict[str, type[nn.Module]] = {}

#: Hyperparameters a loss trains with where they differ from ``TrainConfig.loss_params``'s default
#: (temperature 0.2), given at registration (``train_params=``).
TRAIN_PARAMS: dict[str, dict[str, Any]] = {}

T = TypeVar("T", bound=type[nn.Module])


def register_loss(name: str, train_params: dict[str, Any] | None = None) -> Callable[[T], T]:
    """Class decorator: make a loss findable by ``name`` (``--loss``, :func:`get_loss`); ``train_params``:
    the hyperparameters the training loop gives it instead of ``TrainConfig.loss_params``'s default."""

    def deco(cls: T) -> T:
        if name in LOSSES and LOSSES[name] is not cls:
            raise ValueError(f"loss name {name!r} is already registered to {LOSSES[name].__name__}")
        LOSSES[name] = cls
        if train_params is not None:
            TRAIN_PARAMS[name] = dict(train_params)
        return cls

    return deco


def get_loss(name: str, **params) -> nn.Module:
    """Build the loss registered under ``name`` with keyword hyperparameters (e.g. ``temperature=0.5``)."""
    try:
        cls = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(sorted(LOSSES))}") from None
    return cls(**params)
