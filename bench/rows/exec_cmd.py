"""``gpunuma exec --node 0 -- true`` (the console script of a wheel install) against
``numactl --cpunodebind=0 --preferred=0 true``; CPU time of each, alternated, compared round by round.

Both sides include ``true`` itself. A bare interpreter start (``python -c pass``) is timed beside them: it is
the floor of any Python launcher, and on its own already several times numactl (a small C program).
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
    paired_ratio,
    skipped,
    verdict,
)

KEY = "exec"
WHAT = "`gpunuma exec --node 0 -- true` against `numactl --cpunodebind=0 --preferred=0 true` (CPU, paired)"
TARGET = "<= 1.5x numactl (CPU time)"
LIMIT = 1.5
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
    ratio = paired_ratio(bound, launched)
    floor = paired_ratio(bare, launched)
    stats = {NUMACTL: cpu_stats(launched), BARE: cpu_stats(bare), EXEC: cpu_stats(bound)}
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=tuple((f"{label} (CPU)", s) for label, s in stats.items()),
        headline=(
            f"{ratio:.2f}x numactl (CPU, paired); a bare interpreter alone is {floor:.2f}x; "
            f"gpunuma exec = bare python +{fmt_ns(stats[EXEC].median_ns - stats[BARE].median_ns)}"
        ),
        verdict=verdict(ratio <= LIMIT),
        derived={
            "ratio_cpu_paired": ratio,
            "floor_ratio_cpu_paired": floor,
            "over_bare_cpu_ns": stats[EXEC].median_ns - stats[BARE].median_ns,
        },
        notes=("pip's console script (it imports re) runs `gpunuma.tools.cli:main`, which binds in-process and execs",),
        tree=tree.label,
    )
