"""Binder.apply of a node-0 plan, read-back included, in a child holding 20 threads (real kernel)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness import Budget, RowResult, Stats, fmt_ns, verdict

KEY = "bind"
WHAT = "bind + read-back, 20-thread process, real libnuma (LibnumaBinder.apply, plan for node 0)"
TARGET = "< 2 ms"
LIMIT_NS = 2_000_000
CHILD = Path(__file__).resolve().parent.parent / "child_bind.py"


def _child(binder: str, budget: Budget) -> dict:
    argv = [sys.executable, str(CHILD), "--binder", binder, "--reps", str(budget.reps(300, 10)), "--warmup", "5"]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bind child ({binder}) exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(budget: Budget, workdir: Path) -> RowResult:
    results = {binder: _child(binder, budget) for binder in ("libnuma", "syscall")}
    for binder, result in results.items():
        if not result["bound"] or result["threads_read_back"] != 20:
            raise RuntimeError(f"{binder}: bound={result['bound']}, threads read back {result['threads_read_back']}")
    stats = {binder: Stats.of(result["samples_ns"]) for binder, result in results.items()}
    libnuma = stats["libnuma"].median_ns
    per_thread = libnuma / 20
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=(("LibnumaBinder.apply", stats["libnuma"]), ("SyscallBinder.apply (fallback)", stats["syscall"])),
        headline=(
            f"median {fmt_ns(libnuma)} ({fmt_ns(per_thread)}/thread); "
            f"syscall binder {fmt_ns(stats['syscall'].median_ns)}"
        ),
        verdict=verdict(libnuma < LIMIT_NS),
        derived={
            "median_ns": libnuma,
            "per_thread_ns": per_thread,
            "syscall_median_ns": stats["syscall"].median_ns,
            "threads_read_back": results["libnuma"]["threads_read_back"],
            "cpus": results["libnuma"]["cpus"],
            "memory_policy": results["libnuma"]["memory_policy"],
            "mismatches": results["libnuma"]["mismatches"],
        },
        notes=("the same plan is re-applied each time: every thread's affinity is set and read back each call",),
    )
