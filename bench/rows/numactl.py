"""A child that binds itself in-process (``bind_to_node(0)``) against the same child under ``numactl``."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from harness import Budget, RowResult, Stats, alternate, child_env, fmt_ns, skipped, timed_process

KEY = "numactl"
WHAT = "in-process bind_to_node(0) child vs `numactl --cpunodebind=0 --preferred=0 python -c pass` (A B A B)"
TARGET = "ratio reported"
#: strict=True makes a binding that did not happen fail the child, so only real binds are timed.
_IN_PROCESS = "from gpunuma import bind_to_node; bind_to_node(0, strict=True)"
_IN_PROCESS_SYSFS = "from gpunuma import bind_to_node; bind_to_node(0, source='sysfs', strict=True)"


def run(budget: Budget, workdir: Path) -> RowResult:
    numactl = shutil.which("numactl")
    if numactl is None:
        return skipped(KEY, WHAT, TARGET, "numactl not installed")
    python = sys.executable
    env = child_env(workdir)
    sides = {
        "python -c pass (bare, for reference)": lambda: timed_process([python, "-c", "pass"], env),
        "python -c 'bind_to_node(0)' (default source)": lambda: timed_process([python, "-c", _IN_PROCESS], env),
        "python -c 'bind_to_node(0, source=sysfs)'": lambda: timed_process([python, "-c", _IN_PROCESS_SYSFS], env),
        "numactl --cpunodebind=0 --preferred=0 python -c pass": lambda: timed_process(
            [numactl, "--cpunodebind=0", "--preferred=0", python, "-c", "pass"], env
        ),
    }
    samples = alternate(sides, rounds=budget.reps(30, 3))
    stats = {label: Stats.of(s) for label, s in samples.items()}
    bare, auto, sysfs, launched = (stats[label].median_ns for label in sides)
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
            "numactl binds only the process it execs; the in-process bind also reads back every thread",
            "children use a bytecode cache (as an installed wheel does)",
        ),
    )
