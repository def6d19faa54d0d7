"""Reading where a process's memory is: ``/proc/<pid>/numa_maps`` of a process holding 1 GiB of touched memory,
read whole and parsed into pages per node (what ``check`` and ``verify`` do), in 4 KiB pages and in huge pages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import Budget, Context, RowResult, Samples, Stats, fmt_ns, sample_trees, time_calls, verdict

KEY = "numa-maps"
WHAT = "numa_maps read-back (read whole + parsed to pages per node) of a process holding 1 GiB touched"
TARGET = "< 50 ms"
LIMIT_NS = 50_000_000
CHILD = Path(__file__).resolve().parent.parent / "child_memory.py"
BASE = "1 GiB in 4 KiB pages (262,144 PTEs)"
HUGE = "1 GiB, transparent huge pages (MADV_HUGEPAGE)"
THP = "/sys/kernel/mm/transparent_hugepage/enabled"


def _holder(pages: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, str(CHILD), "--gib", "1", "--pages", pages], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    if process.stdout is None or process.stdout.readline() != "ready\n":
        process.kill()
        raise RuntimeError(f"the 1 GiB holder ({pages} pages) did not start")
    return process


def sample(budget: Budget, workdir: Path) -> Samples:
    from gpunuma.adapters.kernel_view import read_pages

    series: dict[str, list[int]] = {}
    info: dict[str, object] = {}
    for label, pages in ((BASE, "base"), (HUGE, "huge")):
        holder = _holder(pages)
        try:
            read = read_pages(holder.pid)
            if read is None or read.total * read.page_size < (1 << 30):
                raise RuntimeError(f"the holder's numa_maps shows {read}")
            series[label] = time_calls(lambda pid=holder.pid: read_pages(pid), reps=budget.reps(40, 3), warmup=2)
            info[pages] = {"pages": read.total, "page_size": read.page_size, "mappings": read.mappings,
                           "by_node": read.pages_by_node}
        finally:
            holder.communicate("done\n", timeout=60)
    try:
        info["thp"] = Path(THP).read_text().strip()
    except OSError:
        info["thp"] = "unknown"
    return {"series": series, "info": info}


def run(ctx: Context) -> list[RowResult]:
    return [_result(tree, samples) for tree, samples in sample_trees(ctx, "numa_maps", sample).items()]


def _result(tree: str, samples: Samples) -> RowResult:
    stats = {label: Stats.of(values) for label, values in samples["series"].items()}
    worst = max(s.median_ns for s in stats.values())
    base, huge = stats[BASE].median_ns, stats[HUGE].median_ns
    info = samples["info"]
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=tuple(stats.items()),
        headline=f"4 KiB pages {fmt_ns(base)}, huge pages {fmt_ns(huge)} ({info['base']['pages']:,} pages counted)",
        verdict=verdict(worst < LIMIT_NS),
        derived={"base_median_ns": base, "huge_median_ns": huge, **info},
        notes=(f"THP: {info['thp']}; the kernel walks the page tables to write numa_maps",),
        tree=tree,
    )
