"""Child process of the verify row: 20 threads, bound to node 0, then times ``gpunuma.verify()``.

Prints one JSON object: the samples (ns) of ``verify()`` and of ``verify(repair=True, include_narrowed=True)``
putting back one thread narrowed before each call (with 2+ CPUs), and what the last result read. Run by
``rows/verify.py``; a separate process so the bench's own threads and affinity stay untouched.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

import gpunuma

THREADS = 20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    stop = threading.Event()
    workers = [threading.Thread(target=stop.wait, daemon=True) for _ in range(THREADS - 1)]
    for worker in workers:
        worker.start()
    try:
        report = gpunuma.bind_to_node(0, binder="libnuma", env={}, strict=True)
        clock = time.perf_counter_ns
        for _ in range(args.warmup):
            gpunuma.verify()
        plain = []
        result = None
        for _ in range(args.reps):
            start = clock()
            result = gpunuma.verify()
            plain.append(clock() - start)
        assert result is not None
        cpus = sorted(report.cpus.ids)
        repairing: list[int] = []
        repaired = 0
        tid = workers[0].native_id
        if len(cpus) > 1 and tid is not None:
            for _ in range(args.reps):
                os.sched_setaffinity(tid, {cpus[-1]})  # an OpenMP runtime narrowing it, each time
                start = clock()
                fixed = gpunuma.verify(repair=True, include_narrowed=True)
                repairing.append(clock() - start)
                repaired += len(fixed.repaired)
        print(json.dumps({
            "samples_ns": plain, "repair_samples_ns": repairing, "repaired": repaired,
            "threads": len(result.view.threads), "verdict": result.verdict.value,
            "pages": result.memory.total if result.memory is not None else None,
            "mappings": result.memory.mappings if result.memory is not None else None,
        }))
    finally:
        stop.set()


if __name__ == "__main__":
    main()
