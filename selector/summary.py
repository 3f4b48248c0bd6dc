"""The summary of a run: rows of (key, text) that :func:`summary_text` lays out as aligned ``key: text``
lines, or :func:`summary_json` turns into one JSON-ready object (``selector select --json``).

:mod:`selector.workflow` builds the rows (the lines below say what each one holds); the command line
prints :func:`summary_text`, and a Python user calling the workflow can print the same text.
Imports nothing: the objects are read by their attributes.
"""
from __future__ import annotations

from typing import Any, Sequence

Rows = list[tuple[str, str]]


def summary_text(rows: Sequence[tuple[str, str]]) -> str:
    """``key: text`` lines, the texts aligned after the longest key."""
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k + ':':<{w + 1}} {v}" for k, v in rows)


def pool_line(pool, where) -> str:
    """A pool read from ``where``: images, files skipped, duplicates, colour and size."""
    extra = f", {len(pool.skipped)} unreadable files skipped" if pool.skipped else ""
    if pool.n_duplicates:
        extra += f", {pool.n_duplicates} duplicate files (byte-identical to another) not selectable"
    side = pool.format.short_side
    size = f"short side {side} px (median)" if side else f"{pool.size} px"
    return f"{len(pool)} images in {where}{extra} ({'grayscale' if pool.channels == 1 else 'RGB'}, {size})"


def labeled_line(plan, labeled: Sequence, exclude: Sequence) -> str:
    """What a :class:`selector.plan.SelectionPlan` excluded: labeled, skipped by annotators and sent out but
    not annotated yet counted apart (when any was skipped or sent out), and the entries of the
    ``labeled``/``exclude`` files that name nothing in the pool."""
    files = [*labeled, *exclude]
    skipped, pending = plan.n_skipped, plan.n_pending
    if skipped or pending or exclude:
        text = (f"{plan.n_labeled} images excluded: {plan.n_done} labeled, {skipped} skipped by annotators, "
                f"{pending} sent out and not annotated yet")
    else:
        text = f"{plan.n_labeled} images already labeled excluded"
    return text + (f"; {plan.missing} entries of {', '.join(map(str, files))} are not in the pool"
                   if plan.missing else "")


def loss_text(tc) -> str:
    """The loss of a training configuration, with the autoencoder's weight when it has one."""
    return tc.loss + (f" + autoencoder {tc.autoencoder:g}" if tc.autoencoder else "")


def encoder_line(sel, n: int, cache) -> str:
    """What a fitted :class:`selector.Selector`'s encoder was: backbone, why (for auto), frozen or how
    it was trained on the ``n`` images (epochs, images seen), and the ``cache`` folder."""
    name = sel.backbone_ + (" + pixel view (PCA-50 of the pixels)" if sel.pixel_view_ is not None else "")
    why = f"; {sel.backbone_reason_}" if sel.backbone_name == "auto" else ""
    if sel.encoder_.config.mode == "frozen":
        plan = sel.encoder_plan_
        size = (f", {plan.encoder.input_size} px input from images decoded at {plan.read_side} px, {plan.precision}"
                if plan.streams else "")
        return f"{name}, frozen (no training){size}{why}"
    tc = sel.train_config(n)
    rep = sel.train_report_
    if sel.encoder_cached_ or rep is None:
        done = f"{tc.epochs} epochs" if tc.time_budget_s is None else f"time budget {tc.time_budget_s / 60:g} min"
        how = f"{done}; loaded from the cache"
    else:
        how = (f"{rep['epochs']:.1f} epochs, {rep['images_seen']:,} images seen, {sel.timings_['train']:.1f} s"
               + (f" of a {tc.time_budget_s / 60:g} min time budget" if tc.time_budget_s is not None else "")
               + _processes(rep))
    return f"{name} trained on the pool with {loss_text(tc)} ({how}; cache: {cache}){why}"


def _processes(rep: dict) -> str:
    return (f", {rep['processes']} processes x batch {rep['batch_size'] // rep['processes']}"
            if rep.get("processes", 1) > 1 else "")


def trained_line(name: str, why: str, tc, rep: dict, out) -> str:
    """``selector train``'s encoder: backbone, loss, what was done (training report ``rep``) and where
    it was written."""
    done = (f"{rep['epochs']:.1f} epochs, {rep['images_seen']:,} images seen in {rep['seconds']:.1f} s"
            + (f" (time budget {tc.time_budget_s / 60:g} min)" if tc.time_budget_s is not None else "")
            + _processes(rep))
    return f"{name}{why}, {loss_text(tc)}, {done} -> {out}"


def class_count_text(classes: dict | None) -> str:
    """The class count as a summary reads it (``classes``: the ``{"estimate", "low", "high", "confident"}`` a
    strategy reports): "estimated classes: 10 (between 9 and 11)" when confident, else a plain "no clear class
    structure: between A and B groups"; "" without a count."""
    if not isinstance(classes, dict) or classes.get("estimate") is None:
        return ""
    low, high = classes.get("low"), classes.get("high")
    if classes.get("confident") is True:
        span = f" (between {low} and {high})" if low is not None and high is not None and low != high else ""
        return f"estimated classes: {classes['estimate']}{span}"
    return f"no clear class structure: between {low} and {high} groups (best guess {classes['estimate']})"


def strategy_line(result) -> str:
    """The strategy of a :class:`selector.api.SelectionResult`, its time and the class count: its interval and
    whether it is confident (:func:`class_count_text`), or, for a strategy that reports only a range over the
    estimate's subsamples (or a count given by the caller), that."""
    k = result.n_groups
    info = result.selection.info
    if isinstance(info.get("classes"), dict):
        return f"{result.strategy} ({result.seconds:.2f} s), {class_count_text(info['classes'])}"
    k_range = info.get("k_range")
    text = f", estimated classes: {k}" if k is not None else ""
    if k is not None and k_range:
        n_sub = len(info.get("k_per_seed", []))
        text += f" (range {k_range[0]}-{k_range[1]} over {n_sub} sample{'' if n_sub == 1 else 's'} of the pool)"
    return f"{result.strategy} ({result.seconds:.2f} s){text}"


def result_rows(result, files: Sequence, seconds: float) -> Rows:
    """The last rows of a selection: what was chosen and written where, per group, the time."""
    rows = [("chosen", f"{len(result)} images -> {', '.join(str(f) for f in files)}")]
    counts = result.group_counts()
    if counts and set(counts) != {-1}:
        rows.append(("per group", " ".join(f"{g}:{c}" for g, c in counts.items())))
    rows.append(("time", f"{seconds:.1f} s"))
    return rows


def summary_json(rows: Sequence[tuple[str, str]], result, files: Sequence, seconds: float) -> dict[str, Any]:
    """The summary of a selection as one object: the text rows by key, plus the numbers and the chosen ids;
    ``classes`` (``{"estimate", "low", "high", "confident"}``) when the strategy counted the classes
    (``estimated_classes`` stays the number of groups the picks were drawn from)."""
    classes = result.selection.info.get("classes")
    return {"chosen": len(result), "outputs": [str(f) for f in files], "strategy": result.strategy,
            "estimated_classes": result.n_groups, **({"classes": dict(classes)} if isinstance(classes, dict) else {}),
            "per_group": {str(g): c for g, c in result.group_counts().items()},
            "seconds": round(seconds, 3), "info": result.info, "paths": result.paths,
            "summary": {k: v for k, v in rows}}
