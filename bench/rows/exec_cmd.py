"""``gpunuma exec --node 0 -- true`` (the console script of a wheel install) against a bare interpreter start
(``python -c pass``, the floor of any Python launcher); CPU time of each, alternated, compared round by round.

``numactl --cpunodebind=0 --preferred=0 true`` is timed beside them for scale. Every side includes ``true``.
"""

from __future__ import annotations

import shutil

from harness import (
    Context,
    ProcessTimes,
    RowResult,
    Tree,
    alternate_processes,
    cpu_stats,
    fmt_ns,
    paired_difference_ns,
    paired_ratio,
    skipped,
    verdict,
)

KEY = "exec"
WHAT = "`gpunuma exec --node 0 -- true` against `python -c pass`, numactl beside them (CPU, paired)"
TARGET = "<= +60 ms CPU over python -c pass"
LIMIT_NS = 60_000_000
NUMACTL = "numactl --cpunodebind=0 --preferred=0 true"
BARE = "python -c pass (the floor of a Python launcher)"
EXEC = "gpunuma exec --node 0 -- true"


def run(ctx: Context) -> list[RowResult]:
    numactl = shutil.which("numactl")
    true = shutil.which("true")
    if numactl is None or true is None:
        return [skipped(KEY, WHAT, TARGET, "numactl not installed", tree=tree.label) for tree in ctx.trees]
    sides: dict[str, tuple[list[str], dict[str, str]]] = {
        NUMACTL: ([numactl, "--cpunodebind=0", "--preferred=0", true], ctx.current.env()),
        BARE: ([ctx.current.python, "-c", "pass"], ctx.current.env()),
    }
    for tree in ctx.trees:
        sides[f"{EXEC} [{tree.label}]"] = ([tree.script("gpunuma"), "exec", "--node", "0", "--", true], tree.env())
    samples = alternate_processes(sides, rounds=ctx.budget.reps(40, 4))
    return [_result(tree, samples) for tree in ctx.trees]


def _result(tree: Tree, samples: dict[str, list[ProcessTimes]]) -> RowResult:
    launched, bare, bound = samples[NUMACTL], samples[BARE], samples[f"{EXEC} [{tree.label}]"]
    added = paired_difference_ns(bound, bare)
    ratio = paired_ratio(bound, launched)
    floor = paired_ratio(bare, launched)
    stats = {NUMACTL: cpu_stats(launched), BARE: cpu_stats(bare), EXEC: cpu_stats(bound)}
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=tuple((f"{label} (CPU)", s) for label, s in stats.items()),
        headline=(
            f"bare python +{fmt_ns(added)} (CPU, paired); {ratio:.2f}x numactl, "
            f"where a bare interpreter alone is {floor:.2f}x"
        ),
        verdict=verdict(added <= LIMIT_NS),
        derived={
            "added_cpu_ns_paired": added,
            "ratio_cpu_paired": ratio,
            "floor_ratio_cpu_paired": floor,
            "over_bare_cpu_ns": stats[EXEC].median_ns - stats[BARE].median_ns,
        },
        notes=("pip's console script (it imports re) runs `gpunuma.tools.cli:main`, which binds in-process and execs",),
        tree=tree.label,
    )
