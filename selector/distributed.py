"""Training and embedding on several processes: ``torch.distributed`` as launched by ``torchrun``.

The launcher is PyTorch's own (``torchrun``, ``python -m torch.distributed.run``; :mod:`selector.cli.torchrun`
starts it for one machine): its c10d rendezvous starts the processes on one machine or many (under
Slurm or Kubernetes too) and gives each its rank, the world size and the rendezvous address in the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). :func:`init`
joins the process group from there: NCCL when the processes use CUDA GPUs (one GPU per process,
``cuda:LOCAL_RANK``), gloo on CPUs. Outside torchrun (no ``WORLD_SIZE``, or 1) it returns None and
everything runs in one process.

What a :class:`Dist` gives the pipeline:

* training (:func:`selector.train.train_encoder` with ``dist=``): :meth:`Dist.wrap` puts the encoder in
  DistributedDataParallel with batch normalisation over the *global* batch (``nn.SyncBatchNorm`` on CUDA;
  :class:`GlobalBatchNorm` elsewhere, since PyTorch's SyncBatchNorm runs on GPUs only), and
  :meth:`Dist.gather_views` gathers every rank's projections with
  ``torch.distributed.nn.functional.all_gather``, whose backward sends each rank the gradient of its own
  rows (as SimCLR does at scale). So N processes with batch b compute the loss and the gradients of one
  process with batch N*b (``tests/test_distributed.py`` checks both to 1e-5);
* embedding (:func:`selector.embed.embed_pool` with ``dist=``): each rank embeds its share of the cache
  chunks and writes them itself; rank 0 assembles the result;
* agreement on errors (:meth:`Dist.agree`, :meth:`Dist.on_main`): a failure on one rank (a pool path
  missing on one node, a damaged checkpoint read by rank 0) becomes the same one-line
  :class:`DistributedError` on every rank instead of a hang.

Timeouts: every collective waits at most ``timeout_s`` (:data:`DEFAULT_TIMEOUT_S`, or the environment
variable :data:`TIMEOUT_ENV`, or ``--dist-timeout``); joining the group (the rendezvous of processes not
started by torchrun) too. A rank that dies is seen at once on gloo (its connections close) and by
torchrun, which stops the others; a rank that hangs is seen after the timeout.
"""
from __future__ import annotations

import datetime
import logging
import os
import socket
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as tdist
from torch import nn

log = logging.getLogger(__name__)

#: Seconds any collective (and joining the group) may wait for the other processes: long enough for
#: the slowest node to finish reading a large pool or rank 0 to finish pseudo-labels, short enough that
#: a hung process ends the job within the hour.
DEFAULT_TIMEOUT_S = 1800.0
TIMEOUT_ENV = "SELECTOR_DIST_TIMEOUT_S"


class DistributedError(RuntimeError):
    """A failure of a distributed run, as one line naming the rank, the host or the timeout.

    ``shared`` is True when every rank raises the same error (it was agreed on): then only rank 0 needs
    to report it."""

    def __init__(self, message: str, shared: bool = False):
        super().__init__(message)
        self.shared = shared


def world_from_env(env: dict | None = None) -> int:
    """``WORLD_SIZE`` of the environment (1 when unset). Raises ValueError naming a malformed value."""
    env = os.environ if env is None else env
    raw = env.get("WORLD_SIZE", "1") or "1"
    try:
        world = int(raw)
    except ValueError:
        raise ValueError(f"WORLD_SIZE={raw!r} is not a whole number") from None
    if world < 1:
        raise ValueError(f"WORLD_SIZE={raw!r} must be at least 1")
    return world


def timeout_from_env(env: dict | None = None) -> float:
    """:data:`TIMEOUT_ENV` in seconds, else :data:`DEFAULT_TIMEOUT_S`."""
    env = os.environ if env is None else env
    raw = env.get(TIMEOUT_ENV)
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        t = float(raw)
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if not t > 0:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r} must be positive")
    return t


def _int_env(env: dict, name: str) -> int:
    raw = env.get(name)
    if raw is None:
        raise ValueError(f"{name} is not set: start the processes with torchrun (or set RANK, WORLD_SIZE, "
                         "LOCAL_RANK, MASTER_ADDR, MASTER_PORT)")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None


def one_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    fmt = getattr(e, "format_message", None)  # click exceptions
    text = (fmt() if callable(fmt) else str(e)).strip().splitlines()
    return text[0] if text else type(e).__name__


def init(device: str | torch.device = "auto", timeout_s: float | None = None, env: dict | None = None
         ) -> "Dist | None":
    """Join the process group described by the environment (torchrun's variables); None for one process.

    ``device``: "auto" (a CUDA GPU per process when present, else the CPU), "cpu" or "cuda". With CUDA
    each process takes ``cuda:LOCAL_RANK`` and NCCL; on the CPU, gloo. Joining waits at most
    ``timeout_s`` (default :func:`timeout_from_env`); a rendezvous that does not complete raises a
    one-line :class:`DistributedError` naming the address and the timeout.
    """
    from .device import resolve_device

    env = os.environ if env is None else env
    world = world_from_env(env)
    if world == 1:
        return None
    rank, local_rank = _int_env(env, "RANK"), int(env.get("LOCAL_RANK", "0") or 0)
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside 0..{world - 1} (WORLD_SIZE={world})")
    timeout_s = timeout_from_env(env) if timeout_s is None else float(timeout_s)
    dev = resolve_device(device)
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise DistributedError(f"local rank {local_rank} has no GPU of its own: this node shows {count} CUDA "
                                   f"device{'s' if count != 1 else ''}; start at most {count} processes per node "
                                   "(torchrun --nproc_per_node)")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
    host = socket.gethostname()
    where = f"{env.get('MASTER_ADDR', '?')}:{env.get('MASTER_PORT', '?')}"
    if not tdist.is_initialized():
        try:
            tdist.init_process_group(backend, init_method="env://", rank=rank, world_size=world,
                                     timeout=datetime.timedelta(seconds=timeout_s))
        except Exception as e:  # noqa: BLE001 - store timeouts, refused connections, bad addresses
            raise DistributedError(f"rank {rank} on {host}: rendezvous at {where} failed within {timeout_s:g} s "
                                   f"({one_line(e)[:160]}); are all {world} processes started, and can every "
                                   "node reach that address?") from None
    log.info("rank %d of %d on %s joined (%s, %s)", rank, world, host, backend, dev)
    return Dist(rank=rank, world=world, local_rank=local_rank, device=dev, backend=backend, timeout_s=timeout_s,
                host=host)


@dataclass
class Dist:
    """This process's place in a distributed run (from :func:`init`); every method is a collective
    unless it says otherwise: all ranks call it, in the same order."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    backend: str
    timeout_s: float
    host: str

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes checkpoints and results and prints (not a collective)."""
        return self.rank == 0

    def close(self) -> None:
        """Leave the process group (not a collective; safe to call twice)."""
        if tdist.is_initialized():
            tdist.destroy_process_group()

    # -- objects -------------------------------------------------------------------------------

    def all_gather_object(self, obj: Any) -> list:
        out: list = [None] * self.world
        self._collective(lambda: tdist.all_gather_object(out, obj), "exchanging results")
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """``obj`` of rank ``src`` on every rank (pickled)."""
        box = [obj if self.rank == src else None]
        self._collective(lambda: tdist.broadcast_object_list(box, src=src), "receiving from rank 0")
        return box[0]

    def barrier(self, what: str = "waiting for the other processes") -> None:
        self._collective(tdist.barrier, what)

    def agree(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on every rank and return its result; if it fails on any rank, every rank raises: rank 0
        its own exception when it failed everywhere, else a :class:`DistributedError` whose message names
        the first rank that failed (``"pool /data/x does not exist (rank 3 of 8, on node2)"``); the other
        ranks raise that line as a ``shared`` :class:`DistributedError` (rank 0 reports it)."""
        result, mine, err = None, None, None
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - passed on to every rank, raised again below
            err, mine = e, one_line(e)
        errors = self.all_gather_object((mine, self.host))
        bad = [(r, m, h) for r, (m, h) in enumerate(errors) if m is not None]
        if not bad:
            return result
        r, msg, host = bad[0]
        everywhere = len(bad) == self.world
        if not everywhere:
            msg = f"{msg} (rank {r} of {self.world}, on {host})"
        if not self.main:
            raise DistributedError(msg, shared=True) from err  # rank 0 reports it
        if err is not None and everywhere:
            raise err  # the same failure on every rank: rank 0's own exception
        raise DistributedError(msg) from err

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on rank 0 only and give every rank its result (pickled); if it fails, rank 0 raises
        its exception and the other ranks a :class:`DistributedError` with the same line (``shared``)."""
        box: list = [None, None]
        err = None
        if self.main:
            try:
                box = [fn(), None]
            except Exception as e:  # noqa: BLE001 - passed on to every rank
                err, box = e, [None, one_line(e)]
        box = self.broadcast_object(box)
        if err is not None:
            raise err
        if box[1] is not None:
            raise DistributedError(box[1], shared=True)
        return box[0]

    # -- tensors -------------------------------------------------------------------------------

    def gather_views(self, z: torch.Tensor, labels: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The global batch from every rank's ``z`` = (2b, d), its two views stacked as the training step
        makes them (``cat([view1, view2])``): returns (z1, z2) of (world * b, d) each, rank 0's rows
        first, and the labels gathered the same way. The gather is
        ``torch.distributed.nn.functional.all_gather``: gradients flow back to the rank that computed the
        rows (summed over the ranks' identical losses; DDP's averaging divides that sum back)."""
        from torch.distributed.nn.functional import all_gather

        b = z.shape[0] // 2
        with warnings.catch_warnings():  # torch >= 2.9 marks it deprecated for a private module's function
            warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional", category=FutureWarning)
            parts = all_gather(z)
        z1 = torch.cat([p[:b] for p in parts])
        z2 = torch.cat([p[b:] for p in parts])
        if labels is not None:
            out = [torch.empty_like(labels) for _ in range(self.world)]
            tdist.all_gather(out, labels.contiguous())
            labels = torch.cat(out)
        return z1, z2, labels

    def wrap(self, model: nn.Module) -> tuple[nn.Module, Callable[[], None]]:
        """(DistributedDataParallel of ``model`` with batch normalisation over the global batch, a function
        that puts ``model``'s own batch-norm layers back). Parameters and statistics are shared with
        ``model``, so after the restore it holds what training did; DDP starts every rank from rank 0's
        weights."""
        import inspect

        from torch.nn.parallel import DistributedDataParallel as DDP

        restore = globalize_batchnorm(model, cuda=self.device.type == "cuda")
        try:
            kw = {"device_ids": [self.device.index]} if self.device.type == "cuda" else {}
            # the statistics are the same on every rank (computed over the global batch): no buffer sync
            # per forward (the keyword's name changed in torch 2.10)
            sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP).parameters \
                else "broadcast_buffers"
            kw[sync] = False
            ddp = self._collective(lambda: DDP(model, **kw), "starting DDP")
        except BaseException:
            restore()
            raise
        return ddp, restore

    # -- errors --------------------------------------------------------------------------------

    def lost(self, e: BaseException, what: str = "") -> DistributedError | None:
        """The one-line error for an exception a collective raised because another process died, hung
        past the timeout or closed its connection; None for an exception of another kind."""
        text = one_line(e)
        low = text.lower()
        dist_error = isinstance(e, getattr(tdist, "DistError", ())) or any(
            k in low for k in ("connection closed", "connection reset", "broken pipe", "timed out", "timeout",
                               "nccl", "gloo", "socket", "peer"))
        if not dist_error:
            return None
        timeout = "timed out" in low or "timeout" in low
        why = (f"another process did not answer within {self.timeout_s:g} s" if timeout
               else "another process of the run stopped")
        return DistributedError(f"rank {self.rank} of {self.world} on {self.host}: {why}"
                                f"{' while ' + what if what else ''} ({text[:160]}); rerun the same command to "
                                "resume where it stopped")

    def _collective(self, fn: Callable[[], Any], what: str) -> Any:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001
            err = self.lost(e, what)
            if err is None:
                raise
            raise err from e


# -- batch normalisation over the global batch ---------------------------------------------------


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation whose training statistics span every rank's batch (any device, any backend).

    The sums are reduced with ``torch.distributed.nn.functional.all_reduce`` (differentiable: its
    backward reduces the gradients the same way), so the mean, the variance and their gradients are those
    of one batch holding every rank's rows. Assumes every rank holds the same number of rows (the
    trainer's batches are equal). Outside training, or alone, it is plain batch normalisation. Built by
    :func:`globalize_batchnorm` from an existing layer, sharing its parameters and statistics.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        world = tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1
        if not self.training or world == 1:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = (x.numel() // x.shape[1]) * world
        xf = x.float()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional", category=FutureWarning)
            mean = all_reduce(xf.sum(dims)) / count
            xc = xf - mean.view(shape)
            var = all_reduce((xc * xc).sum(dims)) / count  # two passes: as precise as one process's statistics
        y = xc * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (count / max(1, count - 1)), alpha=m)
        return y.to(x.dtype)


def globalize_batchnorm(model: nn.Module, cuda: bool = False) -> Callable[[], None]:
    """Replace every batch-norm layer of ``model`` by one with global statistics (``nn.SyncBatchNorm``
    when ``cuda``, else :class:`GlobalBatchNorm`), sharing the layer's parameters and running statistics
    (the state dict's names and tensors are unchanged). Returns a function that puts the original layers
    back (not a collective)."""
    swaps: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
                cls = nn.SyncBatchNorm if cuda else GlobalBatchNorm
                new = cls(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
                if child.affine:
                    new.weight, new.bias = child.weight, child.bias
                if child.track_running_stats:
                    new.running_mean, new.running_var = child.running_mean, child.running_var
                    new.num_batches_tracked = child.num_batches_tracked
                new.train(child.training)
                setattr(parent, name, new)
                swaps.append((parent, name, child))

    def restore() -> None:
        for parent, name, child in swaps:
            child.train(getattr(parent, name).training)
            setattr(parent, name, child)

    return restore


def rank_batch(perm: torch.Tensor, step: int, batch: int, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s share of global batch ``step`` of an epoch's permutation: the global batch is
    ``perm[step * world * batch:(step + 1) * world * batch]`` (the batch one process with batch
    ``world * batch`` would take) and each rank takes its ``batch`` consecutive rows, rank 0 first
    (not a collective)."""
    start = (step * world + rank) * batch
    return perm[start:start + batch]


def step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """The RNG seed of one rank's augmentations at one step of a distributed run: a function of (seed,
    epoch, step, rank) only, so a run resumed at any step draws what an uninterrupted one does, without
    saving each rank's generator state (not a collective)."""
    return (((int(seed) * 100_003 + int(epoch)) * 1_000_003 + int(step)) * 1_009 + int(rank)) % (2**63 - 1)
