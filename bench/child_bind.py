"""Child process of the bind row: starts 19 extra threads, then times ``Binder.apply`` of a node-0 plan.

Prints one JSON object: the samples (ns) and what the last report read back. Run by
``rows/bind_threads.py``; a separate process so the bench's own threads and affinity stay untouched.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compat import load  # noqa: E402

THREADS = 20


def _binder(name: str):
    return load("LibnumaBinder" if name == "libnuma" else "SyscallBinder")()


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
        source = load("SysfsTopology")(root="/")
        plan = load("plan_binding")(source.read(), [], source.allowed(), node=0)
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
