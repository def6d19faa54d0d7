"""``import gpunuma`` in a fresh interpreter, against a bare ``python -c pass``, alternated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness import Budget, RowResult, Stats, alternate, child_env, fmt_ns, timed_process, verdict

KEY = "import"
WHAT = "`import gpunuma` over bare `python -c pass` (subprocess, A B A B)"
TARGET = "< 30 ms added; ray and pynvml not imported"
LIMIT_NS = 30_000_000

#: Imported by the check child: the package and the modules ``bind_to_gpu`` pulls in.
_CHECK = (
    "import sys, json, gpunuma, gpunuma.api, gpunuma.core.planner, gpunuma.adapters.auto, gpunuma.adapters.libnuma;"
    "print(json.dumps([m for m in ('ray', 'pynvml') if m in sys.modules]))"
)


def heavy_modules_imported(python: str = sys.executable) -> list[str]:
    """Which of ray/pynvml a child has in ``sys.modules`` after importing gpunuma's binding path."""
    out = subprocess.run([python, "-c", _CHECK], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def run(budget: Budget, workdir: Path) -> RowResult:
    python = sys.executable
    env = child_env(workdir)
    uncached = {**env, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(workdir / "no-pycache")}
    sides = {
        "python -c pass": lambda: timed_process([python, "-c", "pass"], env),
        "python -c 'import gpunuma'": lambda: timed_process([python, "-c", "import gpunuma"], env),
        "python -c 'import gpunuma.api'": lambda: timed_process([python, "-c", "import gpunuma.api"], env),
        "python -c 'import gpunuma.api', no bytecode cache": lambda: timed_process(
            [python, "-c", "import gpunuma.api"], uncached
        ),
    }
    samples = alternate(sides, rounds=budget.reps(40, 4))
    stats = {label: Stats.of(s) for label, s in samples.items()}
    base, pkg, api, api_uncached = (stats[label].median_ns for label in sides)
    added = pkg - base
    heavy = heavy_modules_imported(python)
    met = added < LIMIT_NS and not heavy
    heavy_text = "ray, pynvml not imported" if not heavy else f"IMPORTED: {', '.join(heavy)}"
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=tuple(stats.items()),
        headline=f"+{fmt_ns(added)} (gpunuma.api: +{fmt_ns(api - base)}); {heavy_text}",
        verdict=verdict(met),
        derived={
            "added_ns": added,
            "api_added_ns": api - base,
            "api_uncached_added_ns": api_uncached - base,
            "heavy_modules_imported": heavy,
        },
        notes=(
            "children use a bytecode cache (as an installed wheel does); the last series recompiles every module",
            "the check child imports gpunuma, gpunuma.api, planner, topology.auto and binder.libnuma",
        ),
    )
