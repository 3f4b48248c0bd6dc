"""Name -> writer and suffix -> reader registries. Each format module registers its own writers
(``@register_writer("csv", ".csv")``) and readers (``@register_reader(".csv", ".tsv")``) when imported;
:mod:`selector.formats` imports them all.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

#: ``(selection, paths, out_path, root=None, strategy=None, force=True, **options) -> [files written]``.
Writer = Callable[..., list[Path]]
#: ``(path, root=None, **options) -> {pool-relative path: label or None}``.
Reader = Callable[..., dict[str, str | None]]
#: ``(out_path, **options) -> [side files]``: the companion files a writer may write beside ``out_path``.
SideFiles = Callable[..., list[Path]]

#: Format name -> writer ``(selection, paths, out_path, root=None, strategy=None, **kw) -> [files]``.
FORMATS: dict[str, Writer] = {}
#: Output suffix -> format name, used when ``fmt`` is not given.
SUFFIX_FORMATS: dict[str, str] = {}
#: Other spellings of a format name (``"ls"`` -> ``"label-studio"``).
FORMAT_ALIASES: dict[str, str] = {}
#: Format name -> the side files it writes (formats without companions have none).
SIDE_FILES: dict[str, SideFiles] = {}
#: Labels file suffix -> reader.
READERS: dict[str, Reader] = {}


def register_writer(name: str, suffix: str | None = None, aliases: Sequence[str] = (),
                    side_files: SideFiles | None = None) -> Callable[[Writer], Writer]:
    """Decorator: make a writer the format ``name``, chosen by ``suffix`` when no format is named."""

    def deco(writer: Writer) -> Writer:
        if name in FORMATS and FORMATS[name] is not writer:
            raise ValueError(f"export format {name!r} is already registered to {FORMATS[name].__name__}")
        FORMATS[name] = writer
        if suffix is not None:
            SUFFIX_FORMATS[suffix] = name
        for a in aliases:
            FORMAT_ALIASES[a] = name
        if side_files is not None:
            SIDE_FILES[name] = side_files
        return writer

    return deco


def register_reader(*suffixes: str) -> Callable[[Reader], Reader]:
    """Decorator: read labels files with these suffixes (lower case, with the dot) with this reader."""

    def deco(reader: Reader) -> Reader:
        for s in suffixes:
            if s in READERS and READERS[s] is not reader:
                raise ValueError(f"labels suffix {s!r} is already read by {READERS[s].__name__}")
            READERS[s] = reader
        return reader

    return deco

