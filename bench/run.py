"""The gpunuma bench in one command: ``python bench/run.py [--quick] [--json out.json] [--only ROW]``.

Runs every row (or the ``--only`` ones) side by side in one process, prints a table of
n / min / median / max per series with each row's headline and verdict, and writes the same as JSON.
Exit status 1 when a row errored; missed targets are reported, not fatal.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Budget, RowResult, fmt_ns  # noqa: E402
from rows import ORDER  # noqa: E402


def _modules() -> dict[str, object]:
    """Row key -> module, in table order."""
    modules = [importlib.import_module(f"rows.{name}") for name in ORDER]
    return {module.KEY: module for module in modules}


def _errored(module: object, err: BaseException) -> RowResult:
    return RowResult(
        key=module.KEY,  # type: ignore[attr-defined]
        what=module.WHAT,  # type: ignore[attr-defined]
        target=module.TARGET,  # type: ignore[attr-defined]
        series=(),
        headline=f"{type(err).__name__}: {err}",
        verdict="error",
        notes=tuple(traceback.format_exception(err)[-3:]),
    )


def render_table(results: Sequence[RowResult]) -> str:
    """A markdown table: one line per series, the row's headline and verdict on its first line."""
    lines = [
        "| row | series | n | min | median | max | result | target | verdict |",
        "|---|---|---:|---:|---:|---:|---|---|---|",
    ]
    for result in results:
        series = result.series or (("-", None),)
        for i, (label, stats) in enumerate(series):
            cells = (
                [str(stats.n), fmt_ns(stats.min_ns), fmt_ns(stats.median_ns), fmt_ns(stats.max_ns)]
                if stats is not None
                else ["-", "-", "-", "-"]
            )
            head = [result.key, label] if i == 0 else ["", label]
            tail = [result.headline, result.target, result.verdict] if i == 0 else ["", "", ""]
            lines.append("| " + " | ".join([*head, *cells, *tail]) + " |")
    return "\n".join(lines)


def environment(quick: bool) -> dict[str, object]:
    """Where and when the numbers were taken."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except OSError:
        allowed = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus_online": os.cpu_count(),
        "cpus_allowed": allowed,
        "load_average": list(os.getloadavg()),
        "quick": quick,
    }


def main(argv: Sequence[str] | None = None) -> int:
    modules = _modules()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions: the whole run in under ~1 minute")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--only", action="append", choices=sorted(modules), help="run only this row (repeatable)")
    args = parser.parse_args(argv)

    budget = Budget(quick=args.quick)
    chosen = [modules[key] for key in modules if not args.only or key in args.only]
    results: list[RowResult] = []
    elapsed: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="gpunuma-bench-") as workdir:
        for module in chosen:
            print(f"running {module.KEY}: {module.WHAT}", file=sys.stderr, flush=True)  # type: ignore[attr-defined]
            started = time.perf_counter()
            try:
                result = module.run(budget, Path(workdir))  # type: ignore[attr-defined]
            except Exception as err:  # a broken row must not hide the others' numbers
                result = _errored(module, err)
            results.append(result)
            elapsed[result.key] = round(time.perf_counter() - started, 2)
    env = environment(args.quick)
    print(
        f"gpunuma bench, {env['date']}, Python {env['python']}, "
        f"{env['cpus_allowed']} CPUs, load {env['load_average']}"
    )
    print(render_table(results))
    if args.json is not None:
        payload = {
            "environment": env,
            "rows": [{**result.as_dict(), "row_seconds": elapsed[result.key]} for result in results],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if any(result.verdict == "error" for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
