"""The topology value: NUMA nodes, CPUs, GPUs and NICs of one machine, as a frozen snapshot.

Adapters (sysfs, NVML, fakes) produce it; the planner reads it; nothing mutates it.

How near a NIC is to a GPU on the PCIe tree, and which NICs are a GPU's nearest, is read from the
PCIe ancestries the adapters record (``Gpu.pci_path``, ``Nic.pci_path``) and the NUMA nodes they report.
The classes follow ``nvidia-smi topo -m``: ``switch`` is its PIX/PXB (a common PCIe bridge, no host
bridge crossed), ``host-bridge`` its PHB, ``node`` its NODE and ``system`` its SYS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any

from gpunuma.core.cpuset import CpuSet


@dataclass(frozen=True, slots=True)
class NumaNode:
    """One NUMA node. ``cpus`` is empty for CPU-less nodes (GPU memory on Grace machines)."""

    id: int
    cpus: CpuSet
    has_memory: bool = True
    #: Distance from this node to each online node, keyed by node id (sysfs ``distance``).
    distances: Mapping[int, int] = field(default_factory=dict)
    memory_mb: int | None = None

    @property
    def has_cpus(self) -> bool:
        return bool(self.cpus)

    def distance_to(self, other: int) -> int | None:
        return self.distances.get(other)

    def __hash__(self) -> int:
        return hash((self.id, self.cpus, self.has_memory, tuple(sorted(self.distances.items())), self.memory_mb))


@dataclass(frozen=True, slots=True)
class Cpu:
    """One logical CPU: its socket (package), core and SMT siblings (the CPUs of its core).

    ``core`` numbers the cores of a package 0, 1, 2... by their lowest CPU, so it repeats
    across packages; ``(package, core)`` identifies a core, and ``siblings`` are its CPUs.
    """

    id: int
    package: int
    core: int
    siblings: CpuSet
    online: bool = True


@dataclass(frozen=True, slots=True)
class CacheDomain:
    """CPUs that share one cache (sysfs ``cpu*/cache/index*/shared_cpu_list``) of the given ``level``.

    A topology keeps the domains of the last level: one L3 per CCD on AMD EPYC, per socket or SNC
    domain on Intel Xeon.
    """

    level: int
    cpus: CpuSet


@dataclass(frozen=True, slots=True)
class Nic:
    """An RDMA device (``/sys/class/infiniband/<name>``) and the PCI function behind it.

    ``ports`` are its port numbers (``ports/*``), ``netdevs`` the network interfaces on that
    function (``device/net/*``), ``link_layer`` what its first port speaks (``InfiniBand`` or
    ``Ethernet``), ``pci_path`` its PCIe ancestry (see :attr:`Gpu.pci_path`).
    """

    name: str
    pci_bus_id: str
    numa_node: int | None = None
    ports: tuple[int, ...] = ()
    netdevs: tuple[str, ...] = ()
    link_layer: str | None = None
    pci_path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MigDevice:
    """A MIG instance: its UUID and the physical GPU (by index) it lives on."""

    uuid: str
    parent_index: int
    gi: int | None = None
    ci: int | None = None


@dataclass(frozen=True)
class Gpu:
    """One physical GPU.

    ``index`` is its position in PCI bus order (NVML and ``nvidia-smi`` order).
    ``numa_node`` is the CPU-side node the platform reports (None for the kernel's -1).
    ``memory_node`` is the node that holds the GPU's own memory on coherent platforms
    (NVML's ``nvmlDeviceGetNumaNodeId`` on GH200/GB200), else None.
    ``affinity_nodes`` are the nodes NVML names in its memory affinity (may be several).
    """

    index: int
    pci_bus_id: str
    uuid: str | None = None
    vendor: str = "nvidia"
    numa_node: int | None = None
    local_cpus: CpuSet | None = None
    memory_node: int | None = None
    affinity_nodes: tuple[int, ...] = ()
    mig_devices: tuple[MigDevice, ...] = ()
    name: str | None = None
    #: Why a field is unknown (``"nvmlDeviceGetNumaNodeId: NotSupported"``), for reports.
    notes: tuple[str, ...] = ()
    #: PCIe ancestry from the resolved sysfs device path, root first: the host bridge
    #: (``pci0000:15``), then every bridge down to the device's own bus id. Empty when unknown.
    pci_path: tuple[str, ...] = ()

    @cached_property
    def label(self) -> str:
        """``GPU 5 (0000:9a:00.0)``: how reasons name a GPU."""
        return f"GPU {self.index} ({self.pci_bus_id})"


@dataclass(frozen=True)
class Topology:
    """A machine: its NUMA nodes, CPUs and GPUs, and where the snapshot came from."""

    nodes: tuple[NumaNode, ...]
    cpus: tuple[Cpu, ...] = ()
    gpus: tuple[Gpu, ...] = ()
    source: str = "unknown"
    #: Adapter warnings (a disagreement between NVML and sysfs, an unreadable file).
    notes: tuple[str, ...] = ()
    #: The last-level cache domains, ordered by lowest CPU (empty when sysfs has no cache files).
    caches: tuple[CacheDomain, ...] = ()
    #: RDMA NICs in PCI bus order.
    nics: tuple[Nic, ...] = ()

    # Lookup indexes, built on first use. cached stores into the instance __dict__
    # directly, so it works on this frozen dataclass; the fields it derives from never change.
    @cached_property
    def _node_index(self) -> dict[int, NumaNode]:
        index: dict[int, NumaNode] = {}
        for node in self.nodes:
            index.setdefault(node.id, node)  # first wins, as a scan would find it
        return index

    @cached_property
    def _gpu_index(self) -> dict[int, Gpu]:
        index: dict[int, Gpu] = {}
        for gpu in self.gpus:
            index.setdefault(gpu.index, gpu)
        return index

    @cached_property
    def _cpu_index(self) -> dict[int, Cpu]:
        index: dict[int, Cpu] = {}
        for cpu in self.cpus:
            index.setdefault(cpu.id, cpu)
        return index

    @cached_property
    def core_ids(self) -> dict[int, frozenset[int]]:
        """Each described CPU's core: its id with its thread siblings' (what whole-core splits read)."""
        return {cpu.id: cpu.siblings.ids | {cpu.id} for cpu in self._cpu_index.values()}

    @cached_property
    def core_lists(self) -> dict[tuple[frozenset[int], frozenset[int]], list[CpuSet]]:
        """Memo of the planner's whole-core lists of this topology, by (CPUs, allowed CPUs)."""
        return {}

    def node(self, node_id: int) -> NumaNode | None:
        return self._node_index.get(node_id)

    def gpu(self, index: int) -> Gpu | None:
        return self._gpu_index.get(index)

    def cpu(self, cpu_id: int) -> Cpu | None:
        return self._cpu_index.get(cpu_id)

    @cached_property
    def all_cpus(self) -> CpuSet:
        """Every CPU that belongs to a node."""
        result = CpuSet()
        for node in self.nodes:
            result = result | node.cpus
        return result

    @cached_property
    def cpu_nodes(self) -> tuple[NumaNode, ...]:
        """Nodes that have CPUs, ascending by id."""
        return tuple(node for node in self.nodes if node.has_cpus)

    def node_of_cpu(self, cpu_id: int) -> int | None:
        for node in self.nodes:
            if cpu_id in node.cpus:
                return node.id
        return None

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape of ``gpunuma topo --json`` (documented in docs/cli.md)."""
        return {
            "source": self.source,
            "gpus": [
                {
                    "index": gpu.index,
                    "uuid": gpu.uuid,
                    "pci_bus_id": gpu.pci_bus_id,
                    "vendor": gpu.vendor,
                    "numa_node": gpu.numa_node,
                    "memory_node": gpu.memory_node,
                    "affinity_nodes": list(gpu.affinity_nodes),
                    "local_cpus": gpu.local_cpus.to_list() if gpu.local_cpus is not None else None,
                    "mig_devices": [mig.uuid for mig in gpu.mig_devices],
                    "notes": list(gpu.notes),
                    "nics": [near.to_dict() for near in nearest_nics(self, gpu)],
                }
                for gpu in self.gpus
            ],
            "nodes": [
                {
                    "id": node.id,
                    "cpus": node.cpus.to_list(),
                    "has_memory": node.has_memory,
                    "memory_mb": node.memory_mb,
                    "distances": {str(k): v for k, v in sorted(node.distances.items())},
                }
                for node in self.nodes
            ],
            "caches": [{"level": cache.level, "cpus": cache.cpus.to_list()} for cache in self.caches],
            "nics": [nic_dict(nic) for nic in self.nics],
            "notes": list(self.notes),
        }


#: The link layer NCCL's IB transport and UCX's ``rc`` transports want; storage and management
#: ports are usually Ethernet.
INFINIBAND = "InfiniBand"


class PcieDistance(str, Enum):
    """How far apart two PCI functions are, nearest first."""

    SWITCH = "switch"
    """Behind a common PCIe switch or root port: traffic never reaches the host bridge."""
    HOST_BRIDGE = "host-bridge"
    """Under the same host bridge (root complex), through it."""
    NODE = "node"
    """On the same NUMA node, under different host bridges."""
    SYSTEM = "system"
    """Across sockets, or where locality is unknown."""

    @property
    def rank(self) -> int:
        return _RANK[self]


_ORDER = (PcieDistance.SWITCH, PcieDistance.HOST_BRIDGE, PcieDistance.NODE, PcieDistance.SYSTEM)
_RANK = {distance: rank for rank, distance in enumerate(_ORDER)}
#: The link count that sorts after every measured one (no common PCIe tree).
_FAR = 1 << 16


@dataclass(frozen=True, slots=True)
class NearNic:
    """A NIC as seen from one GPU: how far it is and how many PCIe links lie between (None: not one tree)."""

    nic: Nic
    distance: PcieDistance
    hops: int | None

    def key(self) -> tuple[int, int, int, str]:
        """Nearest first: class, links, InfiniBand before Ethernet, then bus id."""
        return _key(self.nic, self.distance, self.hops)

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "pci_bus_id", "numa_node", "ports", "netdevs", "link_layer", "distance", "hops"}``."""
        return {**nic_dict(self.nic), "distance": self.distance.value, "hops": self.hops}


def nic_dict(nic: Nic) -> dict[str, Any]:
    """A NIC in the JSON shapes of ``gpunuma topo`` and ``gpunuma plan``."""
    return {
        "name": nic.name,
        "pci_bus_id": nic.pci_bus_id,
        "numa_node": nic.numa_node,
        "ports": list(nic.ports),
        "netdevs": list(nic.netdevs),
        "link_layer": nic.link_layer,
    }


def pcie_distance(
    first: Sequence[str], first_node: int | None, second: Sequence[str], second_node: int | None
) -> tuple[PcieDistance, int | None]:
    """The class and link count between two PCI functions given their ancestries (root first) and nodes.

    An ancestry starts with the host bridge (``pci0000:15``) and ends with the function itself;
    sharing more than the host bridge means sharing a PCIe bridge (a root port or a switch port).
    """
    if first and second and first[0] == second[0]:
        common = 0
        for mine, theirs in zip(first, second, strict=False):
            if mine != theirs:
                break
            common += 1
        hops = (len(first) - common) + (len(second) - common)
        return (PcieDistance.SWITCH if common > 1 else PcieDistance.HOST_BRIDGE), hops
    if first_node is not None and first_node == second_node:
        return PcieDistance.NODE, None
    return PcieDistance.SYSTEM, None


def _key(nic: Nic, distance: PcieDistance, hops: int | None) -> tuple[int, int, int, str]:
    return (
        _RANK[distance],
        hops if hops is not None else _FAR,
        0 if nic.link_layer in (None, INFINIBAND) else 1,
        nic.pci_bus_id,
    )


def _scored(nics: Sequence[Nic], gpu: Gpu) -> list[tuple[tuple[int, int, int, str], Nic, PcieDistance, int | None]]:
    """Each of ``nics`` with its sort key, class and link count as seen from ``gpu``, nearest first."""
    scored = []
    for nic in nics:
        distance, hops = pcie_distance(gpu.pci_path, gpu.numa_node, nic.pci_path, nic.numa_node)
        scored.append((_key(nic, distance, hops), nic, distance, hops))
    scored.sort(key=lambda entry: entry[0])
    return scored


def ranked_nics(topology: Topology, gpu: Gpu) -> tuple[NearNic, ...]:
    """Every NIC of ``topology``, nearest to ``gpu`` first."""
    return tuple(NearNic(nic, distance, hops) for _, nic, distance, hops in _scored(topology.nics, gpu))


def nearest_nics(topology: Topology, gpu: Gpu) -> tuple[NearNic, ...]:
    """The NICs tied for nearest to ``gpu`` (same class, link count and link layer), by bus id.

    Only those become :class:`NearNic` values: a plan ranks the NICs for each of its GPUs. A NIC under the GPU's
    own host bridge (``switch`` or ``host-bridge``) is nearer than any other, so when there are some only they
    are ranked.
    """
    bridge = gpu.pci_path[0] if gpu.pci_path else None
    local = [nic for nic in topology.nics if nic.pci_path and nic.pci_path[0] == bridge] if bridge else []
    scored = _scored(local or topology.nics, gpu)
    if not scored:
        return ()
    best = scored[0][0][:3]
    return tuple(NearNic(nic, distance, hops) for key, nic, distance, hops in scored if key[:3] == best)
