"""The sysfs topology adapter: nodes, CPUs, caches, GPUs and RDMA NICs from ``/sys``, limits from ``/proc``.

Vendor-neutral (NVIDIA, AMD, Intel), no library needed. ``root`` points it at a folder of kernel files or
at a machine's tree held in memory (a simulated machine, a captured host's ``gpunuma snapshot`` or
``hwloc-gather-topology`` archive: :class:`~gpunuma.core.filetree.FileTree`): CPUs and nodes are read
as the kernel's own readers read them (:mod:`~gpunuma.adapters.sysfs_cpus`,
:mod:`~gpunuma.adapters.sysfs_nodes`); a missing optional file becomes a note, never a guess.
"""

from __future__ import annotations

import os
from pathlib import Path

from gpunuma.adapters.devices import device_minor, read_device_access, render_nodes
from gpunuma.adapters.files import HOST, files_of
from gpunuma.adapters.kernel_view import numa_maps_policy
from gpunuma.adapters.own_binding import ThisProcess, user_set
from gpunuma.adapters.procfs import (
    parse_cpulist,
    parse_cpumask,
    parse_int,
    parse_node_id,
    read_allowed,
    read_cgroup_cpuset,
    read_text,
    read_value,
)
from gpunuma.adapters.sysfs_caches import read_last_level_caches
from gpunuma.adapters.sysfs_cpus import read_cpus, read_online
from gpunuma.adapters.sysfs_nics import PciPaths, read_nics
from gpunuma.adapters.sysfs_nodes import read_nodes
from gpunuma.core.cpuset import BLANK, CpuSet
from gpunuma.core.exposure import DeviceIds, usable_gpus
from gpunuma.core.filetree import FileTree
from gpunuma.core.model import CacheDomain, Gpu, Nic, Topology
from gpunuma.core.pci import in_bus_order
from gpunuma.core.plan import Allowed
from gpunuma.core.ports import KernelFiles
from gpunuma.core.reasons import Reason
from gpunuma.errors import TopologyUnavailableError

_VENDORS = {0x10DE: "nvidia", 0x1002: "amd", 0x8086: "intel"}
#: PCI base class + subclass of a GPU: VGA, 3D controller, other display controller.
_GPU_CLASSES = {0x0300, 0x0302, 0x0380}
#: MI300-series boards are "processing accelerators"; only AMD's and Intel's count as GPUs.
_ACCELERATOR = 0x1200


def _info_fields(text: str, keys: tuple[str, ...]) -> dict[str, str]:
    """The ``Key: value`` lines of ``keys`` in the driver's ``information`` file, stripped."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in keys:
            fields[key] = value.strip(BLANK)
    return fields


def _pci_paths(root: str, files: KernelFiles) -> PciPaths:
    # The PCI bus is read only for plans that use GPUs: a bind to an explicit node never imports its reader.

    return PciPaths(root, files)


def _nics(root: str, notes: list[str], paths: PciPaths, files: KernelFiles) -> tuple[Nic, ...]:
    return read_nics(root, notes, paths, files)


class SysfsTopology:
    """Reads the topology from sysfs and the process's cpuset from procfs/cgroupfs under ``root``.

    ``root`` is a folder of this host (``/``: this machine) or a :class:`~gpunuma.core.filetree.FileTree`
    (a machine's files held in memory, read through the same calls).

    GPUs are the ones this process can open (``root``'s ``/proc/driver/nvidia``, ``/dev``; see
    :mod:`gpunuma.core.exposure`), not every GPU on the PCI bus. ``nvidia_visible_devices`` is the
    ``NVIDIA_VISIBLE_DEVICES`` value, read only when neither of those files says anything.

    ``layout=False`` reads what a node-scope plan needs and no more: nodes (CPUs, memory, distances),
    GPUs and RDMA NICs, but not each CPU's core and socket (``Topology.cpus`` is empty), the cache
    domains nor each node's memory size. On a DGX H100 that is ~40 small reads (and ~50 for its 12
    NICs) instead of ~200; the socket, exclusive and cache scopes, shares and reserved cores need the
    layout.

    ``gpus=False`` skips the PCI bus altogether (no GPU, no NIC, no PCIe ancestry: ~100 of the ~150 reads of a
    DGX H100's node-scope read): a plan for an explicit node and no GPU (``bind_to_node``) uses none of them.
    What a plan needs is the planner's to say (:func:`gpunuma.core.planner.topology_needs`).

    ``process`` reads what only the calling process can tell of itself (its thread's memory policy, gpunuma's
    own earlier binding): given when this source reads this very process on this machine; without it the
    memory policy of :meth:`allowed` comes from ``numa_maps``.
    """

    name = "sysfs"

    def __init__(
        self,
        root: str | Path | FileTree = "/",
        pid: int | str = "self",
        *,
        nvidia_visible_devices: str | None = None,
        layout: bool = True,
        gpus: bool = True,
        process: ThisProcess | None = None,
    ) -> None:
        # Plain string paths: pathlib costs more per join than the read itself.
        self.root, self.files = files_of(root)
        self.pid = pid
        self.nvidia_visible_devices = nvidia_visible_devices
        self.layout = layout
        self.gpus = gpus
        self.process = process

    def __repr__(self) -> str:
        where = self.root if self.files is HOST else self.files
        return f"SysfsTopology(root={where!r}, pid={self.pid!r}, layout={self.layout!r}, gpus={self.gpus!r})"

    def _path(self, relative: str) -> str:
        return os.path.join(self.root, relative)

    # -- the port ------------------------------------------------------------------------
    def read(self) -> Topology:
        """A snapshot of nodes, online CPUs and GPUs; unreadable optional files become notes."""
        files = self.files
        cpu_dir = self._path("sys/devices/system/cpu")
        if not files.is_dir(cpu_dir):
            raise TopologyUnavailableError(f"{cpu_dir}: no sysfs CPU directory (is sysfs mounted?)")
        notes: list[str] = []
        online = read_online(cpu_dir, notes, files)
        cpus = read_cpus(cpu_dir, online, notes, files) if self.layout else ()
        nodes = read_nodes(self.root, online, notes, sizes=self.layout, files=files)
        paths = _pci_paths(self.root, files) if self.gpus else None
        gpus = self._gpus(notes, paths) if paths is not None else ()
        caches = self._caches(cpu_dir, online, notes, files) if self.layout else ()
        nics = _nics(self.root, notes, paths, files) if paths is not None else ()
        if self._without_process():
            status = self._path("proc/self/status")
            captured = read_cgroup_cpuset(self.root, "self", files)
            if captured is None:
                notes.append(Reason.of("no_process_status", path=status))
            else:
                notes.append(Reason.of("no_process_status_cgroup", path=status, cpuset=str(captured.cpus_file)))
        return Topology(
            nodes=nodes, cpus=cpus, gpus=gpus, source="sysfs", notes=tuple(notes), caches=caches, nics=nics
        )

    def allowed(self) -> Allowed:
        """The cgroup cpuset (v2, then v1, then the status lists) and the current affinity.

        A captured tree that holds no ``proc/self/status`` (hwloc-gather keeps none) allows what the cgroup it
        recorded allows (``proc/self/cgroup`` or ``proc/self/cpuset``, the mounts in ``proc/mounts``), its
        affinity taken as that cpuset, as a live cgroup limits the process; with no cgroup recorded, every
        online CPU and memory node. :meth:`read` notes which.
        """
        files = self.files
        if self._without_process():
            notes: list[str] = []
            online = read_online(self._path("sys/devices/system/cpu"), notes, files)
            nodes = read_nodes(self.root, online, notes, sizes=False, files=files)
            mems = frozenset(node.id for node in nodes if node.has_memory)
            captured = read_cgroup_cpuset(self.root, "self", files)
            if captured is not None:
                cpus = captured.cpus & online
                return Allowed(cpus=cpus, mems=captured.mems & mems, affinity=cpus)
            return Allowed(cpus=online, mems=mems, affinity=online)
        if self.process is not None:
            # This very process: its calling thread's policy, and gpunuma's own earlier binding seen through.
            return read_allowed(self.root, self.pid, mempolicy=self.process.mempolicy(), own=self.process.own())
        policy = numa_maps_policy(os.path.join(self.root, "proc", str(self.pid), "numa_maps"), files)
        return read_allowed(self.root, self.pid, mempolicy=user_set(policy), files=files)

    def _without_process(self) -> bool:
        """A tree without the capturing process's status (hwloc-gather keeps none; this machine always has one)."""
        status = self._path("proc/self/status")
        return (
            self.pid == "self"
            # A symlink loop or a directory in its place is a broken status, not a missing one.
            and not self.files.exists(status)
            and self.files.readlink(status) is None
        )

    # -- caches --------------------------------------------------------------------------
    @staticmethod
    def _caches(cpu_dir: str, online: CpuSet, notes: list[str], files: KernelFiles) -> tuple[CacheDomain, ...]:
        # Only the layout reads caches (the cache scope needs it): a node-scope bind never imports the reader.

        return read_last_level_caches(cpu_dir, online, notes, files)

    # -- GPUs ----------------------------------------------------------------------------
    def _gpus(self, notes: list[str], paths: PciPaths) -> tuple[Gpu, ...]:
        pci_dir = self._path("sys/bus/pci/devices")
        names = self.files.listdir(pci_dir)
        if names is None:
            notes.append(Reason.of("sysfs_no_pci_devices", path=pci_dir))
            return ()

        entries = in_bus_order(names)
        found: list[Gpu] = []
        ids: dict[str, DeviceIds] = {}
        for bdf in entries:
            folder = f"{pci_dir}/{bdf}/"
            vendor = self._gpu_vendor(folder, bdf)
            if vendor is None:
                continue
            path = paths.of(f"{pci_dir}/{bdf}")
            # Intel's integrated graphics sits on a root bus with no PCIe port above it: not a GPU to bind to.
            if vendor == "intel" and len(path) < 3:
                continue
            gpu, ids[bdf] = self._gpu(folder, bdf, len(found), vendor, path)
            found.append(gpu)
        if not found:
            return ()
        # Which GPUs this process may open: read only on a machine that has GPUs.

        access = read_device_access(self.root, self.nvidia_visible_devices, self.files)
        gpus, left_out = usable_gpus(found, access, ids)
        notes.extend(left_out)
        return gpus

    def _gpu_vendor(self, folder: str, bdf: str) -> str | None:
        """The vendor name when the PCI function is a GPU, else None.

        A display function without a ``vendor`` file (hwloc's capture of an IBM POWER9 host keeps none) is
        NVIDIA's when the NVIDIA driver lists it under ``/proc/driver/nvidia/gpus``.
        """
        class_path = folder + "class"
        class_text = read_value(class_path, self.files)
        if class_text is None:
            return None
        klass = parse_int(class_path, class_text, 16) >> 8
        if klass not in _GPU_CLASSES and klass != _ACCELERATOR:
            return None
        vendor_path = folder + "vendor"
        vendor_text = read_value(vendor_path, self.files)
        if vendor_text is None:
            listing = self._path(f"proc/driver/nvidia/gpus/{bdf}")
            if klass in _GPU_CLASSES and not self.files.exists(vendor_path) and self.files.is_dir(listing):
                return "nvidia"
            return None
        vendor = _VENDORS.get(parse_int(vendor_path, vendor_text, 16))
        if klass == _ACCELERATOR and vendor == "nvidia":
            return None
        return vendor

    def _gpu(self, folder: str, bdf: str, index: int, vendor: str, path: tuple[str, ...]) -> tuple[Gpu, DeviceIds]:
        """The GPU at ``bdf`` (``index`` is provisional: :func:`usable_gpus` numbers) and its driver names."""
        files = self.files
        notes: list[str] = []
        node_path = folder + "numa_node"
        node_text = read_value(node_path, files)
        if node_text is None:
            notes.append(Reason.of("sysfs_gpu_node_unknown", path=node_path))
            numa_node = None
        else:
            numa_node = parse_node_id(node_path, node_text)
        if vendor == "nvidia" and not files.exists(folder + "vendor"):
            listing = self._path(f"proc/driver/nvidia/gpus/{bdf}")
            notes.append(Reason.of("sysfs_gpu_vendor_from_driver", path=folder + "vendor", listing=listing))
        local_cpus = self._local_cpus(folder, notes, files)
        uuid = name = memory_node = None
        ids = DeviceIds()
        if vendor == "nvidia":
            memory_node = self._driver_memory_node(bdf)
            info_path = self._path(f"proc/driver/nvidia/gpus/{bdf}/information")
            info = read_text(info_path, files)
            if info is None:
                notes.append(Reason.of("sysfs_gpu_uuid_unknown", path=info_path))
            else:
                fields = _info_fields(info, ("GPU UUID", "Model", "Device Minor"))
                uuid = fields.get("GPU UUID") or None
                name = fields.get("Model") or None
                ids = DeviceIds(minor=device_minor(fields.get("Device Minor")))
        else:
            if vendor == "amd":
                product = read_text(folder + "product_name", files)  # amdgpu's board name
                name = (product.strip(BLANK) or None) if product is not None else None
            ids = DeviceIds(render_nodes=render_nodes(folder, files))
        gpu = Gpu(
            index=index,
            pci_bus_id=bdf,
            uuid=uuid,
            vendor=vendor,
            numa_node=numa_node,
            local_cpus=local_cpus,
            memory_node=memory_node,
            name=name,
            notes=tuple(notes),
            pci_path=path,
        )
        return gpu, ids

    def _driver_memory_node(self, bdf: str) -> int | None:
        """The node holding the GPU's own memory, from the driver's ``numa_status`` (``Node: 255``).

        The driver writes the file only on platforms whose GPU memory is a NUMA node (IBM POWER9 with
        NVLink, Grace Hopper and Blackwell); ``Node: -1`` (not onlined) is None, as is a missing file.
        """
        path = self._path(f"proc/driver/nvidia/gpus/{bdf}/numa_status")
        text = read_text(path, self.files)
        if text is None:
            return None
        value = _info_fields(text, ("Node",)).get("Node")
        return parse_node_id(path, value) if value else None

    @staticmethod
    def _local_cpus(folder: str, notes: list[str], files: KernelFiles) -> CpuSet | None:
        list_path = folder + "local_cpulist"
        text = read_text(list_path, files)
        if text is not None:
            return parse_cpulist(list_path, text)
        mask_path = folder + "local_cpus"
        mask = read_text(mask_path, files)
        if mask is None:
            notes.append(Reason.of("sysfs_local_cpus_unknown", path=list_path))
            return None
        return parse_cpumask(mask_path, mask)
