"""File names the project can carry through every reader and writer, and how to show any name safely.

The policy (``docs/robustness.md``): an item id must be valid UTF-8 text without control characters
(Unicode category ``Cc``: C0 such as newline, tab, carriage return and ESC, DEL, and C1). Such ids survive
every format unchanged: one-per-line ids files, CSV, JSON, XML and terminals. A pool file whose name
breaks the rule is skipped when the pool is read, with a warning that shows the name escaped; ids given
through the API are checked by the writers, which refuse them with the id escaped in the message.
"""
from __future__ import annotations

import unicodedata

__all__ = ["display_name", "name_problem"]


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc"


def _is_surrogate(ch: str) -> bool:
    return "\udc80" <= ch <= "\udcff" or "\ud800" <= ch <= "\udfff"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an item id, or None when it can.

    ``name`` is a ``str`` as the OS gives it (``os.fsdecode``): bytes that are not UTF-8 appear as
    lone surrogates (``surrogateescape``)."""
    if any(_is_surrogate(ch) for ch in name):
        return "the file name is not valid UTF-8"
    if any(_is_control(ch) for ch in name):
        return "the file name holds a control character"
    return None


def display_name(name: object) -> str:
    """``name`` with every control character and undecodable byte escaped (``\\x1b``, ``\\n``, ``\\xff``),
    everything else unchanged: safe to print to a terminal or a log, and unambiguous."""
    s = str(name)
    if not any(_is_control(ch) or _is_surrogate(ch) for ch in s):
        return s
    out = []
    for ch in s:
        if "\udc80" <= ch <= "\udcff":  # an undecodable byte, kept by surrogateescape
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif _is_surrogate(ch) or _is_control(ch):
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)
