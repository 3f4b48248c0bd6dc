"""Click parameter types of the command line: :class:`Budget`, and choices and help texts that load on
first use (:class:`LazyChoice`, :class:`LazyHelpOption`), so that ``selector --help``, ``--version``
and shell completion of commands and options import neither torch nor faiss."""
from __future__ import annotations

import importlib
from typing import Callable, Iterable

import click


class LazyChoice(click.Choice):
    """A :class:`click.Choice` whose choices come from ``load()`` the first time they are needed
    (parsing a value, showing a command's help, completing a value)."""

    def __init__(self, load: Callable[[], Iterable[str]], case_sensitive: bool = True):
        self._load = load
        self._choices: tuple[str, ...] | None = None
        self.case_sensitive = case_sensitive

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        if self._choices is None:
            self._choices = tuple(self._load())
        return self._choices

    @choices.setter
    def choices(self, value: Iterable[str]) -> None:
        self._choices = tuple(value)

    def convert(self, value, param, ctx):
        if ctx is not None and ctx.resilient_parsing:  # shell completion: defaults pass unchecked, unloaded
            return value
        return super().convert(value, param, ctx)


def names_of(module: str, attr: str, sort: bool = True) -> Callable[[], list[str]]:
    """A loader for :class:`LazyChoice`: the keys (or items) of ``module.attr``, sorted unless told."""

    def load() -> list[str]:
        names = list(getattr(importlib.import_module(module), attr))
        return sorted(names) if sort else names

    return load


class LazyHelpOption(click.Option):
    """A :class:`click.Option` whose help text ends with ``more()``, loaded only when the help is shown
    (``--help``), not when the option is parsed or completed: e.g. the entries of a registry.
    Use as ``click.option(..., cls=LazyHelpOption, more=loader)``."""

    def __init__(self, *args, more: Callable[[], str], **kwargs):
        super().__init__(*args, **kwargs)
        self._more = more

    def get_help_record(self, ctx):
        static = self.help
        self.help = f"{static or ''} {self._more()}".strip()
        try:
            return super().get_help_record(ctx)
        finally:
            self.help = static


def text_of(module: str, func: str, *args) -> Callable[[], str]:
    """A loader for :class:`LazyHelpOption`: ``module.func(*args)``, imported on first use."""

    def load() -> str:
        return getattr(importlib.import_module(module), func)(*args)

    return load


class Budget(click.ParamType):
    """A positive whole number, with a clear message for anything else."""

    name = "N"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            n = value
        else:
            try:
                n = int(str(value).strip())
            except ValueError:
                self.fail(f"budget must be a whole number, got {value!r}", param, ctx)
        if n <= 0:
            self.fail(f"budget must be positive, got {n}", param, ctx)
        return n
