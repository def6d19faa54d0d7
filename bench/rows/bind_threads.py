"""Binder.apply of a node-0 plan, read-back included, in a child holding 20 threads (real kernel)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness import Budget, Context, RowResult, Samples, Stats, fmt_ns, sample_trees, verdict

KEY = "bind"
WHAT = "bind + read-back, 20-thread process, real libnuma (LibnumaBinder.apply, plan for node 0)"
TARGET = "< 2 ms"
LIMIT_NS = 2_000_000
CHILD = Path(__file__).resolve().parent.parent / "child_bind.py"
LIBNUMA = "LibnumaBinder.apply"
SYSCALL = "SyscallBinder.apply (fallback)"


def _child(binder: str, budget: Budget) -> dict:
    # The child inherits this process's environment: under --compare, the tree on PYTHONPATH.
    argv = [sys.executable, str(CHILD), "--binder", binder, "--reps", str(budget.reps(300, 10)), "--warmup", "5"]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bind child ({binder}) exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def sample(budget: Budget, workdir: Path) -> Samples:
    results = {binder: _child(binder, budget) for binder in ("libnuma", "syscall")}
    for binder, result in results.items():
        if not result["bound"] or result["threads_read_back"] != 20:
            raise RuntimeError(f"{binder}: bound={result['bound']}, threads read back {result['threads_read_back']}")
    info = {key: results["libnuma"][key] for key in ("threads_read_back", "cpus", "memory_policy", "mismatches")}
    return {"series": {LIBNUMA: results["libnuma"]["samples_ns"], SYSCALL: results["syscall"]["samples_ns"]},
            "info": info}


def run(ctx: Context) -> list[RowResult]:
    return [_result(tree, samples) for tree, samples in sample_trees(ctx, "bind_threads", sample).items()]


def _result(tree: str, samples: Samples) -> RowResult:
    stats = {label: Stats.of(values) for label, values in samples["series"].items()}
    libnuma = stats[LIBNUMA].median_ns
    syscall = stats[SYSCALL].median_ns
    per_thread = libnuma / 20
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=((LIBNUMA, stats[LIBNUMA]), (SYSCALL, stats[SYSCALL])),
        headline=f"median {fmt_ns(libnuma)} ({fmt_ns(per_thread)}/thread); syscall binder {fmt_ns(syscall)}",
        verdict=verdict(libnuma < LIMIT_NS),
        derived={"median_ns": libnuma, "per_thread_ns": per_thread, "syscall_median_ns": syscall, **samples["info"]},
        notes=("the same plan is re-applied each time: every thread's affinity is set and read back each call",),
        tree=tree,
    )
