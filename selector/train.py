"""Contrastive training of an encoder on the pool itself, with checkpoints and exact resume.

The loop: each epoch draws a seeded permutation of the pool, each batch is moved to the device as
uint8, augmented twice there (per-sample random views, :mod:`selector.augment`), encoded, and the
chosen loss (:mod:`selector.losses`) is minimised with AdamW or SGD under a cosine schedule with warm-up.
On CUDA it uses bf16 autocast and channels-last, and ``torch.compile`` on request.

Checkpoints (:mod:`selector.checkpoint`) are written atomically at the end of every epoch and every
``checkpoint_every_s`` seconds inside an epoch, holding the weights, optimizer, schedule, step and the RNG
state. Training again with
the same checkpoint path resumes where it stopped; since batches and augmentations are drawn from
seeded generators whose state is saved, a resumed run ends with the same weights as an uninterrupted
one (bit for bit on the CPU with the same thread count).

Losses that need labels (KCL, SupCon with spread) get the user's labels where known (-1 elsewhere);
unknown labels are replaced by k-means pseudo-labels of the current embedding, refreshed every
``pseudo_label_every`` epochs (the first epochs, before a refresh, train as SimCLR for those items).
With ``autoencoder`` > 0 (supcon-spread only), a class-conditional decoder (:mod:`selector.losses.autoencoder`,
one slot per known class; unknown and pseudo-labeled items share an "unknown" slot) trains with the encoder:
its reconstruction error of each view, times that weight, is added to the loss; the checkpoint holds its
weights (``decoder``) beside the encoder's, and its optimizer state in the optimizer's.

Several processes (``dist``, a :class:`selector.distributed.Dist` under torchrun): the encoder is
trained with DistributedDataParallel; each rank takes its share of every global batch of the epoch's
seeded permutation (the batch one process with ``world x batch_size`` would take), the loss sees the
global batch (projections gathered from every rank, batch normalisation over the global batch), so the
loss and gradients are those of one process with the global batch. Each rank's augmentations are drawn
from a seed of (seed, epoch, step, rank) (:func:`selector.distributed.step_seed`), so a run resumed at
any step repeats what an uninterrupted one does with the same number of processes. Rank 0 alone writes
the checkpoints (atomically) and reads them on resume, passing them to the other ranks.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .augment import make_augment, to_float
from .backbones import Encoder, EncoderConfig
from .checkpoint import (
    CheckpointError,
    checkpoint_finished,
    checkpoint_report,
    read_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .progress import progress as progress_bar

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Hyperparameters of contrastive training (stored in the checkpoint)."""

    loss: str = "simclr"
    epochs: int = 20
    batch_size: int = 256
    optimizer: str = "adamw"  # "adamw" or "sgd"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_frac: float = 0.05
    loss_params: dict[str, Any] = field(default_factory=lambda: {"temperature": 0.2})
    pseudo_label_every: int = 5
    n_pseudo_labels: int = 0  # 0: estimated from the embedding
    seed: int = 0
    time_budget_s: float | None = None  # plan the steps to end within this many seconds; epochs is then a cap (0: none)
    flip: bool = True  # horizontal flips in the views (off for digits and text: --no-flip)
    crop_scale: float | None = None  # smallest random-crop scale; None: the augmentation's default
    autoencoder: float = 0.0  # weight of the class-conditional autoencoder term (supcon-spread; 0: none)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["autoencoder"]:  # left out when unused, so the key of an encoder without it does not change
            del d["autoencoder"]
        return d


def auto_epochs(n: int) -> int:
    """Default epoch count: about 300,000 images seen in all, between 2 and 30 epochs.

    30 epochs on a 10,000-image pool. The training times of the CPU encoder (resnet-small, 32 px) on
    2,000-image pools are the ``fit s`` column of ``benchmarks/results/recipe/summary.md``.
    """
    return int(min(30, max(2, round(300_000 / max(n, 1)))))


def _cosine_lambda(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        p = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, p)))

    return f


def _make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay,
                               nesterov=True)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; use adamw or sgd")


def train_encoder(
    images: np.ndarray,
    encoder_config: EncoderConfig,
    train_config: TrainConfig,
    device: torch.device | str = "cpu",
    *,
    checkpoint_path: str | os.PathLike | None = None,
    labels: np.ndarray | None = None,
    progress: bool = False,
    checkpoint_every_s: float = 120.0,
    compile: bool = False,
    stop_after_steps: int | None = None,
    weights: str | os.PathLike | None = None,
    clock=time.monotonic,
    dist=None,
) -> Encoder:
    """Train an encoder on ``images`` (n, C, S, S) uint8 with a contrastive loss.

    Args:
        labels: (n,) int64 known labels, -1 for unknown; used by losses that need labels.
        checkpoint_path: where to write checkpoints; an existing one is resumed (an error if it was
            written with another architecture or training configuration).
        stop_after_steps: stop (after checkpointing) once this many optimizer steps ran in this call;
            for tests of resume.
        weights: weights file of a pretrained backbone (default: its spec's, :mod:`selector.backbones`);
            fine-tuning starts from it.
        clock: seconds, monotonic (read once per step); injectable so a test can run a time budget on a
            fake clock.
        dist: a :class:`selector.distributed.Dist` to train on every process of a torchrun job (every
            rank calls this with the same arguments; ``batch_size`` is then per process and ``device`` is
            the rank's own, ``dist.device``); None: this process alone.

    With ``train_config.time_budget_s`` the first steps are timed and the number of steps is planned
    (:func:`plan_steps`) so the full cosine schedule, warm-up included, ends within the budget;
    ``train_config.epochs`` is then a cap (0: none). The plan is stored in the checkpoint, so a resumed
    run keeps it. The returned encoder's ``train_report`` says what was done (steps, epochs, images
    seen, seconds; the batch is the global one).
    Returns the encoder in eval mode, on ``device``.
    """
    from .device import resolve_device
    from .losses import get_loss

    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    main = rank == 0
    device = dist.device if dist is not None else resolve_device(device)
    n = int(images.shape[0])
    cfg = train_config
    if n < 2:
        raise ValueError(f"need at least 2 images to train, got {n}")
    if n < world:
        raise ValueError(f"need at least one image per process to train, got {n} images for {world} processes")
    bs = int(min(cfg.batch_size, n // world))  # per process
    gbs = bs * world  # the global batch, which the loss sees
    steps_per_epoch = max(1, n // gbs)  # drop the last partial batch: equal-sized contrastive batches
    if encoder_config.mode == "frozen":
        raise ValueError("a frozen encoder is not trained; use its features directly (backbone mode frozen)")
    if cfg.epochs < 1 and cfg.time_budget_s is None:
        raise ValueError(f"epochs must be at least 1 without a time budget, got {cfg.epochs}")
    if cfg.time_budget_s is not None and cfg.time_budget_s <= 0:
        raise ValueError(f"time budget must be positive, got {cfg.time_budget_s} s")
    max_steps = cfg.epochs * steps_per_epoch if cfg.epochs > 0 else None  # with a time budget: a cap, if any

    torch.manual_seed(cfg.seed)
    model = Encoder(encoder_config, weights=weights).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    loss_fn = get_loss(cfg.loss, **cfg.loss_params)
    needs_labels = bool(getattr(loss_fn, "needs_labels", False))
    aug = make_augment(encoder_config.in_channels, encoder_config.image_size, flip=cfg.flip,
                       crop_scale=cfg.crop_scale).to(device)
    images_t = torch.from_numpy(np.ascontiguousarray(images))
    known = None if labels is None else torch.as_tensor(np.asarray(labels, dtype=np.int64))
    decoder = _make_decoder(cfg, model, known, device, dist)

    start_epoch, start_step, elapsed, pseudo = 0, 0, 0.0, None
    total_steps = max_steps

    def read_resume():
        if checkpoint_path is None or not Path(checkpoint_path).exists():
            return None
        st = read_checkpoint(checkpoint_path, map_location="cpu")  # RNG states must stay on the CPU
        if st["config"] != encoder_config.to_dict() or st["train"] != cfg.to_dict():
            raise CheckpointError(f"checkpoint {checkpoint_path} was written for another encoder or training "
                                  "configuration; remove it or choose another path")
        written = int(st.get("world_size", 1))
        if written != world:
            raise CheckpointError(f"checkpoint {checkpoint_path} was written by {written} process"
                                  f"{'es' if written != 1 else ''}, this run has {world}; resume it with "
                                  f"{written} (torchrun --nproc_per_node/--nnodes) or remove it")
        return st

    # rank 0 reads the checkpoint and passes it on: no file system shared by the nodes is needed
    state = read_resume() if dist is None else dist.on_main(read_resume)
    if state is not None:
        model.load_state_dict(state["state_dict"])
        if decoder is not None:
            _load_decoder(decoder, state, checkpoint_path)
        start_epoch, start_step = state["epochs_done"], state["step_in_epoch"]
        elapsed = state.get("elapsed_s", 0.0)
        total_steps = state.get("total_steps", total_steps)  # a time budget's plan is kept across resumes
        log.info("resuming training from %s at epoch %d step %d", checkpoint_path, start_epoch, start_step)
        if checkpoint_finished(state):
            model.train_report = checkpoint_report(state, gbs, elapsed, cfg.time_budget_s)
            return model.eval()

    restore = None
    fwd: torch.nn.Module = model
    if dist is not None:  # DDP, batch norm over the global batch; every rank starts from rank 0's weights
        fwd, restore = dist.wrap(model)
    train_step = _make_step(fwd, loss_fn, aug, device, compile, dist, decoder, cfg.autoencoder)
    try:
        model = _train_loop(
            model, train_step, images_t, known, cfg, device, dist, rank, world, main, bs, gbs, steps_per_epoch,
            max_steps, total_steps, state, start_epoch, start_step, elapsed, pseudo, needs_labels,
            checkpoint_path, progress, checkpoint_every_s, stop_after_steps, clock, decoder)
    except RuntimeError as e:
        lost = dist.lost(e, "training") if dist is not None else None
        if lost is None:
            raise
        raise lost from e
    finally:
        if restore is not None:
            restore()
    return model.eval()


def _train_loop(model, train_step, images_t, known, cfg, device, dist, rank, world, main, bs, gbs, steps_per_epoch,
                max_steps, total_steps, state, start_epoch, start_step, elapsed, pseudo, needs_labels,
                checkpoint_path, progress, checkpoint_every_s, stop_after_steps, clock, decoder=None):
    """The steps of :func:`train_encoder` (see there), from a possibly resumed state."""
    from .distributed import rank_batch, step_seed

    n = int(images_t.shape[0])
    t0 = clock() - elapsed
    if total_steps is None or (cfg.time_budget_s is not None and state is None):
        # Time budget: time a few steps (forward, backward; weights, statistics and RNG restored after),
        # then plan the number of steps so the whole cosine schedule ends within the budget.
        step_s = _time_steps(model, train_step, images_t, known, pseudo, needs_labels, bs, device, clock, cfg,
                             rank=rank, world=world)
        planned = plan_steps(cfg.time_budget_s, clock() - t0, step_s)
        if dist is not None:  # rank 0's plan for every rank: they must run the same number of steps
            planned = dist.broadcast_object(planned)
        total_steps = planned if max_steps is None else min(planned, max_steps)
        log.info("time budget %.0f s: %.3f s per step, %d steps planned (%.1f epochs)", cfg.time_budget_s, step_s,
                 total_steps, total_steps / steps_per_epoch)
    n_epochs = -(-total_steps // steps_per_epoch)

    opt = _make_optimizer(model if decoder is None else torch.nn.ModuleList([model, decoder]), cfg)
    warmup = max(1, int(cfg.warmup_frac * total_steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _cosine_lambda(total_steps, warmup))
    if state is not None and "optimizer" in state:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"], device)  # used when resuming inside an epoch (one process)
        if state.get("pseudo") is not None:
            pseudo = state["pseudo"].cpu().numpy()

    bar = progress_bar(total_steps, f"training ({cfg.loss})", "step", enabled=progress and main,
                       initial=start_epoch * steps_per_epoch + start_step)
    steps_run = 0
    now = clock()
    last_ckpt = now

    def ckpt(done: int) -> None:
        if checkpoint_path is not None and main:  # rank 0 alone: every rank holds the same weights
            epoch, step = divmod(done, steps_per_epoch)
            save_checkpoint(checkpoint_path, model, cfg, epoch=epoch, step=step, optimizer=opt, scheduler=sched,
                            rng_state=rng_state(device), pseudo=pseudo, elapsed=now - t0,
                            total_steps=total_steps, steps_done=done, steps_per_epoch=steps_per_epoch,
                            world_size=world, decoder=decoder)

    done = start_epoch * steps_per_epoch + start_step
    for epoch in range(start_epoch, n_epochs):
        model.train()
        if not (epoch == start_epoch and start_step > 0):
            # An epoch that starts from step 0 re-seeds: its draws depend on (seed, epoch) only, so a
            # run resumed at an epoch boundary repeats exactly what an uninterrupted run does.
            if needs_labels and cfg.pseudo_label_every > 0 and epoch > 0 and epoch % cfg.pseudo_label_every == 0:
                if dist is None:
                    pseudo = _pseudo_labels(model, images_t, device, cfg, known)
                else:  # rank 0's k-means for every rank: the gathered labels must agree
                    pseudo = dist.on_main(lambda: _pseudo_labels(model, images_t, device, cfg, known))
                    model.train()
            torch.manual_seed(cfg.seed * 100_003 + epoch)
            if device.type == "cuda":
                torch.cuda.manual_seed(cfg.seed * 100_003 + epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 7_919 + epoch))
        for step in range(start_step if epoch == start_epoch else 0, steps_per_epoch):
            if done >= total_steps:
                break
            if dist is not None:
                torch.manual_seed(step_seed(cfg.seed, epoch, step, rank))  # resumable at any step, per rank
            idx = rank_batch(perm, step, bs, rank, world)
            batch = images_t[idx].to(device, non_blocking=True)
            lab = None
            if needs_labels:
                lab_np = _batch_labels(idx.numpy(), known, pseudo)
                lab = torch.from_numpy(lab_np).to(device)
            # every rank draws the loss's own randomness (KCL's positives) alike: one seed per step for all
            loss = train_step(batch, lab, None if dist is None else step_seed(cfg.seed, epoch, step, world))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            steps_run += 1
            done += 1
            now = clock()  # the one clock reading per step
            if bar is not None:
                bar.update(1)
                rate = steps_run * gbs / max(1e-9, now - t0 - elapsed)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", img_s=f"{rate:.0f}")
            if stop_after_steps is not None and steps_run >= stop_after_steps:
                ckpt(done)
                if bar is not None:
                    bar.close()
                return model
            if checkpoint_path is not None and now - last_ckpt > checkpoint_every_s and done < total_steps:
                ckpt(done)
                last_ckpt = now
        start_step = 0
        ckpt(done)
        last_ckpt = now
    if bar is not None:
        bar.close()
    model.train_report = {"steps": int(done), "batch_size": gbs, "epochs": done / steps_per_epoch,
                          "images_seen": int(done) * gbs, "seconds": float(now - t0),
                          "time_budget_s": cfg.time_budget_s, "processes": world}
    log.info("trained %s for %.1f epochs (%d steps of %d) in %.1f s", cfg.loss, done / steps_per_epoch, done, gbs,
             now - t0)
    return model


def plan_steps(budget_s: float, spent_s: float, step_s: float, margin: float = 0.05) -> int:
    """Optimizer steps that fit in what is left of a time budget: ``(budget (1 - margin) - spent) / step``,
    at least 1. ``margin`` covers what a step time does not (checkpoints at epoch ends, pseudo-labels)."""
    if budget_s <= 0 or step_s <= 0:
        raise ValueError(f"budget and step time must be positive, got {budget_s} s and {step_s} s")
    return max(1, int((budget_s * (1.0 - margin) - spent_s) // step_s))


TIMING_STEPS = 3  # steps timed before a time budget is planned; the first (warm-up) is not counted


def _time_steps(model: Encoder, train_step, images_t: torch.Tensor, known, pseudo, needs_labels: bool, bs: int,
                device: torch.device, clock, cfg: TrainConfig, rank: int = 0, world: int = 1) -> float:
    """Seconds per training step (forward and backward of a batch of two views), measured on the first
    batches; the model's weights and statistics and the RNG are restored, so training is unchanged.
    With several processes every rank times its share of the first global batch (the steps are
    collectives)."""
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rng = rng_state(device)
    model.train()
    perm = torch.randperm(images_t.shape[0], generator=torch.Generator().manual_seed(cfg.seed * 7_919))
    reads = [clock()]
    for _ in range(TIMING_STEPS):
        idx = perm[rank * bs:(rank + 1) * bs]
        lab = torch.from_numpy(_batch_labels(idx.numpy(), known, pseudo)).to(device) if needs_labels else None
        loss = train_step(images_t[idx].to(device), lab)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        reads.append(clock())
    model.load_state_dict(saved)
    set_rng_state(rng, device)
    steps = np.diff(reads)[1:] if TIMING_STEPS > 1 else np.diff(reads)
    return float(max(np.mean(steps), 1e-6))


def _make_decoder(cfg: TrainConfig, model: Encoder, known: torch.Tensor | None, device: torch.device, dist=None):
    """The class-conditional decoder of ``cfg.autoencoder`` (None without it): one slot per known class
    (labels 0..max), the target side ``min(16, image side)`` (:mod:`selector.losses.autoencoder`)."""
    if not cfg.autoencoder:
        return None
    from .losses.autoencoder import TARGET_SIZE, ClassConditionalDecoder, check_weight

    check_weight(cfg.autoencoder)
    if cfg.loss != "supcon-spread":
        raise ValueError(f"the class-conditional autoencoder is a term of supcon-spread, not of {cfg.loss}")
    if dist is not None and dist.world > 1:  # its decoder is not wrapped for DDP: the ranks' copies would drift
        raise ValueError("the class-conditional autoencoder trains on one process; not with several (torchrun) yet")
    n_classes = int(known.max()) + 1 if known is not None and bool((known >= 0).any()) else 0
    ec = model.config
    return ClassConditionalDecoder(model.dim, ec.in_channels, min(TARGET_SIZE, ec.image_size), n_classes).to(device)


def _load_decoder(decoder, state: dict, path) -> None:
    saved = state.get("decoder")
    if saved is None or saved["config"] != decoder.config():
        raise CheckpointError(f"checkpoint {path} holds no decoder for these labels ({decoder.config()}); remove it "
                              "or choose another path")
    decoder.load_state_dict(saved["state_dict"])


def _make_step(model: torch.nn.Module, loss_fn, aug, device: torch.device, compile: bool, dist=None, decoder=None,
               ae_weight: float = 0.0):
    fwd = torch.compile(model) if compile else model

    def step(batch_u8: torch.Tensor, labels: torch.Tensor | None, loss_seed: int | None = None) -> torch.Tensor:
        x = to_float(batch_u8)
        with torch.no_grad():
            v1, v2 = aug(x), aug(x)
        return views_loss(fwd, loss_fn, v1, v2, labels, dist, loss_seed, decoder=decoder, ae_weight=ae_weight)

    return step


def views_loss(fwd: torch.nn.Module, loss_fn, v1: torch.Tensor, v2: torch.Tensor, labels: torch.Tensor | None = None,
               dist=None, loss_seed: int | None = None, decoder=None, ae_weight: float = 0.0) -> torch.Tensor:
    """The contrastive loss of one batch of two views (B, C, S, S) each: both views encoded in one pass
    (bf16 autocast and channels-last on CUDA), then ``loss_fn(z1, z2, labels)``. With ``dist`` the views
    are this rank's share and the loss is that of the global batch: the projections (and labels) of every
    rank are gathered first (:meth:`selector.distributed.Dist.gather_views`), so every rank computes the
    same value, the one a single process computes on the concatenated batch. ``loss_seed``: the loss's
    own random draws (KCL's positives) come from a generator seeded with it, the global RNG left as it
    was; the trainer gives every rank the same seed, so the ranks draw the same positives."""
    cuda = v1.device.type == "cuda"
    if cuda:
        v1 = v1.contiguous(memory_format=torch.channels_last)
        v2 = v2.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type=v1.device.type, dtype=torch.bfloat16, enabled=cuda):
        v = torch.cat([v1, v2])
        if decoder is None:
            z = fwd(v)
        else:  # the decoder reads the embedding h, the contrastive terms the projection z
            from .losses.autoencoder import reconstruction_loss

            h, z = fwd(v, features=True)
            ae = ae_weight * reconstruction_loss(decoder, h, None if labels is None else torch.cat([labels, labels]), v)
        if dist is None:
            z1, z2 = z.chunk(2)
        else:
            z1, z2, labels = dist.gather_views(z, labels)
        if loss_seed is None:
            out = loss_fn(z1, z2, labels)
        else:
            with torch.random.fork_rng(devices=[z.device] if z.device.type == "cuda" else []):
                torch.manual_seed(loss_seed)
                out = loss_fn(z1, z2, labels)
        return out if decoder is None else out + ae


def _batch_labels(idx: np.ndarray, known: torch.Tensor | None, pseudo: np.ndarray | None) -> np.ndarray:
    out = np.full(idx.shape[0], -1, dtype=np.int64)
    if pseudo is not None:
        out = pseudo[idx].astype(np.int64)
    if known is not None:
        k = known.numpy()[idx]
        # Known labels take precedence; pseudo ids are offset so they never collide with them.
        out = np.where(k >= 0, k, np.where(out >= 0, out + 1_000_000, -1))
    return out


@torch.no_grad()
def _pseudo_labels(model: Encoder, images_t: torch.Tensor, device: torch.device, cfg: TrainConfig,
                   known: torch.Tensor | None) -> np.ndarray:
    """k-means cluster ids of the current embedding (Kang et al.'s KCL without labels)."""
    from .cluster import kmeans
    from .embed import embed_array

    emb = embed_array(model, images_t.numpy(), device)
    k = cfg.n_pseudo_labels
    if k <= 0:
        from selector.strategies.class_count import estimate_num_classes

        k = estimate_num_classes(emb, seed=cfg.seed).k
    _, assign, _ = kmeans(emb, int(k), seed=cfg.seed)
    model.train()
    return np.asarray(assign, dtype=np.int64)
