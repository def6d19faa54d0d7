"""NvmlTopology.read() on a GPU host, with nvmlInit's share of it; skipped where NVML cannot start."""

from __future__ import annotations

import time
from pathlib import Path

from compat import load
from harness import Budget, Context, RowResult, Samples, Stats, fmt_ns, sample_trees, skipped, time_calls

KEY = "nvml"
WHAT = "NVML topology read (NvmlTopology over SysfsTopology('/')), nvmlInit's share"
TARGET = "reported"
READ = "NvmlTopology.read()"
INIT = "nvmlInit + nvmlShutdown (warm)"
BASE = "SysfsTopology('/').read() (its base)"


def sample(budget: Budget, workdir: Path) -> Samples:
    try:
        import pynvml
    except ImportError:
        return {"series": {}, "info": {"skipped": "no NVML (pynvml not installed)"}}
    start = time.perf_counter_ns()
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        return {"series": {}, "info": {"skipped": f"no NVML ({err})"}}
    cold_init = time.perf_counter_ns() - start
    try:
        count = pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()

    def init_shutdown() -> None:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()

    sysfs_cls = load("SysfsTopology")
    source = load("NvmlTopology")(nvml=pynvml, sysfs=sysfs_cls(root="/"))
    sysfs = sysfs_cls(root="/")
    reps = budget.reps(50, 5)
    series = {
        READ: time_calls(source.read, reps=reps, warmup=2),
        INIT: time_calls(init_shutdown, reps=reps, warmup=2),
        BASE: time_calls(sysfs.read, reps=reps, warmup=2),
    }
    return {"series": series, "info": {"gpus": count, "cold_init_ns": cold_init}}


def run(ctx: Context) -> list[RowResult]:
    return [_result(tree, samples) for tree, samples in sample_trees(ctx, "nvml", sample, chunks=2).items()]


def _result(tree: str, samples: Samples) -> RowResult:
    info = samples["info"]
    if "skipped" in info:
        return skipped(KEY, WHAT, TARGET, info["skipped"], tree=tree)
    stats = {label: Stats.of(values) for label, values in samples["series"].items()}
    read, init = stats[READ], stats[INIT]
    share = init.median_ns / read.median_ns
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=tuple(stats.items()),
        headline=(
            f"read {fmt_ns(read.median_ns)} for {info['gpus']} GPU(s); init+shutdown {share * 100:.0f}% of it; "
            f"first (cold) nvmlInit {fmt_ns(info['cold_init_ns'])}"
        ),
        verdict="reported",
        derived={"gpus": info["gpus"], "init_share": share, "cold_init_ns": info["cold_init_ns"],
                 "read_median_ns": read.median_ns},
        notes=("NVML refcounts init; each read inits and shuts down once",),
        tree=tree,
    )
