"""Child process of the migrate row: touches ``--gib`` GiB bound to one node, then binds to another with
``migrate=True`` and back, ``--rounds`` times, and prints what each migration moved and how fast.

On a host with one memory node there is nowhere to move pages: each round binds that node again with
``migrate=True`` and times ``migrate_pages(2)`` finding nothing to move.
"""

from __future__ import annotations

import argparse
import json
import mmap
import time

import gpunuma
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.policy import MemoryPolicy, Policy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()

    nodes = [node.id for node in SysfsTopology().read().nodes if node.cpus and node.has_memory]
    bind = Policy(memory=MemoryPolicy.BIND)
    first = nodes[0]
    assert gpunuma.bind_to_node(first, policy=bind, env={}, strict=True).ok
    size = int(args.gib * (1 << 30))
    area = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for offset in range(0, size, mmap.PAGESIZE):  # every page touched on the first node
        area[offset] = 1
    rounds = []
    for index in range(args.rounds):
        target = nodes[(index + 1) % 2] if len(nodes) > 1 else first
        started = time.perf_counter()
        report = gpunuma.bind_to_node(target, policy=bind, env={}, strict=True, migrate=True)
        whole = time.perf_counter() - started
        migration = report.migration
        assert migration is not None, report.reasons
        rounds.append({
            "to": target, "pages_moved": migration.pages_moved, "pages_not_moved": migration.pages_not_moved,
            "seconds": migration.seconds, "bind_seconds": whole, "page_size": migration.page_size,
            "local_before": migration.local_before, "local_after": migration.local_after,
            "method": report.method,
        })
    area.close()
    print(json.dumps({"nodes": nodes, "gib": args.gib, "rounds": rounds}))


if __name__ == "__main__":
    main()
