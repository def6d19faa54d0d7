"""A serving worker: binds to its GPU's NUMA node at start-up, then starts its scheduler thread.

    CUDA_VISIBLE_DEVICES=5 python -m tinyserve.worker     # prints "ready PID", serves until stdin closes

Nothing here knows about tests or simulation: under ``GPUNUMA_SIMULATE=NAME`` gpunuma binds the
simulated machine NAME instead of this one, and ``gpunuma check --pid PID`` reads it back.
"""

from __future__ import annotations

import os
import sys
import threading

import gpunuma


class Worker:
    """One per GPU. Bind first: the threads started afterwards inherit the binding, as on Linux."""

    def __init__(self) -> None:
        # The GPU comes from CUDA_VISIBLE_DEVICES, LOCAL_RANK or Ray, as gpunuma resolves it.
        self.binding = gpunuma.bind_to_gpu()
        self._stop = threading.Event()
        self.scheduler = threading.Thread(target=self._stop.wait, name="scheduler", daemon=True)
        self.scheduler.start()

    def stop(self) -> None:
        self._stop.set()
        self.scheduler.join()


def main() -> None:
    worker = Worker()
    print(f"ready {os.getpid()}", flush=True)
    sys.stdin.read()  # serve until the launcher closes our stdin
    worker.stop()


if __name__ == "__main__":
    main()
