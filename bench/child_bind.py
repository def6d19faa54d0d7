"""Child process of the bind row: starts 19 extra threads, then times ``Binder.apply`` of a node-0 plan.

Prints one JSON object: the samples (ns) and what the last report read back. Run by
``rows/bind_threads.py``; a separate process so the bench's own threads and affinity stay untouched.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.planner import plan_binding

THREADS = 20


def _binder(name: str):
    if name == "libnuma":
        from gpunuma.adapters.libnuma import LibnumaBinder

        return LibnumaBinder()
    from gpunuma.adapters.syscall import SyscallBinder

    return SyscallBinder()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binder", choices=("libnuma", "syscall"), default="libnuma")
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    stop = threading.Event()
    workers = [threading.Thread(target=stop.wait, daemon=True) for _ in range(THREADS - 1)]
    for worker in workers:
        worker.start()
    try:
        source = SysfsTopology(root="/")
        plan = plan_binding(source.read(), [], source.allowed(), node=0)
        binder = _binder(args.binder)
        for _ in range(args.warmup):
            binder.apply(plan)
        samples = []
        clock = time.perf_counter_ns
        report = None
        for _ in range(args.reps):
            start = clock()
            report = binder.apply(plan)
            samples.append(clock() - start)
        assert report is not None
        print(
            json.dumps(
                {
                    "samples_ns": samples,
                    "bound": report.bound,
                    "threads_read_back": len(report.kernel.threads) if report.kernel else 0,
                    "cpus": report.cpus.to_list(),
                    "memory_policy": report.memory_policy,
                    "mismatches": list(report.mismatches),
                }
            )
        )
    finally:
        stop.set()


if __name__ == "__main__":
    main()
