"""Moving a late-bound process's pages: ``bind_to_node(..., migrate=True)`` on 1 GiB touched on another node, in
GB/s of ``migrate_pages(2)``; on a one-node host nothing can move and the row says so."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from harness import Budget, Context, RowResult, Samples, Stats, fmt_ns, sample_trees

KEY = "migrate"
WHAT = "migrate=True after a bind: 1 GiB touched on one node moved to the other (migrate_pages), GB/s"
TARGET = "GB/s reported (on a host with 2+ memory nodes)"
CHILD = Path(__file__).resolve().parent.parent / "child_migrate.py"
CALL = "migrate_pages(2) of 1 GiB"
BIND = "bind_to_node(migrate=True), numa_maps before and after included"


def sample(budget: Budget, workdir: Path) -> Samples:
    argv = [sys.executable, str(CHILD), "--gib", "1", "--rounds", str(budget.reps(6, 2))]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"migrate child exited {done.returncode}: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rounds = result["rounds"]
    series = {
        CALL: [int(r["seconds"] * 1e9) for r in rounds],
        BIND: [int(r["bind_seconds"] * 1e9) for r in rounds],
    }
    return {"series": series, "info": {"nodes": result["nodes"], "rounds": rounds}}


def run(ctx: Context) -> list[RowResult]:
    return [_result(tree, samples) for tree, samples in sample_trees(ctx, "migrate", sample).items()]


def _result(tree: str, samples: Samples) -> RowResult:
    stats = {label: Stats.of(values) for label, values in samples["series"].items()}
    info = samples["info"]
    rounds = info["rounds"]
    rates = [r["pages_moved"] * r["page_size"] / r["seconds"] / 1e9 for r in rounds
             if r["pages_moved"] and r["seconds"]]
    moved = statistics.median(r["pages_moved"] for r in rounds)
    if len(info["nodes"]) < 2:
        headline = (f"one memory node (node {info['nodes'][0]}): nothing to move; migrate_pages returned in "
                    f"{fmt_ns(stats[CALL].median_ns)} over 1 GiB, {moved:.0f} pages moved")
        verdict = "reported"
        rate = None
    else:
        rate = statistics.median(rates) if rates else 0.0
        headline = (f"{rate:.2f} GB/s median (min {min(rates, default=0):.2f}, max {max(rates, default=0):.2f}); "
                    f"{moved:.0f} pages moved per round, local {rounds[-1]['local_before']:.0%} -> "
                    f"{rounds[-1]['local_after']:.0%}")
        verdict = "reported"
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=tuple(stats.items()),
        headline=headline,
        verdict=verdict,
        derived={"gb_per_s": rate, "nodes": info["nodes"], "rounds": rounds},
        notes=("GB = 10**9 bytes; pages moved from numa_maps before and after each call, base pages",),
        tree=tree,
    )
