"""Simulated machines the bench reads: the catalogue's dgx-h100 and generated large boxes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from compat import load

from gpunuma_fakes import GpuSpec, Machine, NodeSpec, machine, render_sysfs

#: Each generated socket: 64 cores x 2 threads, split into 2 nodes of 32 cores, 1 GPU per node.
CORES_PER_SOCKET = 64
THREADS = 2
NODES_PER_SOCKET = 2


def generated(sockets: int) -> Machine:
    """``sockets`` x 64 cores x 2 threads: ``128*sockets`` CPUs, ``2*sockets`` nodes and GPUs.

    Distances 10 local, 12 within a socket, 21 across sockets (SNC2-like).
    """
    per_thread = sockets * CORES_PER_SOCKET
    cpu_set = load("CpuSet")
    per_node = CORES_PER_SOCKET // NODES_PER_SOCKET
    count = sockets * NODES_PER_SOCKET
    nodes = []
    for node in range(count):
        socket, half = divmod(node, NODES_PER_SOCKET)
        first = socket * CORES_PER_SOCKET + half * per_node
        cpus = cpu_set.of(t * per_thread + first + c for t in range(THREADS) for c in range(per_node))
        row = tuple(
            10 if other == node else 12 if other // NODES_PER_SOCKET == socket else 21 for other in range(count)
        )
        nodes.append(NodeSpec(node, cpus.to_list(), 262_144, row))
    gpus = []
    for node in range(count):
        bus = f"0000:{0x10 + 8 * node:02x}:00.0"
        digest = hashlib.sha256(f"bench-{sockets}/{bus}".encode()).hexdigest()
        uuid = f"GPU-{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
        gpus.append(GpuSpec(bus_id=bus, uuid=uuid, sysfs_numa_node=node))
    return Machine(
        name=f"generated-{sockets * CORES_PER_SOCKET * THREADS}",
        description=f"generated: {sockets} sockets x {CORES_PER_SOCKET} cores x {THREADS} threads, {count} nodes",
        sources=("generated for the bench (bench/rows/machines.py)",),
        sockets=sockets,
        cores_per_socket=CORES_PER_SOCKET,
        threads_per_core=THREADS,
        nodes=tuple(nodes),
        gpus=tuple(gpus),
        expected_nodes={i: i for i in range(count)},
    )


def rendered(name_or_machine: str | Machine, workdir: Path) -> tuple[Machine, Path]:
    """The machine and the sysfs tree rendered for it under ``workdir``."""
    simulated = machine(name_or_machine) if isinstance(name_or_machine, str) else name_or_machine
    root = workdir / simulated.name
    if not root.exists():
        render_sysfs(simulated, root)
    return simulated, root
