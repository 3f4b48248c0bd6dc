"""Annotation rounds through Label Studio (three by default), simulated end to end on a real pool.

The round trip this script walks through, once per round (files under ``--out``)::

    fit once       sel = Selector(strategy=..., epochs=..., seed=...).fit(pool)
                   (embeds the unlabeled pool: with the pretrained extra a frozen backbone, else an
                   encoder trained on the pool for ``epochs``; every round reuses the embedding)

    round r  1. result = sel.select(budget, labeled=<Label Studio export of rounds 1..r-1>)
                 (round 1: labeled=None; the export JSON is passed as a path, read with
                 selector.formats.read_labels, so items labeled before are never chosen again)
             2. result.to_label_studio("round_r/tasks.json")
                 -> Label Studio tasks (data.image URL, data.path, data.rank, the estimated
                 group as a pre-annotation) and round_r/tasks.config.xml (labeling config)
             3. the annotator labels the tasks in Label Studio; here an oracle does it, reading
                 the true class from the pool (folder pools: the parent folder name,
                 ``digit_3/0042.png`` -> ``digit_3``; .npz pools: ``y``)
             4. Label Studio "Export > JSON": every task of the project with its
                 ``annotations`` -> round_r/export.json (simulated in Label Studio's export
                 format: the choice in annotations[-1].result[0].value.choices)
             5. labels = read_labels("round_r/export.json", root=pool folder)
                 -> {pool path: label}; selector.plan.labeled_mask matches them to the
                 pool (mask, class index per item); the metrics below are computed from them
             6. round_r/export.json becomes ``labeled=`` of round r+1

Per round it prints: items labeled so far, classes covered (of the pool's true count), the
normalised entropy of the labels (1 = perfectly balanced over all true classes), and the accuracy
of a linear probe (selector.eval.retrain.linear_probe) on the frozen embedding, trained on the labels read
back and scored on every other pool item.

Run::

    python examples/annotation_loop.py                      # demo pool (1,797 digits), ~30 s on 2 CPU cores
    python examples/annotation_loop.py --pool images/ --rounds 3 --budget 50 --out loop/
    python examples/annotation_loop.py --pool mnist10k.npz --strategy typiclust

In a real project steps 3-4 are people and Label Studio: start it with
``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=``
the parent of the pool folder, paste round_r/tasks.config.xml as the labeling config (with your
class names as the choices), import round_r/tasks.json, label, "Export > JSON", and pass the
exported file to the next ``select`` (or ``selector select --labeled export.json``).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from selector.eval.metrics import classes_covered, normalised_entropy  # noqa: E402
from selector.eval.retrain import linear_probe  # noqa: E402

from selector import STRATEGIES, Selector  # noqa: E402
from selector.formats import read_labels  # noqa: E402
from selector.plan import labeled_mask  # noqa: E402
from selector.pool import Pool, load_pool, write_demo_pool  # noqa: E402

#: The Label Studio control names the export uses (selector.formats.label_studio defaults).
FROM_NAME, TO_NAME = "choice", "image"


def oracle_labels(pool: Pool) -> list[str]:
    """(n,) true class name of every pool item: the parent folder of a folder pool's file, or
    ``str(y[i])`` of an .npz pool. Raises ValueError when the pool carries no classes."""
    if pool.labels is not None:
        return [str(int(v)) for v in pool.labels]
    names = [Path(p).parent.name for p in pool.ids]
    if any(not n for n in names):
        bad = next(p for p, n in zip(pool.ids, names) if not n)
        raise ValueError(f"the oracle reads the class from the parent folder, but {bad!r} is at the "
                         f"pool root; use a <class>/<file> layout or an .npz with y")
    return names


def annotate(tasks: list[dict[str, Any]], truth: dict[str, str], first_task_id: int,
             project_id: int = 1) -> list[dict[str, Any]]:
    """The tasks as Label Studio exports them once an annotator picked ``truth[data.path]``.

    Adds what Label Studio adds: a task ``id`` and ``project``, and one annotation per task
    (https://labelstud.io/guide/task_format), its choice in ``result[0].value.choices``. The
    imported ``predictions`` (the strategy's group) stay on the task, as in a real export;
    ``read_labels`` takes the annotation, never the prediction.
    """
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    out = []
    for k, task in enumerate(tasks):
        tid = first_task_id + k
        label = truth[task["data"]["path"]]
        ann = {
            "id": tid,
            "completed_by": 1,
            "result": [{"id": f"oracle-{tid}", "type": "choices", "from_name": FROM_NAME,
                        "to_name": TO_NAME, "origin": "manual", "value": {"choices": [label]}}],
            "was_cancelled": False,
            "ground_truth": False,
            "created_at": now,
            "updated_at": now,
            "lead_time": 1.0,
            "task": tid,
            "project": project_id,
        }
        out.append({"id": tid, "project": project_id, **task, "annotations": [ann],
                    "created_at": now, "updated_at": now})
    return out


def probe_accuracy(emb: np.ndarray, mask: np.ndarray, y: np.ndarray, class_names: Sequence[str],
                   truth: Sequence[str], seed: int) -> float:
    """Accuracy of a linear probe trained on the labeled rows (``y`` indexes ``class_names``) and
    scored on every unlabeled row against ``truth`` (a class never labeled is never predicted)."""
    train = mask & (y >= 0)
    test = ~mask
    if not test.any():
        return float("nan")
    pred = linear_probe(emb[train], y[train], emb[test], seed=seed)
    names = np.asarray(class_names, dtype=object)[pred]
    return float(np.mean(names == np.asarray(truth, dtype=object)[test]))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", help="image folder (<class>/<file> layout) or .npz with x and y; "
                                   "default: the built-in demo pool (scikit-learn digits) in a temp folder")
    ap.add_argument("--rounds", type=int, default=3, help="annotation rounds (default 3)")
    ap.add_argument("--budget", type=int, default=20, help="items labeled per round (default 20)")
    ap.add_argument("--strategy", default="balanced",
                    help=f"selection strategy (registered: {', '.join(sorted(STRATEGIES))}; default balanced)")
    ap.add_argument("--epochs", default="5",
                    help="encoder training epochs, or 'auto' for the library's choice from the pool size "
                         "(about 300,000 images seen: minutes on a CPU; default 5 for a quick demo)")
    ap.add_argument("--seed", type=int, default=0, help="seeds training and selection (default 0)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--out", help="output folder (default: a new temp folder)")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.budget < 1:
        ap.error(f"--rounds and --budget must be at least 1, got {args.rounds} and {args.budget}")
    if args.epochs == "auto":
        args.epochs = None
    else:
        try:
            args.epochs = int(args.epochs)
        except ValueError:
            ap.error(f"--epochs must be a whole number or 'auto', got {args.epochs!r}")
        if args.epochs < 1:
            ap.error(f"--epochs must be at least 1, got {args.epochs}")
    if args.strategy not in STRATEGIES:
        ap.error(f"unknown strategy {args.strategy!r}; registered: {', '.join(sorted(STRATEGIES))}")
    return args


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the loop; returns one record per round (also printed):
    ``round, chosen (ids in rank order), chosen_indices, n_labeled, classes_covered, n_classes,
    entropy, accuracy, n_test, tasks_file, export_file``."""
    args = parse_args(argv)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="annotation-loop-"))
    out.mkdir(parents=True, exist_ok=True)
    pool_path = Path(args.pool) if args.pool else out / "demo-pool"
    if not args.pool:
        n = write_demo_pool(pool_path)
        print(f"wrote the demo pool: {n} digits under {pool_path}")

    pool = load_pool(pool_path)  # read first: the checks below need no encoder
    try:
        truth_list = oracle_labels(pool)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    truth = dict(zip(pool.ids, truth_list))
    n_classes = len(set(truth_list))
    root = pool.root if Path(pool.root).is_dir() else None  # .npz ids are not paths
    n_free = len(pool) - pool.n_duplicates  # byte-identical copies are never chosen twice
    if args.rounds * args.budget > n_free:
        raise SystemExit(f"{args.rounds} rounds x {args.budget} items > {n_free} distinct pool items")

    sel = Selector(strategy=args.strategy, seed=args.seed, epochs=args.epochs, device=args.device,
                   cache_dir=out / "cache")
    sel.fit(pool)  # once: every round reuses the encoder and the embedding
    emb = sel.embeddings_
    t = sel.timings_
    print(f"fit: {len(pool)} items, embedding {emb.shape[1]}-d, train {t['train']:.1f} s, "
          f"embed {t['embed']:.1f} s")

    records: list[dict[str, Any]] = []
    project: list[dict[str, Any]] = []  # the Label Studio project: every task imported so far
    export_file: Path | None = None
    print(f"{'round':>5} {'labeled':>7} {'classes':>9} {'entropy':>7} {'probe acc':>9}")
    for r in range(1, args.rounds + 1):
        rdir = out / f"round_{r}"
        rdir.mkdir(exist_ok=True)
        # 1. choose, excluding everything in the previous export
        result = sel.select(args.budget, labeled=None if export_file is None else str(export_file))
        # 2. tasks for Label Studio
        tasks_file = rdir / "tasks.json"
        result.to_label_studio(tasks_file, from_name=FROM_NAME, to_name=TO_NAME)
        tasks = json.loads(tasks_file.read_text(encoding="utf-8"))
        # 3-4. the annotator labels them; Label Studio exports the whole project
        project += annotate(tasks, truth, first_task_id=len(project) + 1)
        export_file = rdir / "export.json"
        export_file.write_text(json.dumps(project, indent=1) + "\n", encoding="utf-8")
        # 5. read the labels back
        labels = read_labels(export_file, root=root)
        mask, y, class_names, n_missing = labeled_mask(labels, pool.ids, root)
        if n_missing:
            raise RuntimeError(f"{n_missing} exported tasks name no pool item")
        got = [class_names[j] for j in y[mask]]
        rec = {
            "round": r,
            "chosen": result.paths,
            "chosen_indices": result.indices.tolist(),
            "n_labeled": int(mask.sum()),
            "classes_covered": classes_covered(np.asarray(got)),
            "n_classes": n_classes,
            "entropy": normalised_entropy(np.asarray(got), n_classes),
            "accuracy": probe_accuracy(emb, mask, y, class_names, truth_list, args.seed),
            "n_test": int((~mask).sum()),
            "tasks_file": str(tasks_file),
            "export_file": str(export_file),
        }
        records.append(rec)
        print(f"{r:>5} {rec['n_labeled']:>7} {rec['classes_covered']:>4} of {n_classes:<2} "
              f"{rec['entropy']:>7.3f} {rec['accuracy']:>9.3f}")
    print(f"strategy {args.strategy}, seed {args.seed}; files under {out}")
    return records


if __name__ == "__main__":
    main()
