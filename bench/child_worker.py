"""Child of the ``ray`` row: the CPU time a Ray worker spends building one actor, bound or plain.

``python bench/child_worker.py PAYLOAD`` imports ray first (a worker has it loaded before any actor
arrives), then times unpickling the actor class and its arguments (a bound actor's worker imports
gpunuma here, as a real one does) and running ``__init__``; prints nanoseconds of CPU time.
"""

from __future__ import annotations

import sys
import time

import ray


def main() -> None:
    with open(sys.argv[1], "rb") as handle:
        payload = handle.read()
    start = time.process_time_ns()
    cls, args, kwargs = ray.cloudpickle.loads(payload)
    cls(*args, **kwargs)
    print(time.process_time_ns() - start)


if __name__ == "__main__":
    main()
