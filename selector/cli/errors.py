"""The one boundary between a command and its user: every failure ends as one ``Error: ...`` line.

Every command and group of the command line is a :class:`Command` or :class:`Group`, whose
``invoke`` runs inside :func:`boundary`:

* click's own exceptions pass as they are: usage errors (exit status 2), the ``click.ClickException``
  a command raises (exit status 1), ``ctx.exit``;
* the errors the pipeline raises for bad input (:func:`known_errors`: PoolError, CheckpointError,
  SelectionError, ..., ValueError, OSError) become the first line of their message (an OSError with a
  file name: the file and the reason), exit status 1;
* any other exception (an input nobody foresaw, or a defect: TypeError, KeyError, RecursionError,
  MemoryError, Pillow's DecompressionBombError, ...) becomes ``Error: <what failed>: <type>: <first
  line of the message> (run with --debug for the traceback)``, exit status 1. What failed is the
  input the pipeline was working on (:func:`selector.workflow.step`: ``pool /data/x``, ``labels file
  a.json``), else the command with its input options (``selector select --pool /data/x``).

``--debug`` (``selector --debug CMD ...``, or anywhere after the command) lets every exception but
click's own through with its traceback. KeyboardInterrupt is not an ``Exception``: click turns it into
``Aborted!`` as it always did.

Imports only click and the standard library.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import click

#: The hint that ends the line of an unexpected exception.
DEBUG_HINT = "(run with --debug for the traceback)"


def known_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that report bad input with a message written for the user."""
    from selector.backbones.weights import PretrainedError
    from selector.checkpoint import CheckpointError
    from selector.distributed import DistributedError
    from selector.formats import ExportError, LabelFileError
    from selector.pool import PoolError
    from selector.strategies import SelectionError

    return (PoolError, CheckpointError, SelectionError, LabelFileError, ExportError, DistributedError,
            PretrainedError, ValueError, OSError)


def one_line(e: BaseException) -> str:
    """The line of a known error: an OSError's file and reason, else the first line of the message
    (the type's name when there is none)."""
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror or e}"
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def subject(ctx: click.Context) -> str:
    """The command and the options (or arguments) that name its input, as given: ``selector select
    --pool /data/x`` (``selector`` however the program was started)."""
    names = []
    c: click.Context | None = ctx
    while c is not None and c.parent is not None:
        names.insert(0, c.info_name or "")
        c = c.parent
    parts = ["selector", *names]
    inputs = getattr(ctx.command, "inputs", ())
    for param in ctx.command.params:
        value = ctx.params.get(param.name) if param.name in inputs else None
        if value is None or value == ():
            continue
        values = value if isinstance(value, tuple) else (value,)
        if isinstance(param, click.Argument):
            parts += [str(v) for v in values]
        else:
            opt = next((o for o in param.opts if o.startswith("--")), param.opts[0])
            parts += [f"{opt} {v}" for v in values]
    return " ".join(parts)


def unexpected_line(e: BaseException, what: str) -> str:
    """The line of an unexpected exception: what failed, the type and the first line of the message."""
    text = str(e).strip().splitlines()
    kind = type(e).__name__
    return f"{what}: {kind}: {text[0]} {DEBUG_HINT}" if text else f"{what}: {kind} {DEBUG_HINT}"


def message(e: BaseException, ctx: click.Context) -> str:
    """The one line that reports ``e`` (any exception) raised in the command of ``ctx``."""
    if isinstance(e, click.ClickException):
        return e.format_message()
    if isinstance(e, known_errors()):
        return one_line(e)
    from selector.workflow import failed_step

    return unexpected_line(e, failed_step(e) or subject(ctx))


def debug(ctx: click.Context) -> bool:
    """Whether ``--debug`` was given to this command or any command above it."""
    c: click.Context | None = ctx
    while c is not None:
        if c.params.get("debug"):
            return True
        c = c.parent
    return False


@contextlib.contextmanager
def boundary(ctx: click.Context) -> Iterator[None]:
    """Turn any exception of the block into a ``click.ClickException`` holding its one line (see the
    module's docstring); with ``--debug``, let it through."""
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise
    except Exception as e:
        if debug(ctx) or getattr(e, "selector_traceback", False):
            with contextlib.suppress(AttributeError, TypeError):  # the boundaries above let it through too
                e.selector_traceback = True
            raise
        raise click.ClickException(message(e, ctx)) from e


class Command(click.Command):
    """A command behind :func:`boundary`. ``inputs``: the names of the parameters that name its input
    (shown in the line of an unexpected exception). Takes a hidden ``--debug`` anywhere after the
    command's name."""

    def __init__(self, *args, inputs: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.inputs = tuple(inputs)
        self.params.append(click.Option(["--debug"], is_flag=True, hidden=True,
                                        help="Show the traceback of an unexpected error."))

    def invoke(self, ctx: click.Context):
        with boundary(ctx):
            if self.callback is not None:
                kwargs = {k: v for k, v in ctx.params.items() if k != "debug"}
                return ctx.invoke(self.callback, **kwargs)
        return None


class Group(click.Group):
    """A group behind :func:`boundary` (which also covers parsing its commands' options); its commands
    and subgroups are :class:`Command` and :class:`Group` too."""

    command_class = Command
    group_class = type  # subgroups: this class

    def invoke(self, ctx: click.Context):
        with boundary(ctx):
            return super().invoke(ctx)
