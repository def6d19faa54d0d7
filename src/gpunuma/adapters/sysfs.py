"""The sysfs topology adapter: nodes, CPUs and GPUs from ``/sys``, the process's limits from ``/proc``.

Vendor-neutral (NVIDIA and AMD), no library needed. ``root`` points it at a rendered tree in tests.
"""

from __future__ import annotations

import os
from pathlib import Path

from gpunuma.adapters.procfs import parse_cpulist, parse_cpumask, parse_idlist, read_allowed, read_text
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.model import Cpu, Gpu, NumaNode, Topology
from gpunuma.core.plan import Allowed
from gpunuma.errors import SysfsFormatError, TopologyUnavailableError

_VENDORS = {0x10DE: "nvidia", 0x1002: "amd"}
#: PCI base class + subclass of a GPU: VGA, 3D controller, other display controller.
_GPU_CLASSES = {0x0300, 0x0302, 0x0380}
#: MI300-series boards are "processing accelerators"; only AMD's count as GPUs.
_AMD_ACCELERATOR = 0x1200
_LOCAL_DISTANCE = 10


def _int(path: str | Path, text: str, base: int = 10) -> int:
    try:
        return int(text.strip(), base)
    except ValueError as err:
        raise SysfsFormatError(path, text, "not an integer") from err


def _info_fields(text: str, keys: tuple[str, ...]) -> dict[str, str]:
    """The ``Key: value`` lines of ``keys`` in the driver's ``information`` file, stripped."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in keys:
            fields[key] = value.strip()
    return fields


def _bus_key(bdf: str) -> tuple[int, ...]:
    """``0000:1b:00.0`` -> (0, 0x1b, 0, 0), so domains wider than 4 digits sort right."""
    try:
        domain, bus, rest = bdf.split(":")
        device, function = rest.split(".")
        return (int(domain, 16), int(bus, 16), int(device, 16), int(function, 16))
    except ValueError:
        return (1 << 32, 0, 0, 0)


class SysfsTopology:
    """Reads the topology from sysfs and the process's cpuset from procfs/cgroupfs under ``root``."""

    name = "sysfs"

    def __init__(self, root: str | Path = "/", pid: int | str = "self") -> None:
        self.root = Path(root)
        self.pid = pid

    def __repr__(self) -> str:
        return f"SysfsTopology(root={str(self.root)!r}, pid={self.pid!r})"

    # -- the port ------------------------------------------------------------------------
    def read(self) -> Topology:
        """A snapshot of nodes, online CPUs and GPUs; unreadable optional files become notes."""
        cpu_dir = self.root / "sys/devices/system/cpu"
        if not os.path.isdir(cpu_dir):
            raise TopologyUnavailableError(f"{cpu_dir}: no sysfs CPU directory (is sysfs mounted?)")
        notes: list[str] = []
        online = self._online_cpus(cpu_dir, notes)
        cpus = self._cpus(cpu_dir, online, notes)
        nodes = self._nodes(online, notes)
        gpus = self._gpus(notes)
        return Topology(nodes=nodes, cpus=cpus, gpus=gpus, source="sysfs", notes=tuple(notes))

    def allowed(self) -> Allowed:
        """The cgroup cpuset (v2, then v1, then the status lists) and the current affinity."""
        return read_allowed(self.root, self.pid)

    # -- CPUs ----------------------------------------------------------------------------
    def _online_cpus(self, cpu_dir: Path, notes: list[str]) -> CpuSet:
        for name in ("online", "present", "possible"):
            path = cpu_dir / name
            text = read_text(path)
            if text is not None:
                if name != "online":
                    notes.append(f"{cpu_dir / 'online'} missing: took every CPU of {name!r} as online")
                return parse_cpulist(path, text)
        found = CpuSet.of(
            int(entry.name[3:]) for entry in os.scandir(cpu_dir) if entry.name[:3] == "cpu" and entry.name[3:].isdigit()
        )
        notes.append(f"{cpu_dir / 'online'} missing: took every cpuN directory as online")
        return found

    def _cpus(self, cpu_dir: Path, online: CpuSet, notes: list[str]) -> tuple[Cpu, ...]:
        # One read of core_cpus_list per core (siblings share it) and one package_cpus_list per
        # package: a 224-CPU machine costs ~115 small reads, not ~900. The kernel's core_id is not
        # read: it is a sparse platform id that adds nothing once the siblings are known, so a
        # core is numbered by its place in its package (lowest CPU first). Opens dominate the cost.
        # Plain string paths: pathlib's per-join cost exceeds the read itself here.
        result: dict[int, Cpu] = {}
        package_of: dict[int, int] = {}
        cores_in: dict[int, int] = {}  # package -> cores numbered so far
        missing: list[int] = []
        base = str(cpu_dir)
        online_ids = online.ids
        for cpu in sorted(online_ids):
            if cpu in result:
                continue
            folder = f"{base}/cpu{cpu}/topology/"
            siblings_path = folder + "core_cpus_list"
            siblings_text = read_text(siblings_path)
            if siblings_text is None:
                siblings_path = folder + "thread_siblings_list"
                siblings_text = read_text(siblings_path)
            if siblings_text is None:
                missing.append(cpu)
                result[cpu] = Cpu(id=cpu, package=package_of.get(cpu, 0), core=cpu, siblings=CpuSet.of([cpu]))
                continue
            sibling_ids = parse_idlist(siblings_path, siblings_text) & online_ids
            if cpu not in sibling_ids:
                sibling_ids = sibling_ids | {cpu}
            siblings = CpuSet._trusted(sibling_ids)
            if cpu not in package_of:
                self._read_package(folder, cpu, online, package_of)
            package = package_of[cpu]
            core = cores_in.get(package, 0)
            cores_in[package] = core + 1
            for sibling in sibling_ids:
                result[sibling] = Cpu(sibling, package, core, siblings)  # positional: ~20% cheaper per CPU
        if missing:
            notes.append(
                f"no CPU topology files for CPUs {CpuSet.of(missing).to_list()}: "
                "each taken as its own core on package 0"
            )
        return tuple(result[cpu] for cpu in sorted(result))

    @staticmethod
    def _read_package(folder: str, cpu: int, online: CpuSet, package_of: dict[int, int]) -> None:
        id_path = folder + "physical_package_id"
        id_text = read_text(id_path)
        package = _int(id_path, id_text) if id_text is not None else 0
        members_path = folder + "package_cpus_list"
        members_text = read_text(members_path)
        if members_text is None:
            members_path = folder + "core_siblings_list"
            members_text = read_text(members_path)
        members = parse_idlist(members_path, members_text) if members_text is not None else frozenset()
        for member in members | {cpu}:
            package_of[member] = package

    # -- nodes ---------------------------------------------------------------------------
    def _nodes(self, online: CpuSet, notes: list[str]) -> tuple[NumaNode, ...]:
        node_dir = self.root / "sys/devices/system/node"
        if not os.path.isdir(node_dir):
            notes.append(f"{node_dir} missing (kernel without NUMA): one node 0 holding every online CPU")
            return (
                NumaNode(
                    id=0,
                    cpus=online,
                    has_memory=True,
                    distances={0: _LOCAL_DISTANCE},
                    memory_mb=self._memtotal_mb(self.root / "proc/meminfo", "MemTotal:", notes),
                ),
            )
        ids = self._online_nodes(node_dir, notes)
        with_memory = self._nodes_with_memory(node_dir, notes)
        nodes = []
        for node_id in ids:
            folder = f"{node_dir}/node{node_id}/"
            cpus_path = folder + "cpulist"
            cpus_text = read_text(cpus_path)
            if cpus_text is None:
                notes.append(f"{cpus_path} missing: node {node_id} taken as CPU-less")
                cpus = CpuSet()
            else:
                cpus = parse_cpulist(cpus_path, cpus_text) & online
            memory_mb = self._memtotal_mb(folder + "meminfo", f"Node {node_id} MemTotal:", notes)
            if with_memory is not None:
                has_memory = node_id in with_memory
            else:
                has_memory = memory_mb is None or memory_mb > 0
            nodes.append(
                NumaNode(
                    id=node_id,
                    cpus=cpus,
                    has_memory=has_memory,
                    distances=self._distances(folder + "distance", node_id, ids, notes),
                    memory_mb=memory_mb,
                )
            )
        return tuple(nodes)

    @staticmethod
    def _online_nodes(node_dir: Path, notes: list[str]) -> tuple[int, ...]:
        path = node_dir / "online"
        text = read_text(path)
        if text is not None:
            return tuple(sorted(parse_idlist(path, text)))
        notes.append(f"{path} missing: took every nodeN directory as online")
        return tuple(
            sorted(
                int(entry.name[4:])
                for entry in os.scandir(node_dir)
                if entry.name[:4] == "node" and entry.name[4:].isdigit()
            )
        )

    @staticmethod
    def _nodes_with_memory(node_dir: Path, notes: list[str]) -> frozenset[int] | None:
        path = node_dir / "has_memory"
        text = read_text(path)
        if text is None:
            notes.append(f"{path} missing: memory judged from each node's meminfo")
            return None
        return parse_idlist(path, text)

    @staticmethod
    def _distances(path: str, node_id: int, ids: tuple[int, ...], notes: list[str]) -> dict[int, int]:
        text = read_text(path)
        if text is None:
            notes.append(f"{path} missing: node {node_id} knows only its own distance")
            return {node_id: _LOCAL_DISTANCE}
        fields = text.split()
        # One entry per online node in id order, not indexed by id: sparse ids map by position.
        if len(fields) != len(ids):
            raise SysfsFormatError(path, text, f"{len(fields)} distances for {len(ids)} online nodes")
        return {other: _int(path, field) for other, field in zip(ids, fields, strict=True)}

    @staticmethod
    def _memtotal_mb(path: str | Path, prefix: str, notes: list[str]) -> int | None:
        text = read_text(path)
        if text is None:
            notes.append(f"{path} missing: memory size unknown")
            return None
        for line in text.splitlines():
            if line.startswith(prefix):
                value = line[len(prefix) :].split()
                if len(value) != 2 or value[1] != "kB" or not value[0].isdigit():
                    raise SysfsFormatError(path, line, "not 'MemTotal: <n> kB'")
                return int(value[0]) // 1024
        raise SysfsFormatError(path, text, f"no {prefix!r} line")

    # -- GPUs ----------------------------------------------------------------------------
    def _gpus(self, notes: list[str]) -> tuple[Gpu, ...]:
        pci_dir = self.root / "sys/bus/pci/devices"
        try:
            entries = sorted((entry.name for entry in os.scandir(pci_dir)), key=_bus_key)
        except FileNotFoundError:
            notes.append(f"{pci_dir} missing: no GPUs")
            return ()
        gpus: list[Gpu] = []
        for bdf in entries:
            folder = f"{pci_dir}/{bdf}/"
            vendor = self._gpu_vendor(folder)
            if vendor is not None:
                gpus.append(self._gpu(folder, bdf, len(gpus), vendor))
        return tuple(gpus)

    @staticmethod
    def _gpu_vendor(folder: str) -> str | None:
        """The vendor name when the PCI function is a GPU, else None."""
        class_path = folder + "class"
        class_text = read_text(class_path)
        if class_text is None:
            return None
        klass = _int(class_path, class_text, 16) >> 8
        if klass not in _GPU_CLASSES and klass != _AMD_ACCELERATOR:
            return None
        vendor_path = folder + "vendor"
        vendor_text = read_text(vendor_path)
        if vendor_text is None:
            return None
        vendor = _VENDORS.get(_int(vendor_path, vendor_text, 16))
        if klass == _AMD_ACCELERATOR and vendor != "amd":
            return None
        return vendor

    def _gpu(self, folder: str, bdf: str, index: int, vendor: str) -> Gpu:
        notes: list[str] = []
        node_path = folder + "numa_node"
        node_text = read_text(node_path)
        if node_text is None:
            notes.append(f"{node_path} missing: NUMA node unknown")
            numa_node = None
        else:
            value = _int(node_path, node_text)
            if value < -1:
                raise SysfsFormatError(node_path, node_text, "a node id below -1")
            numa_node = None if value == -1 else value
        local_cpus = self._local_cpus(folder, notes)
        uuid = name = None
        if vendor == "nvidia":
            info_path = f"{self.root}/proc/driver/nvidia/gpus/{bdf}/information"
            info = read_text(info_path)
            if info is None:
                notes.append(f"{info_path} missing: UUID unknown to sysfs")
            else:
                fields = _info_fields(info, ("GPU UUID", "Model"))
                uuid = fields.get("GPU UUID") or None
                name = fields.get("Model") or None
        else:
            product = read_text(folder + "product_name")  # amdgpu's board name
            name = (product.strip() or None) if product is not None else None
        return Gpu(
            index=index,
            pci_bus_id=bdf,
            uuid=uuid,
            vendor=vendor,
            numa_node=numa_node,
            local_cpus=local_cpus,
            name=name,
            notes=tuple(notes),
        )

    @staticmethod
    def _local_cpus(folder: str, notes: list[str]) -> CpuSet | None:
        list_path = folder + "local_cpulist"
        text = read_text(list_path)
        if text is not None:
            return parse_cpulist(list_path, text)
        mask_path = folder + "local_cpus"
        mask = read_text(mask_path)
        if mask is None:
            notes.append(f"{list_path} and local_cpus missing: local CPUs unknown")
            return None
        return parse_cpumask(mask_path, mask)
