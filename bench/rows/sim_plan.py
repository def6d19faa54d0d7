"""``gpunuma plan --simulate dgx-h100 --gpu 5`` against ``gpunuma plan`` on this host (the console script of a
wheel install): CPU time of each, alternated, compared round by round."""

from __future__ import annotations

from harness import Context, ProcessTimes, RowResult, Tree, alternate_processes, cpu_stats, fmt_ns, paired_ratio

KEY = "sim-plan"
WHAT = "`gpunuma plan --simulate dgx-h100 --gpu 5` against `gpunuma plan` (CPU, paired)"
TARGET = "<= 2x gpunuma plan"
LIMIT = 2.0
PLAN = "gpunuma plan"
SIMULATED = "gpunuma plan --simulate dgx-h100 --gpu 5"


def run(ctx: Context) -> list[RowResult]:
    sides: dict[str, tuple[list[str], dict[str, str]]] = {}
    for tree in ctx.trees:
        script = tree.script("gpunuma")
        sides[f"{PLAN} [{tree.label}]"] = ([script, "plan"], tree.env())
        sides[f"{SIMULATED} [{tree.label}]"] = ([script, "plan", "--simulate", "dgx-h100", "--gpu", "5"], tree.env())
    samples = alternate_processes(sides, rounds=ctx.budget.reps(20, 1), warmup=0 if ctx.budget.quick else 2)
    return [_result(tree, samples) for tree in ctx.trees]


def _result(tree: Tree, samples: dict[str, list[ProcessTimes]]) -> RowResult:
    plan, simulated = samples[f"{PLAN} [{tree.label}]"], samples[f"{SIMULATED} [{tree.label}]"]
    ratio = paired_ratio(simulated, plan)
    plan_cpu, simulated_cpu = cpu_stats(plan), cpu_stats(simulated)
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=((f"{PLAN} (CPU)", plan_cpu), (f"{SIMULATED} (CPU)", simulated_cpu)),
        headline=f"{ratio:.2f}x gpunuma plan (CPU, paired); +{fmt_ns(simulated_cpu.median_ns - plan_cpu.median_ns)}",
        verdict="met" if ratio <= LIMIT else "missed",
        derived={
            "ratio_cpu_paired": ratio, "plan_cpu_ns": plan_cpu.median_ns, "simulated_cpu_ns": simulated_cpu.median_ns
        },
        notes=("CPU time (user + system) from wait4; the ratio is the median of the per-round ratios",),
        tree=tree.label,
    )
