"""Name -> strategy class registry. Strategies register themselves with ``@register("name")``."""
from __future__ import annotations

from typing import Callable, TypeVar

from .base import Strategy

STRATEGIES: dict[str, type[Strategy]] = {}

T = TypeVar("T", bound=type[Strategy])


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make a strategy findable by ``name`` (also sets ``cls.name``)."""

    def deco(cls: T) -> T:
        if name in STRATEGIES and STRATEGIES[name] is not cls:
            raise ValueError(f"strategy name {name!r} is already registered to {STRATEGIES[name].__name__}")
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return deco


def get_strategy(name: str, **params) -> Strategy:
    """Build the strategy registered under ``name`` with keyword hyperparameters."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(sorted(STRATEGIES))}") from None
    return cls(**params)
