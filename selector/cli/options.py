"""Options shared by several commands, each group reaching its command as one frozen dataclass, and the
output helpers every command uses (logging, progress, the summary).

:class:`OptionGroup` adds a group's click options to a command and hands the command one dataclass
built from their values (the dataclass's fields are the options' parameter names) instead of one
parameter per option. The shared groups: :data:`run_options` (:class:`RunOptions`: device, seed, how
the pool is read, logging), :data:`backbone_options` (:class:`BackboneOptions`), :data:`encoder_options`
(:class:`EncoderOptions`: the backbone and the training recipe), :data:`dist_options`
(:class:`DistOptions`: ``--nproc``), and select's :data:`output_options` (:class:`OutputOptions`). A
command groups its own options the same way.

Imports only click and the standard library (``selector --help`` stays fast).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click

from selector.device import DEVICES

from .types import LazyChoice, LazyHelpOption, names_of, text_of


class OptionGroup:
    """Click options that reach the command as one frozen dataclass ``cls``, as the parameter ``dest``.

    Use as a decorator. ``options`` are ``click.option(...)`` decorators in the order of the help text,
    whose parameter names are exactly the fields of ``cls``."""

    def __init__(self, cls: type, dest: str, *options: Callable):
        self.cls, self.dest, self.options = cls, dest, options
        self.fields = [f.name for f in dataclasses.fields(cls)]

    def __call__(self, f: Callable) -> Callable:
        @functools.wraps(f)
        def command(*args, **kwargs):
            values = {name: kwargs.pop(name) for name in self.fields}
            if self.dest in kwargs:
                raise TypeError(f"{f.__name__}: {self.dest!r} is both a parameter and an option group")
            kwargs[self.dest] = self.cls(**values)
            return f(*args, **kwargs)

        for opt in reversed(self.options):
            command = opt(command)
        return command


# -- logging, progress, the summary -----------------------------------------------------------------

def setup_logging(verbose: int, quiet: bool) -> None:
    """Log to stderr: warnings and errors by default and with --quiet, info with -v, debug with -vv; the
    progress lines (``selector.progress``, shown where stderr is not a terminal) at info unless --quiet."""
    level = (logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO if verbose
             else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr, force=True)
    logging.getLogger("selector.progress").setLevel(logging.WARNING if quiet else logging.INFO)


def progress_bars(quiet: bool) -> bool:
    """Whether to show progress: always unless --quiet. The library picks how
    (:func:`selector.progress.progress`): a bar on a terminal, else a log line every 30 s or tenth of the work."""
    return not quiet


def echo_summary(rows: list[tuple[str, str]], err: bool = False) -> None:
    """Print a run's summary (:func:`selector.summary.summary_text`) to stdout, or stderr with ``err``."""
    from selector.summary import summary_text

    click.echo(summary_text(rows), err=err)


def cache_folder(cache_dir: Path | None) -> Path:
    """``--cache-dir``, else the user cache folder."""
    if cache_dir is not None:
        return cache_dir
    from selector.cache import default_cache_dir

    return default_cache_dir()


# -- device, seed, reading the pool, logging -------------------------------------------------------

@dataclass(frozen=True)
class RunOptions:
    """How a command that reads a pool runs: where (--device), with what seed, how the pool's files
    are decoded, how much it logs."""

    device: str
    seed: int
    on_bad_image: str
    workers: int | None
    decode_timeout: float
    max_pixels: int
    follow_links: bool
    verbose: int
    quiet: bool

    def reading(self):
        """The options of :func:`selector.workflow.read_pool`."""
        from selector.workflow import Reading

        return Reading(on_bad=self.on_bad_image, workers=self.workers, decode_timeout=self.decode_timeout,
                       max_pixels=self.max_pixels, follow_links=self.follow_links)


run_options = OptionGroup(
    RunOptions, "run",
    click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                 help="Where to train and embed: auto uses a CUDA GPU when present."),
    click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
                 help="Seeds training, k-means and the strategy: the same seed gives the same selection."),
    click.option("--on-bad-image", type=click.Choice(["skip", "fail"]), default="skip", show_default=True,
                 help="Unreadable image files: skip them with a warning (counted in the summary) or stop."),
    click.option("--workers", type=click.IntRange(min=0), default=None,
                 help="Processes decoding images [default: from the CPU count]; 0 decodes in this process "
                      "(no --decode-timeout)."),
    click.option("--decode-timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
                 help="Seconds one image may take to decode before it counts as unreadable."),
    click.option("--max-pixels", type=click.IntRange(min=1), default=89_478_485, show_default=True,
                 help="Larger images are refused as unreadable (decompression-bomb guard)."),
    click.option("--follow-links", is_flag=True,
                 help="Also read folders that symbolic links in the pool lead to outside it (/proc, /sys "
                      "and /dev are never read)."),
    click.option("-v", "--verbose", count=True, help="More log output (-vv for debug)."),
    click.option("-q", "--quiet", is_flag=True,
                 help="No progress and no info messages; warnings, errors and the result still show "
                      "(progress is a bar on a terminal, else a log line every 30 s or tenth of the work)."),
)


# -- the encoder ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BackboneOptions:
    """--backbone, --backbone-mode, --weights, --backbone-size: the fields are the Selector's arguments."""

    backbone: str | None
    backbone_mode: str
    weights: Path | None
    backbone_size: int | None

    def selector_kwargs(self, train: bool = False) -> dict[str, Any]:
        """Keyword arguments of :class:`selector.Selector`; ``train``: mode auto fine-tunes a pretrained
        backbone (selector train trains)."""
        mode = "finetune" if train and self.backbone_mode == "auto" else self.backbone_mode
        return {"backbone": self.backbone, "backbone_mode": mode, "weights": self.weights,
                "backbone_size": self.backbone_size}


def _check_backbone(ctx, param, value):
    if value is not None:
        from selector.encoding import check_backbone

        try:
            check_backbone(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return value


BACKBONE_OPTIONS = (
    click.option("--backbone", default=None, metavar="NAME", callback=_check_backbone,
                 cls=LazyHelpOption, more=text_of("selector.backbones", "describe_backbones"),
                 help="Encoder: auto (chosen from the pool's kind; the reason is printed) [default: --arch], "
                      "or one of the registered backbones:"),
    click.option("--backbone-mode", type=click.Choice(["auto", "frozen", "finetune"]), default="auto",
                 show_default=True,
                 help="frozen: a pretrained backbone's features as they are (no training); finetune: "
                      "contrastive training on the pool from its weights; auto: frozen for a pretrained "
                      "backbone (finetune in selector train), trained for those trained on the pool (--arch)."),
    click.option("--weights", type=click.Path(path_type=Path), default=None,
                 help="Weights file of a pretrained backbone [default: the package's (efficientnet-lite0) "
                      "or torchvision's cache (torchvision:NAME)]."),
    click.option("--backbone-size", type=click.IntRange(min=32, max=512), default=None,
                 help="Input side of a pretrained backbone; the pool's images are decoded at it (at most their own "
                      "size) [default: the backbone's native side (224 for EfficientNet-Lite0); 96 for small grayscale "
                      "images under --backbone auto]."),
)

backbone_options = OptionGroup(BackboneOptions, "backbone", *BACKBONE_OPTIONS)


@dataclass(frozen=True)
class EncoderOptions(BackboneOptions):
    """The backbone and how an encoder is trained on the pool (--arch, --loss, --epochs, ...)."""

    image_size: int | None
    epochs: int | None
    loss: str
    arch: str | None
    pixel_view: bool | None
    flip: bool
    autoencoder: float | None
    time_budget: float | None

    def selector_kwargs(self, train: bool = False) -> dict[str, Any]:
        """The backbone's keyword arguments of :class:`selector.Selector` and the training options that
        are not a command's own (``pixel_view`` only for select: train writes the encoder alone)."""
        out = super().selector_kwargs(train)
        out.update(time_budget=self.time_budget, flip=self.flip, autoencoder=self.autoencoder or 0.0)
        if not train:
            out["pixel_view"] = self.pixel_view
        return out


encoder_options = OptionGroup(
    EncoderOptions, "embedding",
    click.option("--image-size", type=click.IntRange(min=8, max=512), default=None,
                 help="Encoder input side in px [default: chosen from the pool: 16, 28, 32 or 64]."),
    click.option("--epochs", type=click.IntRange(min=1), default=None,
                 help="Training epochs [default: about 300,000 images seen, 2 to 30 epochs]."),
    click.option("--loss", type=LazyChoice(names_of("selector.losses", "LOSSES")), default="simclr",
                 show_default=True, help="Contrastive objective for training the encoder on the pool."),
    click.option("--arch", type=LazyChoice(names_of("selector.backbones", "ARCHS", sort=False)), default=None,
                 cls=LazyHelpOption, more=text_of("selector.backbones", "describe_backbones", "trained"),
                 help="Encoder architecture trained on the pool [default: --backbone auto for select; "
                      "resnet-small for train]:"),
    click.option("--pixel-view/--no-pixel-view", default=None,
                 help="Concatenate PCA-50 of the pixels to the encoder's embedding (each part L2-normalised) "
                      "[default: with the automatic backbone, on for small grayscale images, off for photos; off for "
                      "one named by --backbone/--arch/--encoder]."),
    click.option("--flip/--no-flip", default=True, show_default=True,
                 help="Horizontal flips when training on the pool; --no-flip for digits, letters or other "
                      "pools where a mirrored image is another class."),
    click.option("--autoencoder", type=click.FloatRange(min=0), default=None, metavar="WEIGHT",
                 help="With --loss supcon-spread: add a class-conditional autoencoder (a small decoder from the "
                      "embedding and the known class to the 16 px view; Chen et al., ICML 2022) with this "
                      "weight; 1 is the paper's [default: none]."),
    *BACKBONE_OPTIONS,
    click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=None, metavar="MINUTES",
                 help="Train for this many minutes: the first steps are timed and the number of steps is "
                      "planned so the whole learning-rate schedule ends within it (--epochs then caps it). "
                      "The summary says what was done."),
)


# -- the selection's output (selector select) --------------------------------------------------------

@dataclass(frozen=True)
class OutputOptions:
    """Where selector select writes the selection, in what format (with the options of Label Studio
    and CVAT), and the summary's form."""

    out: Path
    fmt: str | None
    class_names: str | None
    no_predictions: bool
    predict_groups: bool
    round_: int | None
    document_root: Path | None
    url_prefix: str | None
    force: bool
    as_json: bool


output_options = OptionGroup(
    OutputOptions, "output",
    click.option("--out", "-o", type=click.Path(path_type=Path, allow_dash=True), default=Path("selection.csv"),
                 show_default=True,
                 help="Output file; the format follows the suffix: .csv, .jsonl, .json (Label Studio), .xml (CVAT), "
                      ".txt (paths). '-' writes the selection to stdout (csv, or --format jsonl/paths) and the "
                      "summary to stderr."),
    click.option("--format", "fmt", type=LazyChoice(names_of("selector.formats", "FORMATS", sort=False)),
                 default=None, help="Output format [default: from the --out suffix]."),
    click.option("--class-names", default=None, metavar="A,B,C",
                 help="Label Studio / CVAT: the classes annotators choose from [default: the classes in the "
                      "--labeled files]."),
    click.option("--no-predictions", is_flag=True, help="Label Studio / CVAT: write no pre-annotations."),
    click.option("--predict-groups", is_flag=True,
                 help="Label Studio / CVAT: pre-select the estimated group (group-N) as the class (adds the group "
                      "names to the classes annotators see)."),
    click.option("--round", "round_", type=click.IntRange(min=1), default=None,
                 help="Label Studio: data.round of the tasks [default: 1 + the highest round in --labeled/--exclude]."),
    click.option("--document-root", type=click.Path(path_type=Path, file_okay=False), default=None,
                 help="Label Studio: its LOCAL_FILES_DOCUMENT_ROOT [default: the pool's parent folder]."),
    click.option("--url-prefix", default=None,
                 help="Label Studio: image URL prefix instead of /data/local-files/?d= (e.g. http://host:8081/ or "
                      "s3://bucket/pool/); 'none' writes absolute file paths. Also used to read --labeled exports."),
    click.option("--force", "-f", is_flag=True, help="Overwrite the output file if it exists."),
    click.option("--json", "as_json", is_flag=True,
                 help="Print the run summary as one JSON object on stdout (nothing else goes to stdout)."),
)


# -- several processes ------------------------------------------------------------------------------

@dataclass(frozen=True)
class DistOptions:
    """--nproc and --dist-timeout (see :func:`selector.cli.torchrun.start_distributed`)."""

    nproc: int | None
    dist_timeout: float | None


dist_options = OptionGroup(
    DistOptions, "dist",
    click.option("--nproc", type=click.IntRange(min=1), default=None, metavar="N",
                 help="Train and embed with N processes of this machine under torchrun (N CPU processes "
                      "with gloo, or N GPUs with NCCL; the batch size is per process). Several machines: "
                      "run torchrun -m selector yourself (docs/distributed.md)."),
    click.option("--dist-timeout", type=click.FloatRange(min=1), default=None, metavar="SECONDS",
                 help="Several processes: how long one waits for the others (joining, exchanging results) "
                      "before the run stops with an error [default: 1800, or $SELECTOR_DIST_TIMEOUT_S]."),
)
