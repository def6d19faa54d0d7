"""Start one worker process per GPU, each seeing only its own GPU (``CUDA_VISIBLE_DEVICES``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


@contextmanager
def launch(gpus: Sequence[int]) -> Iterator[dict[int, int]]:
    """Start a worker for each GPU; yield GPU -> worker PID once every worker is ready; stop them after."""
    workers = {
        gpu: subprocess.Popen(
            [sys.executable, "-m", "tinyserve.worker"],
            env={**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu)},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for gpu in gpus
    }
    try:
        for worker in workers.values():
            assert worker.stdout is not None
            line = worker.stdout.readline()
            if not line.startswith("ready"):
                raise RuntimeError(f"worker {worker.pid} did not start: {line!r}")
        yield {gpu: worker.pid for gpu, worker in workers.items()}
    finally:
        for worker in workers.values():
            worker.communicate(timeout=60)
