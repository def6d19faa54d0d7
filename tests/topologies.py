"""A small builder of synthetic Topology values, and the published machine layouts built with it.

CPUs are numbered as Linux enumerates x86 and Grace parts: the first thread of every core,
socket by socket, then the second threads in the same order (CPU ``t*sockets*cores + s*cores + c``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.model import Cpu, Gpu, NumaNode, Topology
from gpunuma.core.plan import Allowed

#: A distance function between two node ids.
Distance = Callable[[int, int], int]


def build(
    *,
    sockets: int,
    cores_per_socket: int,
    threads_per_core: int,
    nodes: Mapping[int, str],
    distance: Distance,
    gpus: Sequence[Gpu] = (),
    memoryless: Sequence[int] = (),
    source: str = "synthetic",
) -> Topology:
    """A topology from a CPU layout, node cpulists (``""`` for CPU-less nodes) and a distance function."""
    per_thread = sockets * cores_per_socket
    cpus = []
    for cpu_id in range(per_thread * threads_per_core):
        core_index = cpu_id % per_thread
        siblings = CpuSet.of(core_index + t * per_thread for t in range(threads_per_core))
        package, core = divmod(core_index, cores_per_socket)
        cpus.append(Cpu(id=cpu_id, package=package, core=core, siblings=siblings))
    ids = sorted(nodes)
    numa_nodes = tuple(
        NumaNode(
            id=node_id,
            cpus=CpuSet.parse_list(nodes[node_id]),
            has_memory=node_id not in memoryless,
            distances={other: distance(node_id, other) for other in ids},
        )
        for node_id in ids
    )
    return Topology(nodes=numa_nodes, cpus=tuple(cpus), gpus=tuple(gpus), source=source)


def gpu(index: int, bus: str, node: int | None = None, **fields: object) -> Gpu:
    """A GPU at PCI bus ``bus`` (``"1b"`` -> ``0000:1b:00.0``) reporting ``numa_node`` ``node``."""
    return Gpu(index=index, pci_bus_id=f"0000:{bus}:00.0", numa_node=node, **fields)  # type: ignore[arg-type]


def allow_all(topology: Topology) -> Allowed:
    """A process the cgroup lets use every CPU and every node with memory, affinity not narrowed."""
    cpus = topology.all_cpus
    mems = frozenset(node.id for node in topology.nodes if node.has_memory)
    return Allowed(cpus=cpus, mems=mems, affinity=cpus)


def allow(cpus: str, mems: str, affinity: str | None = None) -> Allowed:
    """A cgroup cpuset ``cpus``/``mems`` (cpulists) and an affinity (default: the cpuset)."""
    cpu_set = CpuSet.parse_list(cpus)
    aff = CpuSet.parse_list(affinity) if affinity is not None else cpu_set
    return Allowed(cpus=cpu_set, mems=frozenset(CpuSet.parse_list(mems).ids), affinity=aff)


def _two_level(same: int, near: int, far: int, group: Callable[[int], int]) -> Distance:
    """Distances: ``same`` on the diagonal, ``near`` within a group (socket), ``far`` across."""
    return lambda a, b: same if a == b else (near if group(a) == group(b) else far)


DGX_H100_BUSES = ("1b", "43", "52", "61", "9d", "c3", "d1", "df")


def dgx_h100(**gpu_fields: object) -> Topology:
    """DGX H100: 2 sockets x 56 cores, SMT; node 0 CPUs 0-55,112-167, node 1 56-111,168-223; distance 10/21."""
    return build(
        sockets=2,
        cores_per_socket=56,
        threads_per_core=2,
        nodes={0: "0-55,112-167", 1: "56-111,168-223"},
        distance=_two_level(10, 21, 21, lambda n: n),
        gpus=[gpu(i, bus, i // 4, **gpu_fields) for i, bus in enumerate(DGX_H100_BUSES)],
        source="dgx-h100",
    )


def dgx_a100_nps4() -> Topology:
    """DGX A100 in NPS4: 2 x 64 cores SMT, 8 nodes of 16 cores; GPU0,1->3, 2,3->1, 4,5->7, 6,7->5."""
    nodes = {k: f"{16 * k}-{16 * k + 15},{128 + 16 * k}-{128 + 16 * k + 15}" for k in range(8)}
    gpu_nodes = (3, 3, 1, 1, 7, 7, 5, 5)
    buses = ("07", "0f", "47", "4e", "87", "90", "b7", "bd")
    return build(
        sockets=2,
        cores_per_socket=64,
        threads_per_core=2,
        nodes=nodes,
        distance=_two_level(10, 12, 32, lambda n: n // 4),
        gpus=[gpu(i, bus, gpu_nodes[i]) for i, bus in enumerate(buses)],
        source="dgx-a100-nps4",
    )


def gh200(*, numa_node: int | None = None) -> Topology:
    """GH200: node 0 = 72 Grace cores (no SMT); node 1 = CPU-less GPU memory (distance 80);
    nodes 2-8 = empty MIG placeholders. The GPU reports ``numa_node`` ``numa_node`` and memory node 1.
    """

    def distance(a: int, b: int) -> int:
        if a == b:
            return 10
        if 0 in (a, b):
            return 80
        return 255

    return build(
        sockets=1,
        cores_per_socket=72,
        threads_per_core=1,
        nodes={0: "0-71", 1: "", **{k: "" for k in range(2, 9)}},
        distance=distance,
        memoryless=range(2, 9),
        gpus=[gpu(0, "01", numa_node, memory_node=1, local_cpus=CpuSet.range(0, 71))],
        source="gh200",
    )


def gb200(*, numa_node_known: bool = False) -> Topology:
    """GB200 tray: node 0 CPUs 0-71, node 1 72-143 (distance 40); GPU memory nodes 2,10 near node 0
    (80) and 18,26 near node 1 (node 0 -> 18..33 is 120); nodes 3-9, 11-17, ... are empty MIG nodes.
    """

    def side(n: int) -> int:
        return n if n < 2 else (0 if n < 18 else 1)

    def distance(a: int, b: int) -> int:
        if a == b:
            return 10
        if a < 2 and b < 2:
            return 40
        if a < 2 or b < 2:
            return 80 if side(a) == side(b) else 120
        return 11 if (a - 2) // 8 == (b - 2) // 8 else 40

    memory_nodes = (2, 10, 18, 26)
    return build(
        sockets=2,
        cores_per_socket=72,
        threads_per_core=1,
        nodes={0: "0-71", 1: "72-143", **{k: "" for k in range(2, 34)}},
        distance=distance,
        memoryless=[k for k in range(2, 34) if k not in memory_nodes],
        gpus=[
            gpu(i, bus, (i // 2) if numa_node_known else None, memory_node=memory_nodes[i])
            for i, bus in enumerate(("01", "02", "03", "04"))
        ],
        source="gb200",
    )


def cloud_vm(gpus: int = 2, **gpu_fields: object) -> Topology:
    """A cloud VM with 2 nodes (0-7, 8-15): its GPUs report numa_node -1 and every CPU as local."""
    return build(
        sockets=2,
        cores_per_socket=8,
        threads_per_core=1,
        nodes={0: "0-7", 1: "8-15"},
        distance=_two_level(10, 20, 20, lambda n: n),
        gpus=[
            gpu(i, f"{6 + i:02x}", None, **{"local_cpus": CpuSet.range(0, 15), **gpu_fields}) for i in range(gpus)
        ],
        source="cloud-vm",
    )


SNC_NODES = {0: "0-23,96-119", 1: "24-47,120-143", 2: "48-71,144-167", 3: "72-95,168-191"}


def snc2() -> Topology:
    """Sub-NUMA clustering: 2 sockets x 48 cores SMT, 4 nodes; GPUs 0-2 -> node 0, 3 -> 1, 4,5 -> 2."""
    gpu_nodes = (0, 0, 0, 1, 2, 2)
    return build(
        sockets=2,
        cores_per_socket=48,
        threads_per_core=2,
        nodes=SNC_NODES,
        distance=_two_level(10, 12, 21, lambda n: n // 2),
        gpus=[gpu(i, f"{0x18 + i:02x}", node) for i, node in enumerate(gpu_nodes)],
        source="snc2",
    )


def snc2_socket_affinity(per_socket: int = 2) -> Topology:
    """The SNC machine whose GPUs report numa_node -1 and local CPUs = their socket's two nodes."""
    sockets = (CpuSet.parse_list("0-47,96-143"), CpuSet.parse_list("48-95,144-191"))
    return build(
        sockets=2,
        cores_per_socket=48,
        threads_per_core=2,
        nodes=SNC_NODES,
        distance=_two_level(10, 12, 21, lambda n: n // 2),
        gpus=[
            gpu(i, f"{0x18 + i:02x}", None, local_cpus=sockets[i // per_socket]) for i in range(2 * per_socket)
        ],
        source="snc2-socket-affinity",
    )


def cgroup_limited() -> tuple[Topology, Allowed]:
    """DGX H100 in a container whose cpuset is 0-47,112-159 and memory nodes 0-1."""
    return dgx_h100(), allow("0-47,112-159", "0-1")
