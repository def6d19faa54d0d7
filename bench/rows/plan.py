"""plan_binding for one GPU on the dgx-h100 topology (pure: no I/O)."""

from __future__ import annotations

from pathlib import Path

from harness import Budget, RowResult, Stats, fmt_ns, time_batched, verdict

from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.planner import plan_binding
from rows.machines import rendered

KEY = "plan"
WHAT = "plan for one GPU (plan_binding on the dgx-h100 topology)"
TARGET = "< 100 µs"
LIMIT_NS = 100_000


def run(budget: Budget, workdir: Path) -> RowResult:
    _, root = rendered("dgx-h100", workdir)
    source = SysfsTopology(root=root)
    topology, allowed = source.read(), source.allowed()
    plan = plan_binding(topology, [5], allowed)
    assert plan.nodes == (1,), f"GPU 5 of a DGX H100 is on node 1, planned {plan.nodes}"
    series = []
    for gpu in (0, 5):
        samples = time_batched(
            lambda gpu=gpu: plan_binding(topology, [gpu], allowed),
            reps=budget.reps(200, 10),
            batch=budget.reps(20, 5),
            warmup=budget.reps(50, 5),
        )
        series.append((f"GPU {gpu} (node {0 if gpu < 4 else 1}), mean of a batch per sample", Stats.of(samples)))
    worst = max(s.median_ns for _, s in series)
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=tuple(series),
        headline=f"median {fmt_ns(worst)}",
        verdict=verdict(worst < LIMIT_NS),
        derived={"median_ns": worst},
    )
