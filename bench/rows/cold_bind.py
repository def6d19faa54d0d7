"""A cold bind: ``python -c 'import gpunuma; gpunuma.bind_to_node(0)'`` from a wheel install, against a bare
``python -c pass`` of the same interpreter; CPU time of each child, alternated, compared round by round."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness import (
    Context,
    ProcessTimes,
    RowResult,
    Tree,
    alternate_processes,
    cpu_stats,
    fmt_ns,
    paired_ratio,
    wall_stats,
)

KEY = "cold"
WHAT = "cold `import gpunuma; gpunuma.bind_to_node(0)` against bare `python -c pass`, wheel install (CPU, paired)"
#: Reported, not judged: a worker that binds has already imported far more than the bind does
#: (the `ray` and `exec` rows hold the targets users feel).
TARGET = "reported"
BARE = "python -c pass"
BIND = "python -c 'import gpunuma; gpunuma.bind_to_node(0)'"
CODE = "import gpunuma; gpunuma.bind_to_node(0)"
FLOOR = "floor: python -c 'import ctypes; sched_setaffinity; set_mempolicy'"
#: The floor of any Python binder: the interpreter, ctypes (set_mempolicy has no os wrapper) and the calls.
FLOOR_CODE = (
    "import ctypes, os; os.sched_setaffinity(0, os.sched_getaffinity(0)); "
    "libc = ctypes.CDLL(None, use_errno=True); mask = (ctypes.c_ulong * 16)(1); "
    "libc.syscall({'x86_64': 238, 'aarch64': 237}[os.uname().machine], 1, mask, 1024)"  # MPOL_PREFERRED, node 0
)


#: The layout's share of the floor: as many modules as the bind imports, each empty but for its future import.
MODULES = "floor + {count} empty modules (as many as the bind imports)"


def _module_count(tree: Tree) -> int:
    """How many of the tree's own modules a cold ``bind_to_node(0)`` imports."""
    code = "import sys, gpunuma; gpunuma.bind_to_node(0); print(sum(n.split('.')[0] == 'gpunuma' for n in sys.modules))"
    done = subprocess.run([tree.python, "-c", code], capture_output=True, text=True, env=tree.env(), check=True)
    return int(done.stdout.split()[-1])


def _empty_modules(tree: Tree, count: int, workdir: Path) -> tuple[list[str], dict[str, str]]:
    """A command importing ``count`` empty modules of one package after the floor's work, byte-compiled first."""
    folder = workdir / f"empty-modules-{tree.label}"
    package = folder / "emptypkg"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("from __future__ import annotations\n")
    for number in range(1, count):
        (package / f"m{number}.py").write_text("from __future__ import annotations\n")
    subprocess.run([tree.python, "-m", "compileall", "-q", str(folder)], check=True, env=tree.env())
    names = ", ".join(f"emptypkg.m{number}" for number in range(1, count)) or "emptypkg"
    env = tree.env()
    env["PYTHONPATH"] = str(folder)
    return [tree.python, "-c", f"{FLOOR_CODE}; import {names}"], env


def _check(tree: Tree) -> None:
    """The timed command really binds on this host (strict: a failure raises in the child)."""
    code = "import gpunuma; report = gpunuma.bind_to_node(0, strict=True); assert report.bound, report.summary()"
    done = subprocess.run([tree.python, "-c", code], capture_output=True, text=True, env=tree.env())
    if done.returncode != 0:
        raise RuntimeError(f"bind_to_node(0) does not bind with the {tree.label} tree: {done.stderr[-2000:]}")


def run(ctx: Context) -> list[RowResult]:
    for tree in ctx.trees:
        _check(tree)
    sides: dict[str, tuple[list[str], dict[str, str]]] = {
        BARE: ([ctx.current.python, "-c", "pass"], ctx.current.env()),
        FLOOR: ([ctx.current.python, "-c", FLOOR_CODE], ctx.current.env()),
    }
    counts = {tree.label: _module_count(tree) for tree in ctx.trees}
    for tree in ctx.trees:
        sides[f"{BIND} [{tree.label}]"] = ([tree.python, "-c", CODE], tree.env())
        sides[f"{MODULES} [{tree.label}]"] = _empty_modules(tree, counts[tree.label], ctx.workdir)
    samples = alternate_processes(sides, rounds=ctx.budget.reps(40, 4))
    return [_result(tree, samples, counts[tree.label]) for tree in ctx.trees]


def _result(tree: Tree, samples: dict[str, list[ProcessTimes]], count: int) -> RowResult:
    bare, bind, floor = samples[BARE], samples[f"{BIND} [{tree.label}]"], samples[FLOOR]
    modules = samples[f"{MODULES} [{tree.label}]"]
    ratio = paired_ratio(bind, bare)
    bare_cpu, bind_cpu, floor_cpu = cpu_stats(bare), cpu_stats(bind), cpu_stats(floor)
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=(
            (f"{BARE} (CPU)", bare_cpu),
            (f"{FLOOR} (CPU)", floor_cpu),
            (f"{MODULES.format(count=count)} (CPU)", cpu_stats(modules)),
            (f"{BIND} (CPU)", bind_cpu),
            (f"{BIND} (wall)", wall_stats(bind)),
        ),
        headline=(
            f"{ratio:.2f}x bare python (CPU, paired); +{fmt_ns(bind_cpu.median_ns - bare_cpu.median_ns)}; "
            f"floor {paired_ratio(floor, bare):.2f}x, with {count} empty modules {paired_ratio(modules, bare):.2f}x"
        ),
        verdict="reported",
        derived={
            "ratio_cpu_paired": ratio,
            "added_cpu_ns": bind_cpu.median_ns - bare_cpu.median_ns,
            "bare_cpu_ns": bare_cpu.median_ns,
            "bare_wall_ns": wall_stats(bare).median_ns,
            "floor_ratio_cpu_paired": paired_ratio(floor, bare),
            "modules_imported": count,
            "empty_modules_ratio_cpu_paired": paired_ratio(modules, bare),
        },
        notes=("CPU time (user + system) from wait4; the ratio is the median of the per-round ratios",),
        tree=tree.label,
    )
