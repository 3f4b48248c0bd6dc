"""The command line: ``selector select``, ``train``, ``embed``, ``eval``, ``show``, ``cache``, ``demo-pool``.

One module per command; each parses its options (shared groups of options arrive as one frozen
dataclass each, :mod:`selector.cli.options`), calls the API (:mod:`selector.workflow`,
:class:`selector.Selector`) and prints the summary. Every command runs behind one boundary
(:mod:`selector.cli.errors`) that turns any failure into one ``Error: ...`` line, exit status 1 (the
traceback with ``--debug``). Several processes: :mod:`selector.cli.torchrun`.

The modules import only click and the standard library at the top (numpy, torch and faiss load inside
the commands; option choices load on first use), so ``--help``, ``--version`` and shell completion
stay fast.
"""
from __future__ import annotations

import click

from .cache import cache_group
from .demo import demo_pool_cmd
from .embed import embed_cmd
from .errors import Group
from .eval import eval_cmd
from .select import select_cmd
from .serve import serve_cmd
from .show import show_cmd
from .train import train_cmd


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="selector")
@click.option("--debug", is_flag=True,
              help="Show the traceback of an unexpected error instead of one line (also after the command).")
def main(debug: bool) -> None:
    """Pick which images to label: a contrastive encoder trained on the pool, FAISS clustering and a
    class-balanced, typical and diverse choice.

    \b
    Start with:  selector demo-pool demo_pool && selector select --budget 50 --pool demo_pool
    """


for _command in (select_cmd, train_cmd, embed_cmd, eval_cmd, show_cmd, cache_group, demo_pool_cmd, serve_cmd):
    main.add_command(_command)
