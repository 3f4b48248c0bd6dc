"""Speed and memory of the selection strategies, side by side with plain scikit-learn versions.

Each (strategy, n, d, data, budget) runs in its own subprocess so peak memory can be read from
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (tracemalloc does not see faiss' allocations):
the reported figure is the peak resident set during selection minus the resident set after
the embeddings were generated. The scikit-learn baseline of the same strategy runs in another
subprocess under ``--baseline-timeout`` seconds; ratio = baseline time / our time.

Data: "random" = isotropic Gaussian vectors, "clustered" = 50 Gaussian blobs on the unit
sphere with sizes decaying geometrically (largest/smallest = 20); both L2-normalised float32.

    python -m benchmarks.bench_strategies                       # n=10k, d=128, B=100 and 1000
    python -m benchmarks.bench_strategies --full                # n in {10k,100k,1M}, d in {128,512}
    python -m benchmarks.bench_strategies --n 1000000 --d 128 --budget 1000 --data random \\
        --strategies balanced typiclust probcover kcenter --baseline-timeout 300
    python -m benchmarks.bench_strategies --coverage            # TypiClust parity: blobs covered of 50

Prints a markdown table.
"""
from __future__ import annotations

import json
import resource
import subprocess
import time
from pathlib import Path

import click
import numpy as np

from benchmarks.common import command_line, help_text, list_option, make_data, run, script_command, write_page

STRATEGY_NAMES = ["random", "stratified-random", "kcenter", "typiclust", "probcover", "balanced", "typcover"]


# ----------------------------------------------------------------------------------------------
# plain scikit-learn versions of the same strategies (the baselines)

def sk_kmeans(x, k, seed):
    from sklearn.cluster import KMeans, MiniBatchKMeans
    if x.shape[0] > 50_000:
        return MiniBatchKMeans(k, random_state=seed, n_init=1, batch_size=4096).fit_predict(x)
    return KMeans(k, random_state=seed, n_init=1).fit_predict(x)


def sk_stratified(x, budget, seed):
    rng = np.random.default_rng(seed)
    a = sk_kmeans(x, min(budget, 1000), seed)
    counts = np.bincount(a)
    share = np.floor(budget * counts / counts.sum()).astype(int)
    rest = budget - share.sum()
    share[np.argsort(-(budget * counts / counts.sum() - share))[:rest]] += 1
    return np.concatenate([rng.choice(np.flatnonzero(a == c), s, replace=False) for c, s in enumerate(share) if s])


def sk_kcenter(x, budget, seed, centers=None):
    from sklearn.metrics import pairwise_distances, pairwise_distances_argmin_min
    if centers is None or len(centers) == 0:
        j = int(np.argmin(pairwise_distances(x, x.mean(0, keepdims=True)).ravel()))
        md = pairwise_distances(x, x[[j]]).ravel()
        out, todo = [j], budget - 1
    else:
        md = pairwise_distances_argmin_min(x, x[centers])[1]
        md[centers] = -1.0
        out, todo = [], budget
    for _ in range(todo):
        j = int(np.argmax(md))
        out.append(j)
        md = np.minimum(md, pairwise_distances(x, x[[j]]).ravel())
    return np.array(out)


def sk_typicality(x, k):
    from sklearn.neighbors import NearestNeighbors
    d, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return 1.0 / (d[:, 1:].mean(1) + 1e-8)


def sk_typiclust(x, budget, seed):
    a = sk_kmeans(x, budget, seed)
    sizes = np.bincount(a, minlength=budget)
    out = []
    for c in np.argsort(-sizes, kind="stable"):  # largest clusters first; clusters of <= 5 last
        if len(out) == budget:
            break
        rows = np.flatnonzero(a == c)
        if rows.shape[0] == 1:
            out.append(rows[0])
        elif rows.shape[0] > 1:
            out.append(rows[np.argmax(sk_typicality(x[rows], max(1, min(20, rows.shape[0] // 2))))])
    return np.array(out, dtype=np.int64)


def sk_probcover(x, budget, seed, k_graph=32, n_clusters=50):
    from sklearn.neighbors import NearestNeighbors
    d, i = NearestNeighbors(n_neighbors=k_graph + 1).fit(x).kneighbors(x)
    d, i = d[:, 1:], i[:, 1:]
    a = sk_kmeans(x, n_clusters, seed)
    other = a[i] != a[:, None]
    r = np.where(other.any(1), d[np.arange(len(x)), np.argmax(other, 1)], np.inf)
    delta = np.sort(r)[int(0.05 * len(x))]
    n = x.shape[0]
    inside = d < delta
    src = np.concatenate([np.arange(n), np.repeat(np.arange(n), k_graph)[inside.ravel()]])
    dst = np.concatenate([np.arange(n), i.ravel()[inside.ravel()]])
    out = []
    for _ in range(budget):  # the published algorithm: recount degrees after every pick
        deg = np.bincount(src, minlength=n)
        j = int(np.argmax(deg))
        out.append(j)
        new = dst[src == j]
        keep = ~np.isin(dst, new)
        src, dst = src[keep], dst[keep]
    return np.array(out)


def sk_balanced(x, budget, seed, n_sample=5000):
    """Same recipe with scikit-learn parts: spectral embedding of a subsample (eigengap),
    KMeans on it, nearest group mean for all, then TypiClust (KMeans + NearestNeighbors) per group."""
    from sklearn.cluster import KMeans
    from sklearn.manifold import spectral_embedding
    from sklearn.neighbors import kneighbors_graph
    rng = np.random.default_rng(seed)
    s = rng.choice(x.shape[0], min(n_sample, x.shape[0]), replace=False)
    g = kneighbors_graph(x[s], 10, mode="connectivity")
    g = 0.5 * (g + g.T)
    from scipy.sparse.csgraph import laplacian
    from scipy.sparse.linalg import eigsh
    ev = np.sort(eigsh(laplacian(g, normed=True), k=31, sigma=-1e-3, return_eigenvectors=False))
    k = int(np.argmax(np.diff(ev)[1:31])) + 2
    emb = spectral_embedding(g, n_components=k, random_state=seed)
    lab = KMeans(k, random_state=seed, n_init=3).fit_predict(emb)
    means = np.stack([x[s][lab == c].mean(0) for c in range(k)])
    from sklearn.metrics import pairwise_distances_argmin
    a = pairwise_distances_argmin(x, means)
    n_explore = budget // 2  # the other half: k-center from the typical picks
    typical = budget - n_explore
    share = np.full(k, typical // k)
    share[: typical - share.sum()] += 1
    out = []
    for c in range(k):
        rows = np.flatnonzero(a == c)
        if share[c] and rows.shape[0]:
            out.extend(rows[sk_typiclust(x[rows], int(min(share[c], rows.shape[0])), seed)])
    out = np.array(out, dtype=np.int64)
    return np.concatenate([out, sk_kcenter(x, n_explore, seed, centers=out)])


BASELINES = {"stratified-random": sk_stratified, "kcenter": sk_kcenter, "typiclust": sk_typiclust,
             "probcover": sk_probcover, "balanced": sk_balanced}


# ----------------------------------------------------------------------------------------------

def worker(spec: dict) -> dict:
    """Run one selection in this process; returns time and peak-RSS delta (MB)."""
    x = make_data(spec["n"], spec["d"], spec["data"])
    # imports (faiss, torch via the package, scikit-learn) happen before the clock starts
    import scipy.sparse.linalg  # noqa: F401
    import sklearn.cluster  # noqa: E401,F401
    from selector.strategies import get_strategy
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if spec["impl"] == "ours":
        name, _, inline = spec["strategy"].partition(":")  # "typcover:count_classes=False"
        from selector.strategies.registry import parse_params
        params = {**parse_params(name, filter(None, inline.split(","))), **spec.get("params", {})}
        sel = get_strategy(name, **params).select(x, spec["budget"], rng=0)
        n_out, extra = len(sel), {k: v for k, v in sel.info.items() if isinstance(v, (int, float, str))}
    else:
        idx = BASELINES[spec["strategy"].partition(":")[0]](x, spec["budget"], 0)
        n_out, extra = int(len(idx)), {}
    dt = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"time_s": dt, "peak_mb": max(rss1 - rss0, 0) / 1024.0, "n_out": n_out, "info": extra}


def blobs_covered(budgets=(50, 100), seeds=range(5), n=10_000, d=128, params=None) -> list[dict]:
    """TypiClust parity: blobs covered (of 50) by our ``typiclust`` and by the
    scikit-learn reference (:func:`sk_typiclust`: ``KMeans`` with greedy k-means++ on all points, as
    the published code) on the "clustered" data, per budget and seed, with the time of each."""
    from selector.strategies import get_strategy
    x, y = make_data(n, d, "clustered", return_labels=True)
    rows = []
    for b in budgets:
        for s in seeds:
            t0 = time.perf_counter()
            ours = get_strategy("typiclust", **(params or {})).select(x, b, rng=s).indices
            t1 = time.perf_counter()
            ref = sk_typiclust(x, b, s)
            t2 = time.perf_counter()
            rows.append({"budget": b, "seed": s, "ours": int(np.unique(y[ours]).shape[0]),
                         "reference": int(np.unique(y[ref]).shape[0]), "ours_s": t1 - t0, "reference_s": t2 - t1})
    return rows


def run_one(spec: dict, timeout: float) -> dict | None:
    cmd, env = script_command("bench_strategies")
    try:
        p = subprocess.run([*cmd, "--_worker", json.dumps(spec)], capture_output=True, text=True, timeout=timeout,
                           env=env)
    except subprocess.TimeoutExpired:
        return {"timeout": timeout}
    if p.returncode != 0:
        return {"error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"rc={p.returncode}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


@click.command("bench_strategies", help=help_text(__doc__))
@list_option("--n", type=int, default=(10_000,), show_default=True)
@list_option("--d", type=int, default=(128,), show_default=True)
@list_option("--budget", type=int, default=(100, 1000), show_default=True)
@list_option("--data", default=("random", "clustered"), type=click.Choice(["random", "clustered"]), show_default=True)
@list_option("--strategies", default=tuple(STRATEGY_NAMES), show_default=True)
@click.option("--full", is_flag=True, help="n in {10k, 100k, 1M}, d in {128, 512}")
@click.option("--timeout", type=float, default=600, show_default=True, help="limit per run of ours (s)")
@click.option("--baseline-timeout", type=float, default=120, show_default=True, help="limit per sklearn run (s)")
@click.option("--no-baseline", is_flag=True)
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="hyperparameter of our strategy (repeatable; one --strategies name), e.g. "
                   "--strategies kcenter --param shortlist=1000000000 (one full pass per pick)")
@click.option("--coverage", is_flag=True,
              help="TypiClust parity instead: blobs covered of 50 (ours vs the scikit-learn reference) "
                   "at each --budget (default 50 100), 5 seeds, n=10,000, d=128")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="also write the table, the command and the time ratios of --ratio-of to the other strategies of "
                   "each (n, d, data, B) to this markdown file")
@click.option("--ratio-of", default="typcover", show_default=True,
              help="the strategy whose time is divided by each other strategy's in the ratio table")
@click.option("--_worker", hidden=True)
@click.pass_context
def cli(ctx, n, d, budget, data, strategies, full, timeout, baseline_timeout, no_baseline, params, coverage,
        out, ratio_of, _worker) -> None:
    if _worker:
        print(json.dumps(worker(json.loads(_worker))))
        return
    if full:
        n, d = (10_000, 100_000, 1_000_000), (128, 512)
    strategy_params = {}
    if params:
        from selector.strategies.registry import parse_params
        if len(strategies) != 1:
            raise click.UsageError("--param needs exactly one strategy in --strategies")
        try:
            strategy_params = parse_params(strategies[0], params)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
    if coverage:
        from click.core import ParameterSource

        budgets = budget if ctx.get_parameter_source("budget") != ParameterSource.DEFAULT else [50, 100]
        rows = blobs_covered(budgets, params=strategy_params)
        print("| B | seed | ours: blobs covered of 50 | reference | ours (s) | reference (s) |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['budget']} | {r['seed']} | {r['ours']} | {r['reference']} | {r['ours_s']:.2f} | "
                  f"{r['reference_s']:.2f} |")
        for b in budgets:
            rb = [r for r in rows if r["budget"] == b]
            print(f"| {b} | mean | {np.mean([r['ours'] for r in rb]):.1f} | "
                  f"{np.mean([r['reference'] for r in rb]):.1f} "
                  f"| {np.mean([r['ours_s'] for r in rb]):.2f} | {np.mean([r['reference_s'] for r in rb]):.2f} |")
        return
    lines = ["| strategy | n | d | data | B | ours (s) | ours peak MB | sklearn (s) | sklearn peak MB | speed-up "
             "| info |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    times: dict[tuple, dict[str, float]] = {}
    for size in n:
        for dim in d:
            for kind in data:
                for b in budget:
                    for s in strategies:
                        spec = {"strategy": s, "n": size, "d": dim, "data": kind, "budget": b, "impl": "ours",
                                "params": strategy_params}
                        r = run_one(spec, timeout)
                        base = None
                        if not no_baseline and s.partition(":")[0] in BASELINES:
                            base = run_one({**spec, "impl": "sklearn"}, baseline_timeout)
                        label = s + "".join(f" {k}={v}" for k, v in strategy_params.items())
                        lines.append(_row(label, size, dim, kind, b, r, base))
                        print(lines[-1], flush=True)
                        if r and "time_s" in r:
                            times.setdefault((size, dim, kind, b), {})[s] = r["time_s"]
    ratios = ratio_table(times, ratio_of)
    print(ratios)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_page(out, f"Command:\n\n    {command_line()}\n\n" + "\n".join(lines) + "\n\n" + ratios + "\n")


def ratio_table(times: dict[tuple, dict[str, float]], of: str) -> str:
    """Markdown: for each (n, d, data, B), the time of strategy ``of`` divided by each other strategy's."""
    others = sorted({s for t in times.values() for s in t if s != of})
    if not others or not any(of in t for t in times.values()):
        return ""
    rows = [f"| n | d | data | B | {of} (s) | " + " | ".join(f"{of} / {s}" for s in others) + " |",
            "|---|---|---|---|---|" + "---|" * len(others)]
    for (size, dim, kind, b), t in times.items():
        if of in t:
            cells = [f"{t[of] / t[s]:.2f}" if s in t else "n/a" for s in others]
            rows.append(f"| {size:,} | {dim} | {kind} | {b} | {t[of]:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _fmt(r: dict | None, key: str) -> str:
    if r is None:
        return "n/a"
    if "timeout" in r:
        return f"> {r['timeout']:.0f}" if key == "time_s" else "-"
    if "error" in r:
        return "error"
    return f"{r[key]:.2f}" if key == "time_s" else f"{r[key]:.0f}"


def _row(s, n, d, data, b, r, base) -> str:
    speed = "n/a"
    if r and "time_s" in r and base:
        if "time_s" in base:
            speed = f"{base['time_s'] / r['time_s']:.1f}x"
        elif "timeout" in base:
            speed = f"> {base['timeout'] / r['time_s']:.1f}x"
    info = ""
    if r and "info" in r:
        keep = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r["info"].items()
                if k in ("k", "delta", "coverage", "n_clusters", "graph")}
        info = ", ".join(f"{k}={v}" for k, v in keep.items())
    elif r and "error" in r:
        info = r["error"][:80]
    return (f"| {s} | {n:,} | {d} | {data} | {b} | {_fmt(r, 'time_s')} | {_fmt(r, 'peak_mb')} | "
            f"{_fmt(base, 'time_s')} | {_fmt(base, 'peak_mb')} | {speed} | {info} |")


def main(argv: list[str] | None = None):
    return run(cli, argv)


if __name__ == "__main__":
    main()
