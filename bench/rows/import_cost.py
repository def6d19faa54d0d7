"""``import gpunuma`` and ``import gpunuma.api`` (what binding imports) in a fresh interpreter of a wheel install,
against a bare ``python -c pass`` of the same interpreter, alternated; CPU time of each child."""

from __future__ import annotations

import json
import subprocess

from harness import (
    Context,
    ProcessTimes,
    RowResult,
    Tree,
    alternate_processes,
    cpu_stats,
    fmt_ns,
    verdict,
    wall_stats,
)

KEY = "import"
WHAT = "`import gpunuma.api` over bare `python -c pass`, wheel install (CPU time, A B A B)"
TARGET = "`import gpunuma.api` < +10 ms; ray and pynvml not imported"
LIMIT_NS = 10_000_000
BARE = "python -c pass"
PACKAGE = "python -c 'import gpunuma'"
API = "python -c 'import gpunuma.api'"
UNCACHED = "python -c 'import gpunuma.api', no bytecode"

#: Imported by the check child: the package and the modules ``bind_to_gpu`` pulls in.
_CHECK = (
    "import sys, json, gpunuma, gpunuma.api;"
    "gpunuma.api.plan_for(node=0);"
    "print(json.dumps([m for m in ('ray', 'pynvml') if m in sys.modules]))"
)


def heavy_modules_imported(tree: Tree) -> list[str]:
    """Which of ray/pynvml a child of ``tree``'s install has in ``sys.modules`` after importing and planning."""
    out = subprocess.run([tree.python, "-c", _CHECK], capture_output=True, text=True, check=True, env=tree.env())
    return json.loads(out.stdout)


def run(ctx: Context) -> list[RowResult]:
    uncached_prefix = str(ctx.workdir / "no-pycache")
    sides: dict[str, tuple[list[str], dict[str, str]]] = {BARE: ([ctx.current.python, "-c", "pass"], ctx.current.env())}
    for tree in ctx.trees:
        env = tree.env()
        # A bytecode prefix hides the install's __pycache__ and writes nothing: every module is compiled.
        uncached = {**env, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": uncached_prefix}
        sides[f"{PACKAGE} [{tree.label}]"] = ([tree.python, "-c", "import gpunuma"], env)
        sides[f"{API} [{tree.label}]"] = ([tree.python, "-c", "import gpunuma.api"], env)
        sides[f"{UNCACHED} [{tree.label}]"] = ([tree.python, "-c", "import gpunuma.api"], uncached)
    samples = alternate_processes(sides, rounds=ctx.budget.reps(40, 4))
    return [_result(tree, samples) for tree in ctx.trees]


def _result(tree: Tree, samples: dict[str, list[ProcessTimes]]) -> RowResult:
    def mine(label: str) -> list[ProcessTimes]:
        return samples[label if label == BARE else f"{label} [{tree.label}]"]

    stats = {label: cpu_stats(mine(label)) for label in (BARE, PACKAGE, API, UNCACHED)}
    base, package, api, uncached = (s.median_ns for s in stats.values())
    heavy = heavy_modules_imported(tree)
    heavy_text = "ray, pynvml not imported" if not heavy else f"IMPORTED: {', '.join(heavy)}"
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=tuple(stats.items()),
        headline=f"gpunuma.api +{fmt_ns(api - base)} (gpunuma +{fmt_ns(package - base)}); {heavy_text}",
        verdict=verdict(api - base < LIMIT_NS and not heavy),
        derived={
            "added_ns": package - base,
            "api_added_ns": api - base,
            "api_uncached_added_ns": uncached - base,
            "bare_wall_ns": wall_stats(mine(BARE)).median_ns,
            "heavy_modules_imported": heavy,
        },
        notes=(
            "CPU time (user + system) of each child from wait4; medians",
            "a wheel install: packages compiled in site-packages; the last series compiles every module instead",
            "the check child imports gpunuma and gpunuma.api and plans node 0",
        ),
        tree=tree.label,
    )
