"""The gpunuma bench in one command: ``python bench/run.py [ROW ...] [--quick] [--json out.json] [--compare OLD]``.

Runs every row (or the ones named, as arguments or with ``--only``), prints a table of n / min / median / max
per series with each row's headline and verdict, and writes the same as JSON. ``--compare OLD`` also measures
the checkout at ``OLD`` (an older gpunuma tree), alternating the two trees inside each row, and prints a
before/after table. Exit status 1 when a row errored; missed targets are reported, not fatal.
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

from harness import Budget, Context, RowResult, Tree, fmt_ns  # noqa: E402
from rows import ORDER  # noqa: E402
from trees import install  # noqa: E402

#: The checkout this bench belongs to: the "current" tree.
CURRENT = Path(__file__).resolve().parent.parent


def _modules() -> dict[str, object]:
    """Row key -> module, in table order."""
    modules = [importlib.import_module(f"rows.{name}") for name in ORDER]
    return {module.KEY: module for module in modules}


def _errored(module: object, err: BaseException, tree: str) -> RowResult:
    return RowResult(
        key=module.KEY,  # type: ignore[attr-defined]
        what=module.WHAT,  # type: ignore[attr-defined]
        target=module.TARGET,  # type: ignore[attr-defined]
        series=(),
        headline=f"{type(err).__name__}: {err}",
        verdict="error",
        notes=tuple(traceback.format_exception(err)[-3:]),
        tree=tree,
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


def render_comparison(results: Sequence[RowResult], before: str, after: str) -> str:
    """Before/after medians of every series of every row, and each row's headline on each side."""
    lines = [
        f"| row | series | {before} median | {after} median | {after}/{before} | {before} result | {after} result |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    by_tree = {(r.key, r.tree): r for r in results}
    keys = list(dict.fromkeys(r.key for r in results))
    for key in keys:
        old, new = by_tree.get((key, before)), by_tree.get((key, after))
        if old is None or new is None:
            continue
        old_series = dict(old.series)
        labels = [label for label, _ in new.series] or ["-"]
        for i, label in enumerate(labels):
            new_stats = dict(new.series).get(label)
            old_stats = old_series.get(label)
            cells = ["-", "-", "-"]
            if new_stats is not None and old_stats is not None:
                ratio = new_stats.median_ns / old_stats.median_ns
                cells = [fmt_ns(old_stats.median_ns), fmt_ns(new_stats.median_ns), f"{ratio:.2f}"]
            elif new_stats is not None:
                cells = ["-", fmt_ns(new_stats.median_ns), "-"]
            head = [key, label] if i == 0 else ["", label]
            tail = [f"{old.headline} ({old.verdict})", f"{new.headline} ({new.verdict})"] if i == 0 else ["", ""]
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
    parser.add_argument("rows", nargs="*", metavar="ROW", help=f"run only these rows: {', '.join(modules)}")
    parser.add_argument("--only", action="append", choices=sorted(modules), help="run only this row (repeatable)")
    parser.add_argument("--compare", type=Path, metavar="OLD_TREE",
                        help="also measure this older gpunuma checkout (holding src/ and fakes/), alternated with "
                             "this one, and print a before/after table")
    args = parser.parse_args(argv)
    unknown = [row for row in args.rows if row not in modules]
    if unknown:
        parser.error(f"no row {', '.join(map(repr, unknown))}; the rows: {', '.join(modules)}")
    wanted = [*args.rows, *(args.only or ())]

    budget = Budget(quick=args.quick)
    chosen = [modules[key] for key in modules if not wanted or key in wanted]
    results: list[RowResult] = []
    elapsed: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="gpunuma-bench-") as workdir:
        trees: list[Tree] = []
        if args.compare is not None:
            trees.append(install(args.compare, Path(workdir), "before"))
        trees.append(install(CURRENT, Path(workdir), "current"))
        ctx = Context(budget=budget, workdir=Path(workdir), trees=tuple(trees))
        for module in chosen:
            print(f"running {module.KEY}: {module.WHAT}", file=sys.stderr, flush=True)  # type: ignore[attr-defined]
            started = time.perf_counter()
            try:
                row = module.run(ctx)  # type: ignore[attr-defined]
            except Exception as err:  # a broken row must not hide the others' numbers
                row = [_errored(module, err, tree.label) for tree in trees]
            results.extend(row)
            elapsed[module.KEY] = round(time.perf_counter() - started, 2)  # type: ignore[attr-defined]
    env = environment(args.quick)
    print(
        f"gpunuma bench, {env['date']}, Python {env['python']}, "
        f"{env['cpus_allowed']} CPUs, load {env['load_average']}"
    )
    print(render_table([result for result in results if result.tree == "current"]))
    if args.compare is not None:
        print(f"\nbefore = {args.compare.resolve()}, current = {CURRENT}, alternated in each row")
        print(render_comparison(results, "before", "current"))
    if args.json is not None:
        payload = {
            "environment": env,
            "trees": {tree.label: str(tree.source) for tree in trees},
            "rows": [{**result.as_dict(), "row_seconds": elapsed[result.key]} for result in results],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if any(result.verdict == "error" for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
