"""plan_binding for one GPU on the dgx-h100 topology (pure: no I/O)."""

from __future__ import annotations

from pathlib import Path

from compat import load
from harness import Budget, Context, RowResult, Samples, Stats, fmt_ns, sample_trees, time_batched, verdict

from rows.machines import rendered

KEY = "plan"
WHAT = "plan for one GPU (plan_binding on the dgx-h100 topology)"
TARGET = "< 100 µs"
LIMIT_NS = 100_000


def prepare(workdir: Path) -> None:
    """Render the simulated trees this row reads (``--compare``: once, by this checkout, for every tree)."""
    rendered("dgx-h100", workdir)


def sample(budget: Budget, workdir: Path) -> Samples:
    _, root = rendered("dgx-h100", workdir)
    plan_binding = load("plan_binding")
    source = load("SysfsTopology")(root=root)
    topology, allowed = source.read(), source.allowed()
    plan = plan_binding(topology, [5], allowed)
    assert plan.nodes == (1,), f"GPU 5 of a DGX H100 is on node 1, planned {plan.nodes}"
    series = {}
    for gpu in (0, 5):
        series[f"GPU {gpu} (node {0 if gpu < 4 else 1}), mean of a batch per sample"] = time_batched(
            lambda gpu=gpu: plan_binding(topology, [gpu], allowed),
            reps=budget.reps(200, 10),
            batch=5 if budget.quick else 20,
            warmup=budget.reps(50, 5),
        )
    return {"series": series}


def run(ctx: Context) -> list[RowResult]:
    return [_result(tree, samples) for tree, samples in sample_trees(ctx, "plan", sample).items()]


def _result(tree: str, samples: Samples) -> RowResult:
    series = {label: Stats.of(values) for label, values in samples["series"].items()}
    worst = max(s.median_ns for s in series.values())
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=tuple(series.items()),
        headline=f"median {fmt_ns(worst)}",
        verdict=verdict(worst < LIMIT_NS),
        derived={"median_ns": worst},
        tree=tree,
    )
