"""A Python child that binds itself (``bind_to_node(0)``) against the same child started by ``numactl``."""

from __future__ import annotations

import shutil

from harness import Context, ProcessTimes, RowResult, Tree, alternate_processes, fmt_ns, skipped, wall_stats

KEY = "numactl"
WHAT = "in-process bind_to_node(0) child vs `numactl --cpunodebind=0 --preferred=0 python -c pass` (A B A B)"
TARGET = "ratio reported"
BARE = "python -c pass (bare, for reference)"
AUTO = "python -c 'bind_to_node(0)' (default source)"
SYSFS = "python -c 'bind_to_node(0, source=sysfs)'"
LAUNCHED = "numactl --cpunodebind=0 --preferred=0 python -c pass"
#: strict=True makes a binding that did not happen fail the child, so only real binds are timed.
_IN_PROCESS = "from gpunuma import bind_to_node; bind_to_node(0, strict=True)"
_IN_PROCESS_SYSFS = "from gpunuma import bind_to_node; bind_to_node(0, source='sysfs', strict=True)"


def run(ctx: Context) -> list[RowResult]:
    numactl = shutil.which("numactl")
    if numactl is None:
        return [skipped(KEY, WHAT, TARGET, "numactl not installed", tree=tree.label) for tree in ctx.trees]
    python, env = ctx.current.python, ctx.current.env()
    sides: dict[str, tuple[list[str], dict[str, str]]] = {
        BARE: ([python, "-c", "pass"], env),
        LAUNCHED: ([numactl, "--cpunodebind=0", "--preferred=0", python, "-c", "pass"], env),
    }
    for tree in ctx.trees:
        sides[f"{AUTO} [{tree.label}]"] = ([tree.python, "-c", _IN_PROCESS], tree.env())
        sides[f"{SYSFS} [{tree.label}]"] = ([tree.python, "-c", _IN_PROCESS_SYSFS], tree.env())
    samples = alternate_processes(sides, rounds=ctx.budget.reps(30, 3))
    return [_result(tree, samples) for tree in ctx.trees]


def _result(tree: Tree, samples: dict[str, list[ProcessTimes]]) -> RowResult:
    def mine(label: str) -> list[ProcessTimes]:
        return samples[label if label in (BARE, LAUNCHED) else f"{label} [{tree.label}]"]

    stats = {label: wall_stats(mine(label)) for label in (BARE, AUTO, SYSFS, LAUNCHED)}
    bare, auto, sysfs, launched = (s.median_ns for s in stats.values())
    ratio = auto / launched
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=tuple(stats.items()),
        headline=(
            f"in-process/numactl {ratio:.2f}x (sysfs source {sysfs / launched:.2f}x); "
            f"binding adds {fmt_ns(auto - bare)} in-process, numactl adds {fmt_ns(launched - bare)}"
        ),
        verdict="reported",
        derived={
            "ratio_in_process_over_numactl": ratio,
            "ratio_sysfs_source_over_numactl": sysfs / launched,
            "in_process_added_ns": auto - bare,
            "sysfs_source_added_ns": sysfs - bare,
            "numactl_added_ns": launched - bare,
        },
        notes=(
            "wall time; numactl binds only the process it execs; the in-process bind also reads back every thread",
            "children run a wheel install (bytecode compiled at install)",
        ),
        tree=tree.label,
    )
