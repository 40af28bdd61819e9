"""Planted-structure recovery suite: several built-in spaces with a known right tree, several methods.

Cases (``benchmarks/_cases.py``, each with its recovery criterion next to it):

* ``digit_gratings``: digit | grating tasks, split early; first split has ARI 1.
* ``levels`` (``digit_grating_levels``): three factors of unequal difficulty; the brightness level
  is easy (solved on any path) but harms the digit tasks; the first split keeps the digit tasks
  together, the grating tasks together, apart, and no level task with the digits.
* ``synth_attributes``: 40 tasks in 4 planted groups; first split has ARI 1.
* ``depth`` (``multi_digits_depth``): left | right digits, the split after shared early layers;
  ARI 1 and the first split at layer 2 or 3.
* ``null`` (``synth_null``): six tasks reading the same content; the tree's params within 10% of
  the all-shared tree's.
* ``kinds`` (``digit_grating_kinds``): each factor read by a classification, a dense and a
  regression task whose losses differ by about 10^5; under equal loss balancing ``ink`` takes
  every layer it shares, so the best tree gives it a branch of its own; first split has ARI 1
  with that tree's (its truth is measured in delta-m, as its tasks are not all classifications).
* ``two_level`` (``multi_digit_gratings``): two digits side by side under a grating; the right
  tree splits digit | grating at layer 1 and the digit group again into left | right at layer 2;
  the first split has ARI 1 with digit | grating and a deeper layer splits the digit tasks into
  left | right (ARI 1 over them). Its truth is measured by the search's trade-off score, as a
  deeper split is right only for what it costs.

For each case, method and seed: one search with the space's search settings and ``method``
overridden. Prints one line per search as it ends, then a table case x method of recovered seeds
k/N and seconds per search, and last ``recovery suite: K/N cases at >= 4/5`` for the first method
(the default, ``trained``); a case counts when at least 80% of its seeds are recovered.

``--truth`` instead verifies each case's ground truth: it trains the case's reference trees with
the space's budget (``mtnas.train.train_tree``) over ``--seeds`` seeds and prints the case's
measure (mean validation accuracy, delta-m, or the score: delta-m less ``search.gain_per_cost``
points per all-shared network's worth of extra FLOPs), the margin of each claim and whether it
holds.

    python -m benchmarks.recovery_suite [--seeds 5] [--jobs 2] [--methods trained,pairs,dmtg,affinity] [--cases a,b]
    python -m benchmarks.recovery_suite --truth [--seeds 2] [--cases ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks._cases import BEAT, CASES, TIE
from mtnas.core import format_table

DEFAULT_METHODS = ("trained", "pairs", "dmtg", "affinity")
#: Each measure of ``Case.measure``: the unit of the table's columns and the line that names it.
MEASURES = {
    "accuracy": ("acc %", "mean accuracy over the tasks"),
    "delta_m": ("delta-m %", "delta-m"),
    "score": ("score", "score = delta-m less search.gain_per_cost points per all-shared network of extra FLOPs"),
}


def _load(case_name: str, seed: int):
    from mtnas.space import load_resolved, load_space

    return load_resolved(replace(load_space(CASES[case_name].space), seed=seed))


def search_one(case_name: str, method: str, seed: int) -> dict:
    """One search of a case with ``method``; whether its tree is recovered, and the time."""
    from mtnas.search import search_tree

    torch.set_num_threads(1)
    case = CASES[case_name]
    space, bundle = _load(case_name, seed)
    start = time.perf_counter()
    with _capture_state(method) as captured:
        result = search_tree(space, bundle, seed=seed, hparams=replace(space.search, method=method))
    seconds = time.perf_counter() - start
    ok, detail = case.criterion(result.tree, space, bundle)
    return {"case": case_name, "method": method, "seed": seed, "recovered": bool(ok), "detail": detail,
            "seconds": seconds, "tree": result.tree.describe(), "diag": _diagnostics(captured.get("state"), result)}


@contextmanager
def _capture_state(method: str):
    """Keep the routing method's state of the search (its affinity or dissimilarity) for the log."""
    from mtnas.search import METHODS

    obj, captured = getattr(METHODS.get(method), "routing", None), {}
    if obj is None:  # not a supernet method: nothing to capture
        yield captured
        return
    original = obj.init

    def init(ctx):
        captured["state"] = state = original(ctx)
        return state

    obj.init = init
    try:
        yield captured
    finally:
        del obj.init


def _diagnostics(state, result) -> dict:
    """What to look at when a search misses: the measured task relations and the last routing."""
    out: dict = {"heads": np.round(result.routing["heads"][-1], 3).tolist()} if "heads" in result.routing else {}
    if result.candidates:
        c = result.candidates
        out["trained"] = len(c["trees"])
        best = sorted(range(len(c["trees"])), key=lambda i: -c["score"][i])[:6]
        out["candidates"] = [[str(c["trees"][i]), round(float(c["delta_m"][i]), 2), round(float(c["cost"][i]), 3),
                              round(float(c["score"][i]), 2)] for i in best]
    affinity = getattr(state, "affinity", None)
    info = getattr(state, "info", {}) or {}
    for key, value in (("affinity", affinity), ("affinity", info.get("affinity")),
                       ("dissimilarity", info.get("dissimilarity"))):
        if value is not None:
            out[key] = np.round(np.asarray(value, dtype=float), 4).tolist()
    if "scores" in info:
        out["scores"] = {str(k): round(float(v), 4) for k, v in info["scores"].items()}
    return out


def train_one(case_name: str, label: str, seed: int) -> dict:
    """Train one reference tree of a case on one seed: its measure on val and test (mean accuracy
    over the tasks; delta-m against single-task networks of the same budget; or that delta-m less
    ``search.gain_per_cost`` times the tree's relative FLOPs minus 1, with the delta-m and the
    relative FLOPs kept beside it), per-task values."""
    from mtnas.model import relative_cost
    from mtnas.space import trade_off_score
    from mtnas.train import compute_baselines, mean_metric, per_task_delta, train_tree

    torch.set_num_threads(1)
    case = CASES[case_name]
    space, bundle = _load(case_name, seed)
    tree = case.references(space, bundle)[label]
    r = train_tree(tree, space, bundle, device=torch.device("cpu"), seed=seed)
    row = {"case": case_name, "label": label, "seed": seed, "params": r.cost.params}
    if case.measure in ("delta_m", "score"):
        base = compute_baselines(space, bundle, device=torch.device("cpu"), seed=seed)
        per = {split: per_task_delta(getattr(r, split), base.metrics(split), space) for split in ("val", "test")}
        dm = {split: statistics.mean(per[split].values()) for split in ("val", "test")}
        if case.measure == "delta_m":
            return {**row, **dm, "tasks": per["val"]}
        cost = relative_cost(tree, space, "flops")
        gain = space.search.gain_per_cost
        return {**row, "val": trade_off_score(dm["val"], cost, gain), "test": trade_off_score(dm["test"], cost, gain),
                "delta_m": dm["val"], "cost": cost, "tasks": per["val"]}
    return {**row, "val": 100 * mean_metric(r.val), "test": 100 * mean_metric(r.test),
            "tasks": {t: 100 * m.get("accuracy", float("nan")) for t, m in r.val.items()}}


def _run(pool_jobs: int, fn, jobs: list[tuple], log: Path | None) -> list[dict]:
    out = []
    with ProcessPoolExecutor(pool_jobs) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        for future in as_completed(futures):
            row = future.result()
            out.append(row)
            if fn is search_one:
                print(f"{row['case']:>16} {row['method']:>9} seed {row['seed']}: "
                      f"{'ok  ' if row['recovered'] else 'MISS'} {row['seconds']:6.1f}s  {row['detail']}  {row['tree']}",
                      flush=True)
            else:
                print(f"{row['case']:>16} seed {row['seed']}: {row['label']}: val {row['val']:.2f}", flush=True)
            if log is not None:
                with log.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    return out


def truth_report(rows: list[dict], cases: list[str]) -> bool:
    """Print each case's reference trees by its measure and the claim margins; True when every claim holds."""
    all_ok = True
    for name in cases:
        case = CASES[name]
        mine = [r for r in rows if r["case"] == name]
        if not mine:
            continue
        by: dict[str, dict[int, dict]] = {}
        for r in mine:
            by.setdefault(r["label"], {})[r["seed"]] = r
        seeds = sorted({r["seed"] for r in mine})
        table = []
        score = case.measure == "score"
        for label in by:
            val = [by[label][s]["val"] for s in seeds if s in by[label]]
            spread = statistics.stdev(val) if len(val) > 1 else 0.0
            first = next(iter(by[label].values()))
            table.append([label, round(statistics.mean(val), 2), round(spread, 2),
                          round(statistics.mean(by[label][s]["test"] for s in seeds if s in by[label]), 2),
                          *([round(statistics.mean(by[label][s]["delta_m"] for s in seeds if s in by[label]), 2),
                             round(first["cost"], 3)] if score else []),
                          first["params"]])
        unit, what = MEASURES[case.measure]
        print(f"\n{name} ({case.space}): {case.about}; {what}, {len(seeds)} seeds")
        print(format_table(["tree", f"val {unit}", "+-", f"test {unit}",
                            *(["val delta-m %", "FLOPs x"] if score else []), "params"], table))
        for claim in case.claims:
            common = [s for s in seeds if s in by.get(claim.better, {}) and s in by.get(claim.worse, {})]
            if not common:
                print(f"  {claim.better} {claim.kind} {claim.worse}: not trained")
                all_ok = False
                continue
            diffs = [by[claim.better][s]["val"] - by[claim.worse][s]["val"] for s in common]
            margin = statistics.mean(diffs)
            if claim.kind == "beats":
                ok = margin > BEAT and all(d > 0 for d in diffs)
            else:
                ok = abs(margin) <= TIE
            all_ok &= ok
            print(f"  {claim.better} {claim.kind} {claim.worse}: margin {margin:+.2f} points "
                  f"(per seed {', '.join(f'{d:+.2f}' for d in diffs)}) -> {'holds' if ok else 'FAILS'}")
    return all_ok


def suite_report(rows: list[dict], cases: list[str], methods: list[str]) -> None:
    table = []
    for name in cases:
        cells = [name]
        for method in methods:
            mine = [r for r in rows if r["case"] == name and r["method"] == method]
            if not mine:
                cells.append("-")
                continue
            k = sum(r["recovered"] for r in mine)
            cells.append(f"{k}/{len(mine)} ({statistics.mean(r['seconds'] for r in mine):.0f}s)")
        table.append(cells)
    print("\nrecovered seeds k/N (seconds per search)")
    print(format_table(["case"] + methods, table))
    lines = []
    for method in methods:
        counted = [name for name in cases if any(r["case"] == name and r["method"] == method for r in rows)]
        passing = sum(
            1 for name in counted
            if (mine := [r for r in rows if r["case"] == name and r["method"] == method])
            and sum(r["recovered"] for r in mine) >= 0.8 * len(mine)
        )
        lines.append((method, passing, len(counted)))
    for method, k, n in lines[1:]:
        print(f"recovery suite [{method}]: {k}/{n} cases at >= 4/5")
    method, k, n = lines[0]
    print(f"recovery suite: {k}/{n} cases at >= 4/5")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=None, help="seeds per case (default 5; 2 with --truth)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="searches (or trainings) run in parallel processes")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated routing methods; "
                        "the first is the one the last line counts")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--truth", action="store_true", help="verify the cases' ground truth instead of searching")
    parser.add_argument("--log", type=Path, default=None, help="append each result as a JSON line to this file")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; valid: {', '.join(CASES)}")
    seeds = range(args.first_seed, args.first_seed + (args.seeds or (2 if args.truth else 5)))
    start = time.perf_counter()
    if args.truth:
        jobs = []
        for name in cases:
            space, bundle = _load(name, 0)
            jobs += [(name, label, s) for s in seeds for label in CASES[name].references(space, bundle)]
        rows = _run(args.jobs, train_one, jobs, args.log)
        ok = truth_report(rows, cases)
        print(f"\nground truth: {'every claim holds' if ok else 'some claims FAIL'}; wall time {time.perf_counter() - start:.0f}s")
        return
    from mtnas.search import METHODS

    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        parser.error(f"unknown method(s) {', '.join(bad)}; valid: {', '.join(METHODS.names())}")
    jobs = [(name, method, s) for name in cases for method in methods for s in seeds]
    rows = _run(args.jobs, search_one, jobs, args.log)
    print(f"wall time {time.perf_counter() - start:.0f}s")
    suite_report(rows, cases, methods)


if __name__ == "__main__":
    main()
