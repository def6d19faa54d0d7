"""A small public builder for machine shapes no catalogue machine has, and the pieces the catalogue uses.

``build(sockets=2, nodes_per_socket=2, cores_per_node=4, smt=2, gpus_per_node=1)`` is a
:class:`~gpunuma_fakes.spec.Machine` like any other: it renders, has a fake NVML and says what
the adapters must read (``topology()``). CPUs are numbered as Linux enumerates x86 and Grace
parts: the first thread of every core socket by socket, then the second threads in the same order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from gpunuma.core.cpuset import CpuSet
from gpunuma_fakes.spec import GpuSpec, Machine, NodeSpec

#: A distance function between two node ids (the sysfs ``distance`` value, 10 on the diagonal).
Distance = Callable[[int, int], int]


def core_cpus(sockets: int, cores_per_socket: int, threads: int, socket: int, first: int, count: int) -> str:
    """The cpulist of cores ``first..first+count-1`` of ``socket`` with all their SMT threads."""
    per_thread = sockets * cores_per_socket
    return CpuSet.of(
        t * per_thread + socket * cores_per_socket + core
        for t in range(threads)
        for core in range(first, first + count)
    ).to_list()


def distance_rows(ids: Iterable[int], distance: Distance) -> dict[int, tuple[int, ...]]:
    """The sysfs distance row of each node: one entry per node, in id order, 10 on the diagonal."""
    ordered = tuple(sorted(ids))
    return {a: tuple(10 if a == b else distance(a, b) for b in ordered) for a in ordered}


def gpu_uuid(chassis: str, bus_id: str) -> str:
    """A deterministic ``GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`` for a GPU of a simulated chassis."""
    d = hashlib.sha256(f"{chassis}/{bus_id}".encode()).hexdigest()
    return f"GPU-{d[:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:32]}"


def gpu(bus_id: str, node: int = -1, *, chassis: str = "synthetic", **fields: Any) -> GpuSpec:
    """A GPU at PCI ``bus_id`` whose sysfs ``numa_node`` is ``node`` (-1: unknown); ``fields`` as :class:`GpuSpec`."""
    return GpuSpec(bus_id=bus_id, uuid=gpu_uuid(chassis, bus_id), sysfs_numa_node=node, **fields)


def build(
    *,
    sockets: int = 1,
    nodes_per_socket: int = 1,
    cores_per_node: int = 4,
    smt: int = 1,
    gpus_per_node: int = 0,
    cpu_less_nodes: int = 0,
    gpus: Sequence[GpuSpec] | None = None,
    distance: Distance | None = None,
    name: str = "synthetic",
    **fields: Any,
) -> Machine:
    """A machine of a regular shape.

    CPU nodes come first, ``nodes_per_socket`` per socket, each ``cores_per_node`` cores of ``smt``
    threads; then ``cpu_less_nodes`` nodes with memory and no CPU (GPU memory, CXL). Default
    distances: 12 within a socket, 21 across (a CPU-less node ``k`` counts as on socket
    ``k % sockets``). ``gpus_per_node`` GPUs sit on every CPU node (bus ids ``0000:01:00.0``
    upwards) and ``expected_nodes`` says so; or pass ``gpus`` (see :func:`gpu`). ``fields`` are
    the other :class:`Machine` fields (``cgroup_cpus``, ``offline_cpus``, ``expected_nodes``...).
    """
    cores_per_socket = nodes_per_socket * cores_per_node
    cpu_nodes = sockets * nodes_per_socket
    ids = range(cpu_nodes + cpu_less_nodes)

    def socket_of(node: int) -> int:
        return node // nodes_per_socket if node < cpu_nodes else (node - cpu_nodes) % sockets

    rows = distance_rows(ids, distance or (lambda a, b: 12 if socket_of(a) == socket_of(b) else 21))
    nodes = tuple(
        NodeSpec(
            k,
            core_cpus(sockets, cores_per_socket, smt, socket_of(k), (k % nodes_per_socket) * cores_per_node,
                      cores_per_node) if k < cpu_nodes else "",
            65_536,
            rows[k],
        )
        for k in ids
    )
    if gpus is None:
        placed = [k for k in range(cpu_nodes) for _ in range(gpus_per_node)]
        gpus = [gpu(f"0000:{i + 1:02x}:00.0", node, chassis=name) for i, node in enumerate(placed)]
        fields.setdefault("expected_nodes", dict(enumerate(placed)))
    return Machine(
        name=name,
        description=(
            f"synthetic: {sockets} socket(s) x {nodes_per_socket} node(s) x {cores_per_node} core(s) x {smt} "
            f"thread(s), {cpu_less_nodes} CPU-less node(s), {len(gpus)} GPU(s)"
        ),
        sources=("a synthetic shape from gpunuma_fakes.build, not a measured machine",),
        sockets=sockets,
        cores_per_socket=cores_per_socket,
        threads_per_core=smt,
        nodes=nodes,
        gpus=tuple(gpus),
        **fields,
    )
