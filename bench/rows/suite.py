"""The README's test command (``python -m pytest``) on the tree's checkout: wall time of the whole suite, with
``$TMPDIR`` a fresh folder of its own that must be empty when the suite ends. Minutes of work, so ``--quick``
skips it; run it with ``--only suite``."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from harness import Context, RowResult, Stats, Tree, fmt_ns, skipped

KEY = "suite"
WHAT = "the README's test command, `python -m pytest`, whole suite (wall), and what it leaves in $TMPDIR"
TARGET = "<= 3 min wall on the 2-core CI VM; nothing left in $TMPDIR"
LIMIT_NS = 180_000_000_000


def run(ctx: Context) -> list[RowResult]:
    if ctx.budget.quick:
        why = "the whole suite takes minutes (--only suite)"
        return [skipped(KEY, WHAT, TARGET, why, tree=tree.label) for tree in ctx.trees]
    return [_run_suite(ctx, tree) for tree in ctx.trees]


def _run_suite(ctx: Context, tree: Tree) -> RowResult:
    tmpdir = ctx.workdir / f"suite-tmp-{tree.label}"
    tmpdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUNUMA_", "PYTEST_"))}
    env.update(TMPDIR=str(tmpdir), PYTHONPATH=os.pathsep.join(tree.paths))
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    start = time.perf_counter_ns()
    done = subprocess.run(argv, cwd=tree.source, env=env, capture_output=True, text=True)
    wall = time.perf_counter_ns() - start
    left = sorted(os.listdir(tmpdir))
    summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=(("python -m pytest (wall)", Stats.of([wall])),),
        headline=f"{fmt_ns(wall)}; {summary}; {len(left)} entries left in $TMPDIR" + (
            f": {', '.join(left[:5])}" if left else ""
        ),
        verdict="met" if wall <= LIMIT_NS and not left and done.returncode == 0 else "missed",
        derived={"wall_ns": wall, "returncode": done.returncode, "left_in_tmpdir": left, "summary": summary},
        notes=("one run: the suite is its own repetition (~1,700 tests)",),
        tree=tree.label,
    )
