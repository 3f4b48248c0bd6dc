"""``selector serve``: a Label Studio ML backend over a pool. Parses the options, fits the pool
(:func:`selector.integrations.label_studio_backend.fit_pool`), starts the server
(:func:`selector.integrations.label_studio_server.make_server`), prints where it listens and serves until
Ctrl-C. Needs the ``label-studio`` extra (``pip install 'selector[label-studio]'``)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import click

from .errors import Command
from .options import (
    EncoderOptions,
    OptionGroup,
    RunOptions,
    cache_folder,
    echo_summary,
    encoder_options,
    progress_bars,
    run_options,
    setup_logging,
)
from .types import Budget, LazyChoice, names_of


@dataclass(frozen=True)
class ServeOptions:
    """The pool, the next round's size and how it is chosen, where to listen, the Label Studio to talk to."""

    pool: Path
    budget: int
    strategy: str
    params: tuple[str, ...]
    cache_dir: Path | None
    host: str
    port: int
    label_studio_url: str
    api_key: str | None
    document_root: Path | None
    refresh: bool


serve_options = OptionGroup(
    ServeOptions, "serve",
    click.option("--pool", "-p", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
                 help="The folder of images the Label Studio project shows (its local files storage)."),
    click.option("--budget", "-b", type=Budget(), default=50, show_default=True,
                 help="How many tasks the next round offers: they get the highest prediction scores, in "
                      "selector's order."),
    click.option("--strategy", "-s", type=LazyChoice(names_of("selector.strategies", "STRATEGIES")),
                 default="typcover", show_default=True, help="Selection strategy (see selector select)."),
    click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
                 help="A hyperparameter of the strategy, repeatable (see selector select)."),
    click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
                 help="Where encoders and embeddings are cached, keyed by content [default: the user cache "
                      "folder; see 'selector cache info']."),
    click.option("--host", default="127.0.0.1", show_default=True,
                 help="Address to listen on (0.0.0.0: every interface, e.g. for Label Studio in Docker)."),
    click.option("--port", type=click.IntRange(0, 65535), default=9090, show_default=True,
                 help="Port to listen on (0: any free port, printed)."),
    click.option("--label-studio-url", envvar="LABEL_STUDIO_URL", show_envvar=True,
                 default="http://localhost:8080", show_default=True,
                 help="The Label Studio server whose projects connect to this backend."),
    click.option("--api-key", envvar="LABEL_STUDIO_API_KEY", show_envvar=True, default=None,
                 help="A Label Studio personal access token (Account & Settings), or a legacy token where the "
                      "organisation enables them: reads the projects' tasks and refreshes their predictions."),
    click.option("--document-root", envvar="LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", show_envvar=True,
                 type=click.Path(path_type=Path, file_okay=False), default=None,
                 help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT, to map /data/local-files/?d= URLs to the pool "
                      "[default: the pool's parent folder]."),
    click.option("--refresh/--no-refresh", default=True, show_default=True,
                 help="After each new order, have Label Studio retrieve the new predictions (and delete the "
                      "older selector versions), so the Data Manager's scores follow."),
)


@click.command("serve", cls=Command, inputs=("pool",))
@serve_options
@encoder_options
@run_options
def serve_cmd(serve: ServeOptions, embedding: EncoderOptions, run: RunOptions):
    """Serve a pool as a Label Studio ML backend: predictions score tasks in selector's order.

    \b
    Connect it in Label Studio: project Settings > Model > Connect Model, URL http://HOST:PORT.
    Sort the Data Manager by prediction score (descending) and label in that order; each
    annotation, skip or "Start Training" computes the next order without what is labeled,
    skipped or in progress.
    """
    setup_logging(run.verbose, run.quiet)
    if run.verbose < 2:  # the SDK's HTTP client logs every call at info
        logging.getLogger("httpx").setLevel(logging.WARNING)
    if not serve.api_key:
        raise click.UsageError("give --api-key (or set LABEL_STUDIO_API_KEY): a Label Studio personal access token")
    from selector.strategies import get_strategy
    from selector.strategies.registry import parse_params

    try:  # values checked before any slow work
        params = parse_params(serve.strategy, serve.params)
        get_strategy(serve.strategy, **params)
    except (ValueError, TypeError) as e:
        raise click.BadParameter(str(e), param_hint="--param") from None
    from selector.integrations.label_studio_api import LabelStudioAPI, LabelStudioAPIError

    try:
        api = LabelStudioAPI(serve.label_studio_url, serve.api_key)
        user = api.check()
    except LabelStudioAPIError as e:
        raise click.ClickException(str(e)) from None
    from selector import Selector
    from selector.integrations.label_studio_backend import RankingBackend, fit_pool
    from selector.integrations.label_studio_server import make_server

    t0 = time.perf_counter()
    sel = Selector(strategy=serve.strategy, strategy_params=params, seed=run.seed, device=run.device,
                   epochs=embedding.epochs, loss=embedding.loss, arch=embedding.arch,
                   image_size=embedding.image_size, cache_dir=cache_folder(serve.cache_dir), on_bad=run.on_bad_image,
                   progress=progress_bars(run.quiet), **embedding.selector_kwargs())
    rows = fit_pool(sel, serve.pool, run.reading())
    backend = RankingBackend(sel, api, serve.budget, document_root=serve.document_root)
    try:
        server = make_server(backend, api, serve.host, serve.port, refresh=serve.refresh)
    except OSError as e:
        raise click.ClickException(f"cannot listen on {serve.host}:{serve.port}: {e.strerror or e}") from None
    host, port = server.server_address[:2]
    rows += [("label studio", f"{api.url} as {user}"),
             ("round", f"{serve.budget} tasks a round, strategy {serve.strategy}"),
             ("ready in", f"{time.perf_counter() - t0:.1f} s")]
    echo_summary(rows)
    click.echo(f"Listening on http://{host}:{port} (Label Studio: Settings > Model > Connect Model); Ctrl-C stops.")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.")
    finally:
        server.server_close()
