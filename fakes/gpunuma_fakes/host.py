"""``split_host(n)``: this host's own CPUs described as ``n`` NUMA nodes with GPUs attached.

The simulated machine's CPU ids are this host's real ones, and its only memory node is the host's
real memory node, so every plan made for it is one the **real** libnuma/syscall binders can apply
here: they move this process's real threads onto real CPUs, even on a 2-CPU CI runner with one node.
Only the node boundaries and the GPUs are invented.
"""

from __future__ import annotations

from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.cpuset import CpuSet
from gpunuma_fakes.spec import GpuSpec, Machine, NodeSpec

#: The real memory node every simulated node's memory lives on (node 0: present on every Linux host).
MEMORY_NODE = 0


class HostTooSmallError(ValueError):
    """This host cannot be split as asked: fewer usable CPUs than nodes, or no memory on node 0."""


def _runs(usable: list[int], online: CpuSet, count: int) -> list[CpuSet]:
    """``usable`` in ``count`` contiguous runs whose sizes differ by at most one; every other online
    CPU joins the run of the usable CPU just below it (node 0 for those below the first)."""
    runs = [set(usable[len(usable) * k // count : len(usable) * (k + 1) // count]) for k in range(count)]
    owner = 0
    for cpu in sorted(online):
        for k, run in enumerate(runs):
            if cpu in run:
                owner = k
        runs[owner].add(cpu)
    return [CpuSet.of(run) for run in runs]


def split_host(nodes: int = 2, *, gpus_per_node: int = 1, root: str = "/") -> Machine:
    """This host (read through the real sysfs adapter at ``root``) as a machine of ``nodes`` nodes.

    The CPUs this process may use (its cgroup and affinity) are shared out in contiguous runs, node
    ``k`` getting the ``k``-th run; CPUs it may not use stay outside the cgroup. Node 0 holds the
    memory (the host's real node 0), the others are CPU-only, so every plan prefers node 0 for
    memory. GPU ``i`` sits on node ``i // gpus_per_node`` (bus order = index order), and the
    machine's ``expected_nodes`` says so. Raises :class:`HostTooSmallError` when the host has fewer
    usable CPUs than ``nodes`` or no memory on node 0.
    """
    for name, value in (("nodes", nodes), ("gpus_per_node", gpus_per_node)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"split_host({name}=...) takes an int, got {value!r}")
    if nodes < 1 or gpus_per_node < 0:
        raise ValueError(f"split_host needs nodes >= 1 and gpus_per_node >= 0, got {nodes}, {gpus_per_node}")
    reader = SysfsTopology(root=root)
    host = reader.read()
    allowed = reader.allowed()
    online = host.all_cpus
    usable = sorted(online & allowed.cpus & (allowed.affinity or allowed.cpus))
    if len(usable) < nodes:
        raise HostTooSmallError(
            f"this host lets the process use {len(usable)} CPU(s) ({CpuSet.of(usable).to_list()}): "
            f"too few for {nodes} nodes"
        )
    memory_nodes = {node.id for node in host.nodes if node.has_memory}
    if host.nodes and MEMORY_NODE not in memory_nodes:
        raise HostTooSmallError(f"this host has no memory on node {MEMORY_NODE} (memory nodes: {sorted(memory_nodes)})")
    memory_mb = sum(node.memory_mb or 0 for node in host.nodes if node.id == MEMORY_NODE) or 1024
    runs = _runs(usable, online, nodes)
    node_specs = tuple(
        NodeSpec(
            id=k,
            cpus=run.to_list(),
            memory_mb=memory_mb if k == MEMORY_NODE else 0,
            distances=tuple(10 if j == k else 20 for j in range(nodes)),
        )
        for k, run in enumerate(runs)
    )
    gpus = tuple(
        GpuSpec(
            bus_id=f"0000:{0x18 + 0x10 * i:02x}:00.0",
            uuid=f"GPU-5b117000-0000-4000-8000-{i:012x}",
            sysfs_numa_node=i // gpus_per_node,
        )
        for i in range(nodes * gpus_per_node)
    )
    count = max(online) + 1
    return Machine(
        name=f"split-host-{nodes}",
        description=f"this host's usable CPUs {CpuSet.of(usable).to_list()} as {nodes} nodes, "
        f"{gpus_per_node} GPU(s) per node, memory on the real node {MEMORY_NODE}",
        sources=(f"this host's sysfs under {root}, read when the machine was built",),
        sockets=1,
        cores_per_socket=count,
        threads_per_core=1,
        nodes=node_specs,
        gpus=gpus,
        expected_nodes={i: i // gpus_per_node for i in range(len(gpus))},
        offline_cpus=(CpuSet.range(0, count - 1) - online).to_list(),
        cgroup_cpus=CpuSet.of(usable).to_list(),
        cgroup_mems=str(MEMORY_NODE),
        cgroup_path="/gpunuma-split-host",
    )
