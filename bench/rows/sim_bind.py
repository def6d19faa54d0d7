"""A worker binding on a simulated machine: ``GPUNUMA_SIMULATE=dgx-h100 python -c 'import gpunuma;
gpunuma.bind_to_gpu(5)'`` from a wheel install, fresh process each time, against a bare ``python -c pass``.

The machine's kernel files are built in memory: the bind creates no file or folder (a check child counts every
``os.open`` with ``O_CREAT`` and every ``os.mkdir`` it makes, under a ``$TMPDIR`` of its own that must stay empty).
"""

from __future__ import annotations

import os
import subprocess

from harness import Context, ProcessTimes, RowResult, Tree, alternate_processes, cpu_stats, fmt_ns, wall_stats

KEY = "sim-bind"
WHAT = "fresh process `GPUNUMA_SIMULATE=dgx-h100` `bind_to_gpu(5)`, wheel install (CPU), files created"
TARGET = "<= 300 ms CPU; no file or folder created"
LIMIT_NS = 300_000_000
MACHINE = "dgx-h100"
BARE = "python -c pass"
BIND = f"GPUNUMA_SIMULATE={MACHINE} python -c 'import gpunuma; gpunuma.bind_to_gpu(5)'"
CODE = "import gpunuma; gpunuma.bind_to_gpu(5)"
#: Counts what the bind creates: every O_CREAT open and every mkdir, the package's and the fakes' alike.
CHECK = """
import os
made = []
real_open, real_mkdir = os.open, os.mkdir
def counted_open(path, flags, *args, **kwargs):
    if flags & os.O_CREAT:
        made.append(str(path))
    return real_open(path, flags, *args, **kwargs)
def counted_mkdir(path, *args, **kwargs):
    made.append(str(path))
    return real_mkdir(path, *args, **kwargs)
os.open, os.mkdir = counted_open, counted_mkdir
import gpunuma
report = gpunuma.bind_to_gpu(5, strict=True)
assert report.bound and report.plan.nodes == (1,), report.summary()
print(len(made))
"""


def _env(tree: Tree, tmpdir: str) -> dict[str, str]:
    return {**tree.env(), "GPUNUMA_SIMULATE": MACHINE, "TMPDIR": tmpdir}


def _created(tree: Tree, tmpdir: str) -> int:
    """Files and folders one bind creates (checked in a child of its own), plus what it left in ``tmpdir``."""
    done = subprocess.run([tree.python, "-c", CHECK], capture_output=True, text=True, env=_env(tree, tmpdir))
    if done.returncode != 0:
        raise RuntimeError(f"the simulated bind fails with the {tree.label} tree: {done.stderr[-2000:]}")
    return int(done.stdout.split()[-1]) + len(os.listdir(tmpdir))


def run(ctx: Context) -> list[RowResult]:
    tmpdirs = {tree.label: ctx.workdir / f"sim-bind-tmp-{tree.label}" for tree in ctx.trees}
    for folder in tmpdirs.values():
        folder.mkdir(exist_ok=True)
    created = {tree.label: _created(tree, str(tmpdirs[tree.label])) for tree in ctx.trees}
    sides: dict[str, tuple[list[str], dict[str, str]]] = {BARE: ([ctx.current.python, "-c", "pass"], ctx.current.env())}
    for tree in ctx.trees:
        sides[f"{BIND} [{tree.label}]"] = ([tree.python, "-c", CODE], _env(tree, str(tmpdirs[tree.label])))
    samples = alternate_processes(sides, rounds=ctx.budget.reps(20, 1), warmup=0 if ctx.budget.quick else 2)
    left = {label: len(os.listdir(folder)) for label, folder in tmpdirs.items()}
    return [_result(tree, samples, created[tree.label], left[tree.label]) for tree in ctx.trees]


def _result(tree: Tree, samples: dict[str, list[ProcessTimes]], created: int, left: int) -> RowResult:
    bare, bind = samples[BARE], samples[f"{BIND} [{tree.label}]"]
    bind_cpu = cpu_stats(bind)
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=(
            (f"{BARE} (CPU)", cpu_stats(bare)), (f"{BIND} (CPU)", bind_cpu), (f"{BIND} (wall)", wall_stats(bind))
        ),
        headline=(
            f"{fmt_ns(bind_cpu.median_ns)} CPU; {created} files/folders created by one bind, {left} left in $TMPDIR"
        ),
        verdict="met" if bind_cpu.median_ns <= LIMIT_NS and created == 0 and left == 0 else "missed",
        derived={"cpu_ns": bind_cpu.median_ns, "created": created, "left_in_tmpdir": left},
        notes=("CPU time (user + system) of each child from wait4; created: os.open(O_CREAT) and os.mkdir calls",),
        tree=tree.label,
    )
