"""A simulated machine's sysfs and procfs files as a real kernel shows them, byte for byte in format.

:func:`machine_tree` builds them in memory, once per process and machine, as a
:class:`~gpunuma.core.filetree.FileTree` that ``SysfsTopology(root=tree)`` reads exactly as it reads
``/``: every simulated bind and ``--simulate`` read goes through the real adapters without a file on
disk. :func:`render_sysfs` writes the same tree to a folder, for tests about files and
``gpunuma machines NAME --render DIR``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from gpunuma.core.cpuset import CpuSet, node_list
from gpunuma.core.filetree import FileTree
from gpunuma.tools.writing import write_file
from gpunuma_fakes.pcie import HDMI_AUDIO, pcie_layout

if TYPE_CHECKING:  # spec builds this module's objects: it imports this module
    from gpunuma_fakes.spec import GpuSpec, Machine, NicSpec

#: The simulated process and two of its threads.
PID = 4242
TIDS = (4242, 4243, 4244)
#: The file naming the machine a folder was rendered from (lets :func:`ensure_rendered` reuse a folder).
MARK = ".gpunuma-machine"
#: MAX_NUMNODES of distro kernels (CONFIG_NODES_SHIFT=10): the width of ``Mems_allowed``.
NODEMASK_BITS = 1024

_VENDOR_IDS = {"nvidia": 0x10DE, "amd": 0x1002, "intel": 0x8086}
_NIC_DEVICE_IDS = {"ConnectX-6": 0x101B, "ConnectX-7": 0x1021, "BlueField-3": 0xA2DC}
_DEVICE_IDS = {
    "NVIDIA H100 80GB HBM3": 0x2330,
    "NVIDIA A100-SXM4-80GB": 0x20B2,
    "NVIDIA GH200 480GB": 0x2342,
    "NVIDIA GB200": 0x2941,
    "NVIDIA L4": 0x27B8,
    "NVIDIA L40S": 0x26B9,
    "NVIDIA GeForce RTX 4090": 0x2684,
    "NVIDIA RTX A2000": 0x2531,
    "AMD Instinct MI300X": 0x74A1,
    "Intel Data Center GPU Max 1550": 0x0BD5,
    "AMD ES1000": 0x515E,
}


class _Tree:
    """The files, links and empty folders of one machine's tree, by path below its root."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.links: dict[str, str] = {}
        self.folders: list[str] = []

    def write(self, path: str, text: str) -> None:
        self.files[path] = (text + "\n").encode()

    def link(self, link: str, target: str) -> None:
        """A relative symlink as sysfs makes them: up to the target's parent, then down by name
        (``device -> ../../../0000:18:00.0``, never ``../..``)."""
        parent, _, name = target.rpartition("/")
        self.links.setdefault(link, f"{os.path.relpath(parent, os.path.dirname(link))}/{name}")


def machine_tree(machine: Machine) -> FileTree:
    """``machine``'s sysfs/procfs tree in memory (root ``NAME:``), built once per process and machine."""
    known = _BY_OBJECT.get(id(machine))
    if known is not None and known[0] is machine:  # a catalogue machine is one object per process: no digest
        return known[1]
    tree = _tree_of(fingerprint(machine), machine)
    _BY_OBJECT[id(machine)] = (machine, tree)
    return tree


#: The tree of each machine object asked for (the object is kept, so its id names no other).
_BY_OBJECT: dict[int, tuple[Machine, FileTree]] = {}
_BUILT: dict[str, FileTree] = {}


def _tree_of(key: str, machine: Machine) -> FileTree:
    """A machine made in code (``build(...)``, ``split_host``), by the digest of its every field."""
    tree = _BUILT.get(key)
    if tree is None:
        tree = _BUILT[key] = _build(machine)
    return tree


def _build(machine: Machine) -> FileTree:
    out = _Tree()
    _render_nodes(machine, out)
    _render_cpus(machine, out)
    _render_pci(machine, out)
    _render_nvidia_proc(machine, out)
    _render_dev(machine, out)
    _render_process(machine, out)
    return FileTree(f"{machine.name}:", out.files, out.links, out.folders)


def render_sysfs(machine: Machine, root: Path) -> Path:
    """Write ``machine``'s sysfs/procfs tree under ``root`` (the tree :func:`machine_tree` holds); returns ``root``."""
    root = Path(root)
    write_tree(machine_tree(machine), root)
    write_file(root / MARK, fingerprint(machine).encode())
    return root


#: A new file only (never one someone put there, never through a link).
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_tree(tree: FileTree, folder: str | os.PathLike[str]) -> None:
    """Write ``tree``'s folders, files and links under ``folder`` (made when missing).

    Each file is written whole and never through a link: a new name directly, a name that holds a regular
    file already through :func:`~gpunuma.tools.writing.write_file` (a folder or link there is a
    :class:`~gpunuma.errors.FileWriteError`). A link already there is kept.
    """
    base = os.fspath(folder)
    os.makedirs(base, exist_ok=True)
    for path, content in tree.items():
        target = os.path.join(base, path)
        if content is None:
            os.makedirs(target, exist_ok=True)
        elif isinstance(content, str):
            if not os.path.islink(target):
                os.symlink(content, target)
        else:
            try:
                fd = os.open(target, _NEW_FILE, 0o666)
            except FileExistsError:
                write_file(target, content)
                continue
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)


def fingerprint(machine: Machine) -> str:
    """What :data:`MARK` holds: the machine's name and a digest of every field: a replaced catalogue machine differs."""
    return f"{machine.name} {hashlib.sha256(repr(machine).encode()).hexdigest()[:16]}\n"


def ensure_rendered(machine: Machine, root: Path) -> Path:
    """``root`` holding ``machine``'s tree: rendered unless this very machine was rendered there already."""
    try:
        if (Path(root) / MARK).read_text() == fingerprint(machine):
            return Path(root)
    except OSError:
        pass
    return render_sysfs(machine, root)


def _gpu_class(gpu: GpuSpec) -> int:
    if gpu.pci_class is not None:
        return gpu.pci_class
    if gpu.vendor == "intel":
        return 0x038000  # Data Center GPU Max: "Display controller"
    if gpu.vendor == "amd":
        return 0x120000  # MI300-series: "Processing accelerators"
    if "GeForce" in gpu.name or "RTX" in gpu.name:
        return 0x030000  # VGA-compatible: consumer and workstation boards
    return 0x030200  # 3D controller: data-centre boards


def _render_nodes(machine: Machine, out: _Tree) -> None:
    total_kb = sum(node.memory_mb for node in machine.nodes) * 1024
    out.write("proc/meminfo", f"MemTotal:       {total_kb:8d} kB\nMemFree:        {total_kb // 2:8d} kB")
    if machine.no_numa_dir:
        return
    base = "sys/devices/system/node"
    online = machine.online_cpus()
    ids = set(machine.online_node_ids())
    with_cpus = {n.id for n in machine.nodes if CpuSet.parse_list(n.cpus) & online}
    with_memory = {n.id for n in machine.nodes if n.memory_mb > 0}
    out.write(f"{base}/possible", f"0-{max(ids)}" if max(ids) else "0")
    out.write(f"{base}/online", node_list(ids))
    out.write(f"{base}/has_cpu", node_list(with_cpus))
    out.write(f"{base}/has_memory", node_list(with_memory))
    # GPU memory is onlined movable, so only CPU nodes have normal memory.
    out.write(f"{base}/has_normal_memory", node_list(with_cpus & with_memory))
    for node in machine.nodes:
        folder = f"{base}/node{node.id}"
        cpus = CpuSet.parse_list(node.cpus) & online
        out.write(f"{folder}/cpulist", cpus.to_list())
        out.write(f"{folder}/cpumap", cpus.to_mask(nbits=machine.cpu_count))
        out.write(f"{folder}/distance", " ".join(str(d) for d in node.distances))
        kb = node.memory_mb * 1024
        out.write(
            f"{folder}/meminfo",
            f"Node {node.id} MemTotal:       {kb:8d} kB\n"
            f"Node {node.id} MemFree:        {kb // 2:8d} kB\n"
            f"Node {node.id} MemUsed:        {kb - kb // 2:8d} kB",
        )


def _render_cpus(machine: Machine, out: _Tree) -> None:
    base = "sys/devices/system/cpu"
    everything = machine.all_cpus()
    online = machine.online_cpus()
    out.write(f"{base}/possible", everything.to_list())
    out.write(f"{base}/present", everything.to_list())
    out.write(f"{base}/online", online.to_list())
    out.write(f"{base}/offline", (everything - online).to_list())
    members: dict[int, set[int]] = {}
    for cpu in online:
        members.setdefault(machine.cpu_layout(cpu)[0], set()).add(cpu)
    packages = {package: CpuSet.of(cpus).to_list() for package, cpus in members.items()}
    # The kernel keeps only online CPUs in a cache's shared_cpu_list.
    l3_of = {cpu: (domain & online).to_list() for domain in machine.l3_domains() for cpu in domain}
    for cpu in everything:
        folder = f"{base}/cpu{cpu}"
        if cpu:  # the boot CPU of x86 cannot be unplugged and has no ``online`` file
            out.write(f"{folder}/online", "1" if cpu in online else "0")
        else:
            out.folders.append(folder)
        if cpu not in online:
            continue  # the kernel removes ``topology/`` of an offline CPU
        package, core, siblings = machine.cpu_layout(cpu)
        siblings = siblings & online
        topology = f"{folder}/topology"
        out.write(f"{topology}/physical_package_id", str(package))
        out.write(f"{topology}/die_id", "0")
        out.write(f"{topology}/core_id", str(core))
        out.write(f"{topology}/core_cpus_list", siblings.to_list())
        out.write(f"{topology}/thread_siblings_list", siblings.to_list())
        out.write(f"{topology}/package_cpus_list", packages[package])
        out.write(f"{topology}/core_siblings_list", packages[package])
        _render_caches(f"{folder}/cache", l3_of[cpu], out)


def _render_caches(folder: str, l3: str, out: _Tree) -> None:
    """``index2`` (L2, its level only) and ``index3`` (L3); L1 and the other cache attributes are left
    out to keep trees small (a DGX tree holds ~2,900 files)."""
    out.write(f"{folder}/index2/level", "2")
    out.write(f"{folder}/index3/level", "3")
    out.write(f"{folder}/index3/shared_cpu_list", l3)


class _Pci:
    """Writes PCI functions where Linux shows them: under ``sys/devices/pci*/...``, linked from the bus."""

    def __init__(self, machine: Machine, out: _Tree) -> None:
        self.machine = machine
        self.out = out
        layout = pcie_layout(machine)
        self.paths = dict(layout.paths)
        self.functions = layout.functions

    def function(
        self, bdf: str, ids: tuple[int, int, int], node: int, local: CpuSet | None = None, *, identity: bool = True
    ) -> str:
        """Write one function's identity and locality files (``identity=False``: class and local CPUs only);
        returns its folder."""
        folder = "/".join(("sys/devices", *self.paths[bdf]))
        vendor, device, klass = ids
        if local is None:
            local = self.machine.all_cpus() if node < 0 else self.machine.node_cpus(node)
        if identity:
            self.out.write(f"{folder}/vendor", f"0x{vendor:04x}")
            self.out.write(f"{folder}/device", f"0x{device:04x}")
            self.out.write(f"{folder}/numa_node", str(node))
        self.out.write(f"{folder}/class", f"0x{klass:06x}")
        self.out.write(f"{folder}/local_cpulist", local.to_list())
        self.out.write(f"{folder}/local_cpus", local.to_mask(nbits=self.machine.cpu_count))
        self.out.link(f"sys/bus/pci/devices/{bdf}", folder)
        return folder


def _render_pci(machine: Machine, out: _Tree) -> None:
    pci = _Pci(machine, out)
    for gpu in machine.gpus:
        ids = (_VENDOR_IDS[gpu.vendor], _DEVICE_IDS.get(gpu.name, 0x2330), _gpu_class(gpu))
        folder = pci.function(gpu.bus_id, ids, gpu.sysfs_numa_node, machine.gpu_local_cpus(gpu), identity=gpu.pci_ids)
        if gpu.vendor == "amd":
            out.write(f"{folder}/product_name", gpu.name)  # amdgpu's FRU attribute
        if gpu.vendor in ("amd", "intel"):
            # The DRM nodes the driver registered for this function (not namespaced: the host's view).
            render = machine.render_minor(gpu)
            out.write(f"{folder}/drm/card{render - 128}/dev", f"226:{render - 128}")
            out.write(f"{folder}/drm/renderD{render}/dev", f"226:{render}")
        if _gpu_class(gpu) == 0x030000 and gpu.vendor == "nvidia":
            # The HDMI audio function of a VGA board: NVIDIA vendor, not a GPU; beside the GPU on its port.
            audio = gpu.bus_id[:-1] + "1"
            pci.paths[audio] = (*pci.paths[gpu.bus_id][:-1], audio)
            pci.function(audio, HDMI_AUDIO, gpu.sysfs_numa_node)
    # Bridges and switch ports, and the decoys every server has: a host bridge, the BMC's VGA (a VGA
    # class of another vendor), an Ethernet NIC, NVSwitches on NVIDIA multi-GPU boards (NVIDIA vendor,
    # bridge class).
    for function in pci.functions:
        pci.function(function.bdf, function.ids, function.node)
    for nic in machine.nics:
        _render_nic(pci, nic)


def _render_nic(pci: _Pci, nic: NicSpec) -> None:
    """An RDMA device: its PCI function, ``infiniband/<name>`` with a port, its net interface, the class link."""
    klass = 0x020700 if nic.link_layer == "InfiniBand" else 0x020000
    folder = pci.function(nic.bus_id, (0x15B3, _NIC_DEVICE_IDS[nic.model], klass), nic.numa_node)
    device = f"{folder}/infiniband/{nic.name}"
    pci.out.write(f"{device}/ports/1/link_layer", nic.link_layer)
    pci.out.write(f"{device}/ports/1/state", "4: ACTIVE")
    pci.out.link(f"{device}/device", folder)
    pci.out.write(f"{folder}/net/{nic.netdev}/type", "32" if nic.link_layer == "InfiniBand" else "1")
    pci.out.link(f"sys/class/infiniband/{nic.name}", device)


def _render_nvidia_proc(machine: Machine, out: _Tree) -> None:
    # The NVIDIA runtime mounts a tmpfs over /proc/driver/nvidia holding only the container's GPUs
    # (libnvidia-container, nvc_mount.c: mount_procfs, mount_procfs_gpu); CDI leaves the host's listing.
    for gpu in machine.sorted_gpus():
        if gpu.vendor != "nvidia" or not (machine.cdi or machine.is_exposed(gpu)):
            continue
        minor = machine.nvidia_minor(gpu)
        out.write(
            f"proc/driver/nvidia/gpus/{gpu.bus_id}/information",
            f"Model: \t\t {gpu.name}\n"
            f"IRQ:   \t\t {200 + minor}\n"
            f"GPU UUID: \t {gpu.uuid}\n"
            "Video BIOS: \t 96.00.99.00.01\n"
            "Bus Type: \t PCIe\n"
            "DMA Size: \t 52 bits\n"
            "DMA Mask: \t 0xfffffffffffff\n"
            f"Bus Location: \t {gpu.bus_id}\n"
            f"Device Minor: \t {minor}\n"
            "GPU Excluded:\t No",
        )
        memory_node = machine.driver_memory_node(gpu)
        if memory_node is not None:  # only where the GPU's memory is a NUMA node (nv-procfs.c: numa_status)
            status = f"Node:      {memory_node}\nStatus:    online\n"
            out.write(f"proc/driver/nvidia/gpus/{gpu.bus_id}/numa_status", status)


def _render_dev(machine: Machine, out: _Tree) -> None:
    """Device nodes as empty files: the names are what counts. A container holds only its GPUs' nodes."""
    dev = "dev"
    out.write(f"{dev}/null", "")
    nvidia = [g for g in machine.sorted_gpus() if g.vendor == "nvidia" and machine.is_exposed(g)]
    if nvidia:
        out.write(f"{dev}/nvidiactl", "")
        out.write(f"{dev}/nvidia-uvm", "")
    for gpu in nvidia:
        out.write(f"{dev}/nvidia{machine.nvidia_minor(gpu)}", "")
    for gpu in machine.sorted_gpus():
        if gpu.vendor in ("amd", "intel") and machine.is_exposed(gpu):
            render = machine.render_minor(gpu)
            out.write(f"{dev}/dri/card{render - 128}", "")
            out.write(f"{dev}/dri/renderD{render}", "")
    if machine.has_kfd():
        out.write(f"{dev}/kfd", "")


def _status(machine: Machine, tid: int, name: str) -> str:
    allowed = machine.allowed()
    mems = CpuSet.of(allowed.mems)
    return "\n".join(
        [
            f"Name:\t{name}",
            "Umask:\t0022",
            "State:\tS (sleeping)",
            f"Tgid:\t{PID}",
            "Ngid:\t0",
            f"Pid:\t{tid}",
            "PPid:\t1",
            "TracerPid:\t0",
            "Uid:\t1000\t1000\t1000\t1000",
            "Gid:\t1000\t1000\t1000\t1000",
            "VmRSS:\t  524288 kB",
            f"Threads:\t{len(TIDS)}",
            "Seccomp:\t0",
            f"Cpus_allowed:\t{allowed.affinity.to_mask(nbits=machine.cpu_count)}",
            f"Cpus_allowed_list:\t{allowed.affinity.to_list()}",
            f"Mems_allowed:\t{mems.to_mask(nbits=NODEMASK_BITS)}",
            f"Mems_allowed_list:\t{mems.to_list()}",
            "voluntary_ctxt_switches:\t150",
            "nonvoluntary_ctxt_switches:\t545",
        ]
    )


def _render_process(machine: Machine, out: _Tree) -> None:
    proc = f"proc/{PID}"
    out.write(f"{proc}/status", _status(machine, PID, "python3"))
    for tid in TIDS:
        out.write(f"{proc}/task/{tid}/status", _status(machine, tid, "python3" if tid == PID else "worker"))
    if machine.mempolicy is not None:
        # numa_maps' first mapping has no policy of its own, so it shows the task's (see kernel_view).
        line = f"00400000 {machine.mempolicy} file=/usr/bin/python3.12 mapped=2 N0=2 kernelpagesize_kB=4"
        out.write(f"{proc}/numa_maps", line)
    out.links["proc/self"] = str(PID)
    allowed = machine.allowed()
    cpus, mems = allowed.cpus.to_list(), CpuSet.of(allowed.mems).to_list()
    path = machine.cgroup_path.strip("/")
    if machine.cgroup_version == 2:
        out.write(f"{proc}/cgroup", f"0::{machine.cgroup_path}")
        top = "sys/fs/cgroup"
        whole = machine.online_cpus().to_list()
        every_mem = CpuSet.of(n.id for n in machine.nodes if n.memory_mb > 0).to_list()
        out.write(f"{top}/cpuset.cpus.effective", whole)
        out.write(f"{top}/cpuset.mems.effective", every_mem)
        if path:
            out.write(f"{top}/{path}/cpuset.cpus", machine.cgroup_cpus or "")
            out.write(f"{top}/{path}/cpuset.mems", machine.cgroup_mems or "")
            out.write(f"{top}/{path}/cpuset.cpus.effective", cpus)
            out.write(f"{top}/{path}/cpuset.mems.effective", mems)
        return
    # cgroup v1 (hybrid): cpuset is a v1 hierarchy; the unified mount carries no cpuset files.
    out.write(
        f"{proc}/cgroup",
        f"12:cpuset:{machine.cgroup_path}\n11:memory:{machine.cgroup_path}\n"
        f"4:cpu,cpuacct:{machine.cgroup_path}\n0::{machine.cgroup_path}",
    )
    v1 = f"sys/fs/cgroup/cpuset/{path}" if path else "sys/fs/cgroup/cpuset"
    out.write(f"{v1}/cpuset.cpus", cpus)
    out.write(f"{v1}/cpuset.mems", mems)
    out.write(f"{v1}/cpuset.effective_cpus", cpus)
    out.write(f"{v1}/cpuset.effective_mems", mems)
    unified = f"sys/fs/cgroup/unified/{path}" if path else "sys/fs/cgroup/unified"
    out.write(f"{unified}/cgroup.procs", str(PID))
