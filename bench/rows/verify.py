"""``gpunuma.verify()`` of a bound 20-thread process (real kernel): every thread read back and classified, the
calling thread's memory policy, and its ``numa_maps``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness import Budget, Context, RowResult, Samples, Stats, fmt_ns, sample_trees, verdict

KEY = "verify"
WHAT = "gpunuma.verify() of a bound 20-thread process, numa_maps read included (real kernel, libnuma)"
TARGET = "< 2 ms"
LIMIT_NS = 2_000_000
CHILD = Path(__file__).resolve().parent.parent / "child_verify.py"
VERIFY = "verify()"
REPAIR = "verify(repair=True, include_narrowed=True), one thread put back"


def sample(budget: Budget, workdir: Path) -> Samples:
    argv = [sys.executable, str(CHILD), "--reps", str(budget.reps(300, 10)), "--warmup", "5"]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"verify child exited {done.returncode}: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["threads"] != 20 or result["verdict"] != "as_expected":
        raise RuntimeError(f"verify read {result['threads']} threads, verdict {result['verdict']}")
    series = {VERIFY: result["samples_ns"]}
    if result["repair_samples_ns"]:
        if result["repaired"] != len(result["repair_samples_ns"]):
            raise RuntimeError(f"{result['repaired']} repairs in {len(result['repair_samples_ns'])} calls")
        series[REPAIR] = result["repair_samples_ns"]
    return {"series": series, "info": {key: result[key] for key in ("threads", "pages", "mappings")}}


def run(ctx: Context) -> list[RowResult]:
    return [_result(tree, samples) for tree, samples in sample_trees(ctx, "verify", sample).items()]


def _result(tree: str, samples: Samples) -> RowResult:
    stats = {label: Stats.of(values) for label, values in samples["series"].items()}
    median = stats[VERIFY].median_ns
    info = samples["info"]
    repair = f"; putting one thread back {fmt_ns(stats[REPAIR].median_ns)}" if REPAIR in stats else ""
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=tuple(stats.items()),
        headline=f"median {fmt_ns(median)} ({info['mappings']} mappings, {info['pages']} pages read){repair}",
        verdict=verdict(median < LIMIT_NS),
        derived={"median_ns": median, **info},
        notes=("a fresh read of /proc/self/task/*/status and /proc/self/numa_maps each call",),
        tree=tree,
    )
