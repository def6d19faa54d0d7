"""The README's test command (``python -m pytest``) on the tree's checkout: wall time of the whole suite, with
``$TMPDIR`` a fresh folder of its own that must be empty when the suite ends. Minutes of work, so ``--quick``
skips it; run it with ``--only suite``."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
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
    # A short path of its own, as /tmp is: Ray's socket paths below it must stay within 107 bytes.
    tmpdir = tempfile.mkdtemp(prefix="s-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUNUMA_", "PYTEST_"))}
    env.update(TMPDIR=tmpdir, PYTHONPATH=os.pathsep.join(tree.paths))
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    log = ctx.workdir / f"suite-{tree.label}.log"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter_ns()
    # Output to a file, not a pipe: a process the suite leaves behind (a Ray worker winding down) would hold a
    # pipe open and the time would be its, not the suite's.
    with open(log, "w") as out:
        done = subprocess.run(argv, cwd=tree.source, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter_ns() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = round((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1e9)
    output = log.read_text(errors="replace")
    left = sorted(os.listdir(tmpdir))
    shutil.rmtree(tmpdir, ignore_errors=True)
    summary = (output.strip().splitlines() or ["(no output)"])[-1]
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=(
            ("python -m pytest (wall)", Stats.of([wall])),
            ("python -m pytest (CPU of it and the processes it waited for)", Stats.of([cpu])),
        ),
        headline=f"{fmt_ns(wall)}; {summary}; {len(left)} entries left in $TMPDIR" + (
            f": {', '.join(left[:5])}" if left else ""
        ),
        verdict="met" if wall <= LIMIT_NS and not left and done.returncode == 0 else "missed",
        derived={
            "wall_ns": wall, "cpu_ns": cpu, "returncode": done.returncode, "left_in_tmpdir": left, "summary": summary
        },
        notes=("one run: the suite is its own repetition (~1,700 tests)",),
        tree=tree.label,
    )
