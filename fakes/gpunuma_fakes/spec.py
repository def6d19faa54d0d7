"""Simulated machines declared as data: nodes, CPU layout, GPUs, the process's cgroup.

A :class:`Machine` renders a sysfs tree (``render.py``) and a fake ``pynvml``
(``nvml.py``), and declares the :class:`~gpunuma.core.model.Topology` the real adapters
must read from them (:meth:`Machine.topology`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from gpunuma.adapters.auto import AutoTopology
from gpunuma.adapters.nvml import NvmlTopology
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.kernel_policy import NUMA_MAPS_MODES, Mempolicy
from gpunuma.core.model import CacheDomain, Cpu, Gpu, MigDevice, Nic, NumaNode, Topology
from gpunuma.core.plan import Allowed
from gpunuma.core.ports import TopologySource
from gpunuma_fakes.kernel import SimulatedKernel
from gpunuma_fakes.nvml import FakeNvml
from gpunuma_fakes.pcie import pcie_layout
from gpunuma_fakes.render import ensure_rendered, machine_tree

#: The topology sources :meth:`Machine.source` builds, by registry name.
SOURCE_KINDS = ("auto", "sysfs", "nvml")


@dataclass(frozen=True)
class NodeSpec:
    """A NUMA node: its cpulist (empty for CPU-less nodes), memory size and sysfs distance row.

    ``distances`` is the sysfs ``distance`` row: one entry per online node, in node-id order.
    """

    id: int
    cpus: str
    memory_mb: int
    distances: tuple[int, ...]


@dataclass(frozen=True)
class GpuSpec:
    """A GPU as sysfs and NVML each report it.

    ``sysfs_numa_node`` is the PCI ``numa_node`` file (-1 when the platform does not say).
    ``local_cpus`` is the PCI ``local_cpulist``; None means "as the kernel derives it": the
    node's CPUs, or every CPU when ``numa_node`` is -1.
    ``nvml_numa_node`` is what ``nvmlDeviceGetNumaNodeId`` returns (None: NotSupported).
    ``nvml_cpu_affinity`` is NVML's node-scope CPU affinity (None: same as ``local_cpus``).
    ``nvml_memory_affinity`` is NVML's node-scope memory affinity (None: the sysfs node,
    or every node with memory when that is -1).
    """

    bus_id: str
    uuid: str
    sysfs_numa_node: int
    name: str = "NVIDIA H100 80GB HBM3"
    vendor: str = "nvidia"
    local_cpus: str | None = None
    nvml_numa_node: int | None = None
    nvml_cpu_affinity: str | None = None
    nvml_memory_affinity: tuple[int, ...] | None = None
    mig_uuids: tuple[str, ...] = ()
    #: The PCI class code (None: as the board implies: 3D controller, VGA for GeForce/RTX, accelerator for AMD).
    pci_class: int | None = None
    #: False for a display-only chip (an onboard AMD ES1000 under the radeon driver): no ROCm compute.
    compute: bool = True
    #: The PCIe switches above the GPU, outermost first; devices naming the same switch share it.
    #: Empty: the GPU sits alone on a root port (or on the root bus when its bus is 0).
    switches: tuple[str, ...] = ()
    #: False: the PCI function has no ``vendor``, ``device`` or ``numa_node`` file (hwloc's capture of an IBM
    #: POWER9 host keeps only its class and local CPUs); the NVIDIA driver's listing names it.
    pci_ids: bool = True


@dataclass(frozen=True)
class NicSpec:
    """An RDMA NIC function: its RDMA device name, PCI function, node and one network interface.

    ``switches`` places it in the PCIe tree like :attr:`GpuSpec.switches`. ``model`` picks the PCI
    device id (``ConnectX-6``, ``ConnectX-7``, ``BlueField-3``).
    """

    name: str
    bus_id: str
    numa_node: int
    netdev: str
    link_layer: str = "InfiniBand"
    model: str = "ConnectX-7"
    switches: tuple[str, ...] = ()


@dataclass(frozen=True)
class Machine:
    """A simulated machine. CPUs are numbered as Linux enumerates x86 and Grace parts:
    first thread of every core socket by socket, then the second threads in the same order
    (CPU ``t*sockets*cores + s*cores + c``), or as POWER does (``threads_consecutive``).
    """

    name: str
    description: str
    #: Where each figure came from (public captures, vendor docs).
    sources: tuple[str, ...]
    sockets: int
    cores_per_socket: int
    threads_per_core: int
    nodes: tuple[NodeSpec, ...]
    gpus: tuple[GpuSpec, ...]
    #: True: a core's SMT threads are numbered consecutively (POWER: CPUs 0-3 are core 0), not as x86 does.
    threads_consecutive: bool = False
    #: Nodes that list another node's CPUs at the local distance of it (an old kernel's layout): a correct
    #: reader keeps the first of them (the lowest id with memory) and leaves these out.
    merged_nodes: tuple[int, ...] = ()
    #: GPU index -> the node the default plan must bind to (None: must not bind).
    expected_nodes: dict[int, int | None] = field(default_factory=dict)
    offline_cpus: str = ""
    #: The process's cgroup cpuset and affinity (None: the whole machine).
    cgroup_cpus: str | None = None
    cgroup_mems: str | None = None
    affinity: str | None = None
    #: The process's cgroup as ``/proc/<pid>/cgroup`` names it, and the hierarchy version (1 or 2).
    cgroup_path: str = "/"
    cgroup_version: int = 2
    #: Render no ``/sys/devices/system/node`` directory (a kernel without NUMA).
    no_numa_dir: bool = False
    #: A container's GPUs, by bus id (None: a host process, every GPU). The NVIDIA runtime lists only
    #: these under ``/proc/driver/nvidia/gpus`` and ``/dev``; ``docker --device`` gives AMD render nodes.
    exposed_gpus: tuple[str, ...] | None = None
    #: NVIDIA GPUs injected by CDI: only ``/dev/nvidiaN`` is narrowed, ``/proc/driver/nvidia`` lists every GPU.
    cdi: bool = False
    #: How the runtime names the exposed GPUs in ``NVIDIA_VISIBLE_DEVICES``: ``minor`` (``docker --gpus``)
    #: or ``uuid`` (the Kubernetes NVIDIA device plugin's default).
    visible_device_ids: str = "minor"
    #: A memory policy the process already holds, as ``numa_maps`` writes it (``bind:0``, ``interleave:0-1``):
    #: what ``numactl --membind``/``--interleave`` leaves (None: the default policy).
    mempolicy: str | None = None
    #: Cores sharing one L3 within a socket (an EPYC CCD); None: one L3 per socket.
    l3_cores: int | None = None
    #: RDMA NICs (``/sys/class/infiniband``).
    nics: tuple[NicSpec, ...] = ()
    #: Functions that are not GPUs however they look (Intel integrated graphics): (bus id, vendor, class).
    decoys: tuple[tuple[str, int, int], ...] = ()

    # -- CPU layout -----------------------------------------------------------------
    @property
    def cpu_count(self) -> int:
        return self.sockets * self.cores_per_socket * self.threads_per_core

    def cpu_layout(self, cpu_id: int) -> tuple[int, int, CpuSet]:
        """(package, core id, SMT siblings) of a CPU under the machine's numbering."""
        if self.threads_consecutive:
            core_index, _ = divmod(cpu_id, self.threads_per_core)
            first = core_index * self.threads_per_core
            siblings = CpuSet.range(first, first + self.threads_per_core - 1)
            return core_index // self.cores_per_socket, core_index % self.cores_per_socket, siblings
        per_thread = self.sockets * self.cores_per_socket
        core_index = cpu_id % per_thread
        package = core_index // self.cores_per_socket
        core = core_index % self.cores_per_socket
        siblings = CpuSet.of(core_index + t * per_thread for t in range(self.threads_per_core))
        return package, core, siblings

    # -- what the adapters must read ----------------------------------------------------
    def all_cpus(self) -> CpuSet:
        return CpuSet.range(0, self.cpu_count - 1)

    def online_cpus(self) -> CpuSet:
        return self.all_cpus() - CpuSet.parse_list(self.offline_cpus)

    def node_cpus(self, node_id: int) -> CpuSet:
        for node in self.nodes:
            if node.id == node_id:
                return CpuSet.parse_list(node.cpus)
        raise KeyError(node_id)

    def gpu_local_cpus(self, gpu: GpuSpec) -> CpuSet:
        """The PCI ``local_cpulist`` the kernel shows for this GPU."""
        if gpu.local_cpus is not None:
            return CpuSet.parse_list(gpu.local_cpus)
        if gpu.sysfs_numa_node < 0:
            return self.all_cpus()
        return self.node_cpus(gpu.sysfs_numa_node)

    def gpu_nvml_cpus(self, gpu: GpuSpec) -> CpuSet:
        """NVML's node-scope CPU affinity of this GPU (``nvml_cpu_affinity``, else the PCI local CPUs)."""
        if gpu.nvml_cpu_affinity is not None:
            return CpuSet.parse_list(gpu.nvml_cpu_affinity)
        return self.gpu_local_cpus(gpu)

    def gpu_nvml_nodes(self, gpu: GpuSpec) -> CpuSet:
        """NVML's node-scope memory affinity: the spec's, else the sysfs node, else every node with memory."""
        if gpu.nvml_memory_affinity is not None:
            return CpuSet.of(gpu.nvml_memory_affinity)
        if gpu.sysfs_numa_node >= 0:
            return CpuSet.of([gpu.sysfs_numa_node])
        return CpuSet.of(node.id for node in self.nodes if node.memory_mb > 0)

    def l3_domains(self) -> tuple[CpuSet, ...]:
        """Every CPU's last-level cache domain (all threads of ``l3_cores`` consecutive cores), by lowest CPU."""
        per_l3 = self.l3_cores or self.cores_per_socket
        domains: dict[tuple[int, int], set[int]] = {}
        for cpu in range(self.cpu_count):
            package, core, _ = self.cpu_layout(cpu)
            domains.setdefault((package, core // per_l3), set()).add(cpu)
        return tuple(sorted((CpuSet.of(ids) for ids in domains.values()), key=lambda d: min(d.ids)))

    def online_node_ids(self) -> tuple[int, ...]:
        return tuple(sorted(node.id for node in self.nodes))

    def topology(self, *, nvml: bool = False) -> Topology:
        """The topology the sysfs adapter must read from this machine's tree.

        With ``nvml=True``, what ``AutoTopology`` must read with the machine's ``FakeNvml`` as well:
        each GPU's GPU-memory node and memory affinity, and, where sysfs reports no node, the one
        CPU node NVML's CPU affinity lies on (with that affinity as the local CPUs).
        """
        online = self.online_cpus()
        ids = self.online_node_ids()
        kept = [node_id for node_id in ids if node_id not in self.merged_nodes]
        nodes = tuple(
            NumaNode(
                id=node.id,
                cpus=CpuSet.parse_list(node.cpus) & online,
                has_memory=node.memory_mb > 0,
                distances={k: d for k, d in zip(ids, node.distances, strict=True) if k in kept},
                memory_mb=node.memory_mb,
            )
            for node in sorted(self.nodes, key=lambda n: n.id)
            if node.id in kept
        )
        cpus = []
        for cpu_id in sorted(online):
            package, core, siblings = self.cpu_layout(cpu_id)
            cpus.append(Cpu(id=cpu_id, package=package, core=core, siblings=siblings & online))

        paths = pcie_layout(self).paths
        gpus = tuple(
            Gpu(
                index=index,
                pci_bus_id=gpu.bus_id,
                uuid=gpu.uuid if gpu.vendor == "nvidia" else None,
                vendor=gpu.vendor,
                numa_node=None if gpu.sysfs_numa_node < 0 or not gpu.pci_ids else gpu.sysfs_numa_node,
                local_cpus=self.gpu_local_cpus(gpu),
                memory_node=self.driver_memory_node(gpu),
                mig_devices=tuple(MigDevice(uuid=u, parent_index=index) for u in gpu.mig_uuids),
                name=gpu.name if gpu.vendor != "intel" else None,
                pci_path=paths[gpu.bus_id],
            )
            for index, gpu in enumerate(self.visible_gpus())
        )
        if nvml:
            gpus = tuple(self._with_nvml(gpu, spec, nodes) for gpu, spec in zip(gpus, self.visible_gpus(), strict=True))
        caches = tuple(CacheDomain(3, domain & online) for domain in self.l3_domains() if domain & online)
        nics = tuple(
            Nic(
                name=nic.name,
                pci_bus_id=nic.bus_id,
                numa_node=nic.numa_node,
                ports=(1,),
                netdevs=(nic.netdev,),
                link_layer=nic.link_layer,
                pci_path=paths[nic.bus_id],
            )
            for nic in sorted(self.nics, key=lambda nic: nic.bus_id)
        )
        return Topology(nodes=nodes, cpus=tuple(cpus), gpus=gpus, source="sysfs", caches=caches, nics=nics)

    def _with_nvml(self, gpu: Gpu, spec: GpuSpec, nodes: tuple[NumaNode, ...]) -> Gpu:
        """``gpu`` as AutoTopology merges it with NVML's answers for ``spec`` (NVIDIA GPUs only)."""
        if spec.vendor != "nvidia":
            return gpu
        memory_node = spec.nvml_numa_node if spec.nvml_numa_node is not None and spec.nvml_numa_node >= 0 else None
        changes: dict[str, object] = {
            "memory_node": memory_node,
            "affinity_nodes": tuple(self.gpu_nvml_nodes(spec)),
        }
        if gpu.numa_node is None:
            cpus = self.gpu_nvml_cpus(spec) & self.online_cpus()
            touched = [node.id for node in nodes if node.has_cpus and not node.cpus.isdisjoint(cpus)]
            if cpus and not self.online_cpus() <= cpus and len(touched) == 1:
                changes.update(numa_node=touched[0], local_cpus=self.gpu_nvml_cpus(spec))
        return replace(gpu, **changes)  # type: ignore[arg-type]

    @staticmethod
    def driver_memory_node(gpu: GpuSpec) -> int | None:
        """The node the NVIDIA driver's ``numa_status`` names for the GPU's memory (None: no such file).

        The driver writes the file only where the GPU's memory is a NUMA node, the node NVML reports too.
        """
        if gpu.vendor != "nvidia" or gpu.nvml_numa_node is None or gpu.nvml_numa_node < 0:
            return None
        return gpu.nvml_numa_node

    def sorted_gpus(self) -> tuple[GpuSpec, ...]:
        """Every GPU of the host in PCI bus order (what ``/sys/bus/pci`` shows, container or not)."""
        return tuple(sorted(self.gpus, key=lambda g: g.bus_id))

    def nvidia_minor(self, gpu: GpuSpec) -> int:
        """The driver's ``Device Minor`` (``/dev/nvidiaN``): the host's NVIDIA GPUs numbered in bus order."""
        return [g.bus_id for g in self.sorted_gpus() if g.vendor == "nvidia"].index(gpu.bus_id)

    def render_minor(self, gpu: GpuSpec) -> int:
        """N of ``/dev/dri/renderDN`` for an AMD or Intel GPU: 128 onwards over those GPUs in bus order."""
        return 128 + [g.bus_id for g in self.sorted_gpus() if g.vendor in ("amd", "intel")].index(gpu.bus_id)

    def is_exposed(self, gpu: GpuSpec) -> bool:
        """Whether the process may open ``gpu`` (a host process may open every GPU)."""
        return self.exposed_gpus is None or gpu.bus_id in self.exposed_gpus

    def visible_gpus(self) -> tuple[GpuSpec, ...]:
        """The GPUs the process can use, in index order: CUDA numbers NVIDIA GPUs only and ROCm AMD
        ones only, each in bus order; the NVIDIA ones come first. Without ``/dev/kfd`` (no AMD GPU
        that computes) ROCm sees no AMD GPU at all."""
        exposed = [g for g in self.sorted_gpus() if self.is_exposed(g)]
        nvidia = [g for g in exposed if g.vendor == "nvidia"]
        amd = [g for g in exposed if g.vendor == "amd"] if self.has_kfd() else []
        intel = [g for g in exposed if g.vendor == "intel"]  # Level Zero opens the render node alone
        return (*nvidia, *amd, *intel)

    def has_kfd(self) -> bool:
        """Whether ``/dev/kfd`` (ROCm's compute device) exists: an exposed AMD GPU that computes."""
        return any(g.vendor == "amd" and g.compute and self.is_exposed(g) for g in self.gpus)

    def environment(self) -> dict[str, str]:
        """The variables the container runtime sets for the process (empty on a host)."""
        if self.exposed_gpus is None:
            return {}
        if self.cdi:
            return {"NVIDIA_VISIBLE_DEVICES": "void"}
        exposed = [g for g in self.sorted_gpus() if g.vendor == "nvidia" and self.is_exposed(g)]
        ids = [g.uuid if self.visible_device_ids == "uuid" else str(self.nvidia_minor(g)) for g in exposed]
        return {"NVIDIA_VISIBLE_DEVICES": ",".join(ids)} if ids else {}

    def allowed(self) -> Allowed:
        """What a process on this machine is allowed: cgroup cpuset, memory nodes, affinity."""
        cpus = CpuSet.parse_list(self.cgroup_cpus) if self.cgroup_cpus is not None else self.online_cpus()
        if self.cgroup_mems is not None:
            mems = frozenset(CpuSet.parse_list(self.cgroup_mems).ids)
        else:
            mems = frozenset(node.id for node in self.nodes if node.memory_mb > 0)
        affinity = CpuSet.parse_list(self.affinity) if self.affinity is not None else cpus
        return Allowed(cpus=cpus, mems=mems, affinity=affinity, mempolicy=self.held_mempolicy())

    def held_mempolicy(self) -> Mempolicy | None:
        """:attr:`mempolicy` as the kernel's value (None: the default policy)."""
        if self.mempolicy is None:
            return None
        word, _, nodes = self.mempolicy.partition(":")
        return Mempolicy(NUMA_MAPS_MODES[word], tuple(CpuSet.parse_list(nodes)))

    # -- the adapters, in one call ------------------------------------------------------
    def source(
        self, workdir: str | Path | None = None, kind: str = "auto", **nvml_options: object
    ) -> TopologySource:
        """The real ``kind`` adapter (``auto``, ``sysfs`` or ``nvml``) reading this machine.

        The sysfs reader reads the machine's tree held in memory (:func:`~gpunuma_fakes.render.machine_tree`);
        with ``workdir`` it reads the tree written there instead (rendered unless this very machine is
        rendered there already), for a test about files on disk. The NVML-reading sources get a
        :class:`~gpunuma_fakes.nvml.FakeNvml` of it (``nvml_options`` such as ``failure="driver_not_loaded"``
        go to it). Picklable.
        """
        if kind not in SOURCE_KINDS:
            raise ValueError(f"unknown source kind {kind!r}; known: {', '.join(SOURCE_KINDS)}")
        if workdir is None:
            sysfs = SysfsTopology(root=machine_tree(self))
        else:
            sysfs = SysfsTopology(root=str(ensure_rendered(self, Path(workdir))))
        if kind == "sysfs":
            return sysfs

        nvml = FakeNvml(self, **nvml_options)  # type: ignore[arg-type]
        if kind == "nvml":
            return NvmlTopology(nvml=nvml, sysfs=sysfs)

        return AutoTopology(nvml=nvml, sysfs=sysfs)

    def kernel(self, **options: object) -> SimulatedKernel:
        """This machine's :class:`~gpunuma_fakes.kernel.SimulatedKernel` (``fail=``, ``proc_root=``)."""
        return SimulatedKernel.for_machine(self, **options)
