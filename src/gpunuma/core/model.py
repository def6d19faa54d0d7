"""The topology value: NUMA nodes, CPUs and GPUs of one machine, as a frozen snapshot.

Adapters (sysfs, NVML, fakes) produce it; the planner reads it; nothing mutates it.
"""

from __future__ import annotations

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.value import Value, cached, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


class NumaNode(Value):
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


class Cpu(Value):
    """One logical CPU: its socket (package), core and SMT siblings (the CPUs of its core).

    ``core`` numbers the cores of a package 0, 1, 2... by their lowest CPU, so it repeats
    across packages; ``(package, core)`` identifies a core, and ``siblings`` are its CPUs.
    """

    id: int
    package: int
    core: int
    siblings: CpuSet
    online: bool = True


class CacheDomain(Value):
    """CPUs that share one cache (sysfs ``cpu*/cache/index*/shared_cpu_list``) of the given ``level``.

    A topology keeps the domains of the last level: one L3 per CCD on AMD EPYC, per socket or SNC
    domain on Intel Xeon.
    """

    level: int
    cpus: CpuSet


class Nic(Value):
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


class MigDevice(Value):
    """A MIG instance: its UUID and the physical GPU (by index) it lives on."""

    uuid: str
    parent_index: int
    gi: int | None = None
    ci: int | None = None


class Gpu(Value):
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

    @cached
    def label(self) -> str:
        """``GPU 5 (0000:9a:00.0)``: how reasons name a GPU."""
        return f"GPU {self.index} ({self.pci_bus_id})"


class Topology(Value):
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
    @cached
    def _node_index(self) -> dict[int, NumaNode]:
        index: dict[int, NumaNode] = {}
        for node in self.nodes:
            index.setdefault(node.id, node)  # first wins, as a scan would find it
        return index

    @cached
    def _gpu_index(self) -> dict[int, Gpu]:
        index: dict[int, Gpu] = {}
        for gpu in self.gpus:
            index.setdefault(gpu.index, gpu)
        return index

    @cached
    def _cpu_index(self) -> dict[int, Cpu]:
        index: dict[int, Cpu] = {}
        for cpu in self.cpus:
            index.setdefault(cpu.id, cpu)
        return index

    def node(self, node_id: int) -> NumaNode | None:
        return self._node_index.get(node_id)

    def gpu(self, index: int) -> Gpu | None:
        return self._gpu_index.get(index)

    def cpu(self, cpu_id: int) -> Cpu | None:
        return self._cpu_index.get(cpu_id)

    @cached
    def all_cpus(self) -> CpuSet:
        """Every CPU that belongs to a node."""
        result = CpuSet()
        for node in self.nodes:
            result = result | node.cpus
        return result

    @cached
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
        from gpunuma.core.pcie import nearest_nics, nic_dict  # pcie builds on this module

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
