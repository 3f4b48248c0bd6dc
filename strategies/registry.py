"""Name -> strategy class registry. Strategies register themselves with ``@register("name")``."""
from __future__ import annotations

import ast
import inspect
import typing
from typing import Any, Callable, Iterable, TypeVar

from .base import Strategy, check_declared, check_param

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
    check_params(cls, params)
    return cls(**params)


def check_params(cls: type[Strategy], params: dict[str, Any]) -> None:
    """Check keyword hyperparameters before any work: those the class's :attr:`Strategy.PARAMS` table
    declares by their type and range (and a GPU for ``use_gpu=True``;
    :func:`selector.strategies.base.check_declared`), any other by the constructor's annotation (a
    class registered from outside this package may have no table), so a wrong value is a one-line error,
    not a failure deep inside a selection."""
    check_declared(cls, params)
    rest = {k: v for k, v in params.items() if k not in cls.PARAMS}
    if not rest:
        return
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - unresolvable annotations: leave checking to the constructor
        return
    for key, value in rest.items():
        if key in hints:
            check_param(key, value, hints[key])


def parse_params(name: str, items: Iterable[str]) -> dict[str, Any]:
    """``["explore=0", "k_nn=10"]`` -> ``{"explore": 0, "k_nn": 10}`` for strategy ``name``.

    Values are Python literals (numbers, None, True/False, quoted strings) or nan/inf; anything else is
    kept as a string (and refused by :func:`check_params` where a number is expected). Raises ValueError
    naming the item for a missing ``=`` or a keyword the strategy's constructor does not take (and lists
    the ones it does).
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
            text = val.strip()  # nan, inf: numbers that are not Python literals (refused by check_params)
            out[key] = float(text) if text.lower().lstrip("+-") in ("nan", "inf", "infinity") else text
    return out
