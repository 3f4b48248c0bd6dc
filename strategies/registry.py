"""Name -> strategy class registry. Strategies register themselves with ``@register("name")``."""
from __future__ import annotations

import ast
import inspect
from typing import Any, Callable, Iterable, TypeVar

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


def parse_params(name: str, items: Iterable[str]) -> dict[str, Any]:
    """``["explore=0", "k_nn=10"]`` -> ``{"explore": 0, "k_nn": 10}`` for strategy ``name``.

    Values are Python literals (numbers, None, True/False, quoted strings); anything else is kept as
    a string. Raises ValueError naming the item for a missing ``=`` or a keyword the strategy's
    constructor does not take (and lists the ones it does).
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(sorted(STRATEGIES))}")
    accepted = [p for p in inspect.signature(STRATEGIES[name].__init__).parameters if p != "self"]
    out: dict[str, Any] = {}
    for item in items:
        key, eq, val = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"strategy parameter {item!r}: expected KEY=VALUE")
        if key not in accepted:
            raise ValueError(f"strategy {name!r} has no parameter {key!r}; it takes {', '.join(accepted) or 'none'}")
        try:
            out[key] = ast.literal_eval(val.strip())
        except (ValueError, SyntaxError):
            out[key] = val.strip()
    return out
