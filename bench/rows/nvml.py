"""NvmlTopology.read() on a GPU host, with nvmlInit's share of it; skipped where NVML cannot start."""

from __future__ import annotations

import time
from pathlib import Path

from harness import Budget, RowResult, Stats, fmt_ns, skipped, time_calls

KEY = "nvml"
WHAT = "NVML topology read (NvmlTopology over SysfsTopology('/')), nvmlInit's share"
TARGET = "reported"


def run(budget: Budget, workdir: Path) -> RowResult:
    try:
        import pynvml
    except ImportError:
        return skipped(KEY, WHAT, TARGET, "no NVML (pynvml not installed)")
    from gpunuma.adapters.nvml import NvmlTopology
    from gpunuma.adapters.sysfs import SysfsTopology

    start = time.perf_counter_ns()
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        return skipped(KEY, WHAT, TARGET, f"no NVML ({err})")
    cold_init = time.perf_counter_ns() - start
    try:
        count = pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()

    def init_shutdown() -> None:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()

    source = NvmlTopology(nvml=pynvml, sysfs=SysfsTopology(root="/"))
    sysfs = SysfsTopology(root="/")
    reps = budget.reps(50, 5)
    read = Stats.of(time_calls(source.read, reps=reps, warmup=2))
    init = Stats.of(time_calls(init_shutdown, reps=reps, warmup=2))
    base = Stats.of(time_calls(sysfs.read, reps=reps, warmup=2))
    share = init.median_ns / read.median_ns
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=(
            ("NvmlTopology.read()", read),
            ("nvmlInit + nvmlShutdown (warm)", init),
            ("SysfsTopology('/').read() (its base)", base),
        ),
        headline=(
            f"read {fmt_ns(read.median_ns)} for {count} GPU(s); init+shutdown {share * 100:.0f}% of it; "
            f"first (cold) nvmlInit {fmt_ns(cold_init)}"
        ),
        verdict="reported",
        derived={"gpus": count, "init_share": share, "cold_init_ns": cold_init, "read_median_ns": read.median_ns},
        notes=("NVML refcounts init; each read inits and shuts down once",),
    )
