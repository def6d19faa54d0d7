"""Write a simulated machine as the sysfs and procfs files a real kernel shows, byte for byte in format.

The tree lives under ``root`` (``root/sys/...``, ``root/proc/...``) so that
``SysfsTopology(root=root)`` reads it exactly as it reads ``/``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from gpunuma.core.cpuset import CpuSet, node_list
from gpunuma.tools.writing import write_file
from gpunuma_fakes.pcie import HDMI_AUDIO, pcie_layout
from gpunuma_fakes.spec import GpuSpec, Machine, NicSpec

#: The simulated process and two of its threads.
PID = 4242
TIDS = (4242, 4243, 4244)
#: The file naming the machine a tree was rendered from (lets :func:`ensure_rendered` reuse a tree).
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
    """Writes files under one root, creating each directory once (a DGX tree is ~2500 files); each file whole,
    never through a link (:func:`gpunuma.tools.writing.write_file`)."""

    def __init__(self) -> None:
        self.made: set[str] = set()

    def write(self, path: Path, text: str) -> None:
        folder = os.path.dirname(path)
        if folder not in self.made:
            os.makedirs(folder, exist_ok=True)
            self.made.add(folder)
        write_file(path, (text + "\n").encode())


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


def render_sysfs(machine: Machine, root: Path) -> Path:
    """Write ``machine``'s sysfs/procfs tree under ``root``; returns ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out = _Tree()
    _render_nodes(machine, root, out)
    _render_cpus(machine, root, out)
    _render_pci(machine, root, out)
    _render_nvidia_proc(machine, root, out)
    _render_dev(machine, root, out)
    _render_process(machine, root, out)
    write_file(root / MARK, fingerprint(machine).encode())
    return root


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


def _render_nodes(machine: Machine, root: Path, out: _Tree) -> None:
    total_kb = sum(node.memory_mb for node in machine.nodes) * 1024
    out.write(root / "proc/meminfo", f"MemTotal:       {total_kb:8d} kB\nMemFree:        {total_kb // 2:8d} kB")
    if machine.no_numa_dir:
        return
    base = root / "sys/devices/system/node"
    online = machine.online_cpus()
    ids = set(machine.online_node_ids())
    with_cpus = {n.id for n in machine.nodes if CpuSet.parse_list(n.cpus) & online}
    with_memory = {n.id for n in machine.nodes if n.memory_mb > 0}
    out.write(base / "possible", f"0-{max(ids)}" if max(ids) else "0")
    out.write(base / "online", node_list(ids))
    out.write(base / "has_cpu", node_list(with_cpus))
    out.write(base / "has_memory", node_list(with_memory))
    # GPU memory is onlined movable, so only CPU nodes have normal memory.
    out.write(base / "has_normal_memory", node_list(with_cpus & with_memory))
    for node in machine.nodes:
        folder = base / f"node{node.id}"
        cpus = CpuSet.parse_list(node.cpus) & online
        out.write(folder / "cpulist", cpus.to_list())
        out.write(folder / "cpumap", cpus.to_mask(nbits=machine.cpu_count))
        out.write(folder / "distance", " ".join(str(d) for d in node.distances))
        kb = node.memory_mb * 1024
        out.write(
            folder / "meminfo",
            f"Node {node.id} MemTotal:       {kb:8d} kB\n"
            f"Node {node.id} MemFree:        {kb // 2:8d} kB\n"
            f"Node {node.id} MemUsed:        {kb - kb // 2:8d} kB",
        )


def _render_cpus(machine: Machine, root: Path, out: _Tree) -> None:
    base = root / "sys/devices/system/cpu"
    everything = machine.all_cpus()
    online = machine.online_cpus()
    out.write(base / "possible", everything.to_list())
    out.write(base / "present", everything.to_list())
    out.write(base / "online", online.to_list())
    out.write(base / "offline", (everything - online).to_list())
    members: dict[int, set[int]] = {}
    for cpu in online:
        members.setdefault(machine.cpu_layout(cpu)[0], set()).add(cpu)
    packages = {package: CpuSet.of(cpus).to_list() for package, cpus in members.items()}
    # The kernel keeps only online CPUs in a cache's shared_cpu_list.
    l3_of = {cpu: (domain & online).to_list() for domain in machine.l3_domains() for cpu in domain}
    for cpu in everything:
        folder = base / f"cpu{cpu}"
        if cpu:  # the boot CPU of x86 cannot be unplugged and has no ``online`` file
            out.write(folder / "online", "1" if cpu in online else "0")
        else:
            folder.mkdir(parents=True, exist_ok=True)
        if cpu not in online:
            continue  # the kernel removes ``topology/`` of an offline CPU
        package, core, siblings = machine.cpu_layout(cpu)
        siblings = siblings & online
        topology = folder / "topology"
        out.write(topology / "physical_package_id", str(package))
        out.write(topology / "die_id", "0")
        out.write(topology / "core_id", str(core))
        out.write(topology / "core_cpus_list", siblings.to_list())
        out.write(topology / "thread_siblings_list", siblings.to_list())
        out.write(topology / "package_cpus_list", packages[package])
        out.write(topology / "core_siblings_list", packages[package])
        _render_caches(folder / "cache", l3_of[cpu], out)


def _render_caches(folder: Path, l3: str, out: _Tree) -> None:
    """``index2`` (L2, its level only) and ``index3`` (L3); L1 and the other cache attributes are left
    out to keep trees small (a DGX tree costs a second more to write per extra file per CPU)."""
    out.write(folder / "index2/level", "2")
    out.write(folder / "index3/level", "3")
    out.write(folder / "index3/shared_cpu_list", l3)


class _Pci:
    """Writes PCI functions where Linux shows them: under ``sys/devices/pci*/...``, linked from the bus."""

    def __init__(self, machine: Machine, root: Path, out: _Tree) -> None:
        self.machine = machine
        self.root = root
        self.out = out
        layout = pcie_layout(machine)
        self.paths = dict(layout.paths)
        self.functions = layout.functions

    def function(self, bdf: str, ids: tuple[int, int, int], node: int, local: CpuSet | None = None) -> Path:
        """Write one function's identity and locality files; returns its directory."""
        folder = self.root.joinpath("sys/devices", *self.paths[bdf])
        vendor, device, klass = ids
        if local is None:
            local = self.machine.all_cpus() if node < 0 else self.machine.node_cpus(node)
        self.out.write(folder / "vendor", f"0x{vendor:04x}")
        self.out.write(folder / "device", f"0x{device:04x}")
        self.out.write(folder / "class", f"0x{klass:06x}")
        self.out.write(folder / "numa_node", str(node))
        self.out.write(folder / "local_cpulist", local.to_list())
        self.out.write(folder / "local_cpus", local.to_mask(nbits=self.machine.cpu_count))
        self.link(self.root / "sys/bus/pci/devices" / bdf, folder)
        return folder

    @staticmethod
    def link(link: Path, target: Path) -> None:
        """A relative symlink as sysfs makes them: up to the target's parent, then down by name
        (``device -> ../../../0000:18:00.0``, never ``../..``)."""
        os.makedirs(link.parent, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(os.path.join(os.path.relpath(target.parent, link.parent), target.name))


def _render_pci(machine: Machine, root: Path, out: _Tree) -> None:
    pci = _Pci(machine, root, out)
    for gpu in machine.gpus:
        ids = (_VENDOR_IDS[gpu.vendor], _DEVICE_IDS.get(gpu.name, 0x2330), _gpu_class(gpu))
        folder = pci.function(gpu.bus_id, ids, gpu.sysfs_numa_node, machine.gpu_local_cpus(gpu))
        if gpu.vendor == "amd":
            out.write(folder / "product_name", gpu.name)  # amdgpu's FRU attribute
        if gpu.vendor in ("amd", "intel"):
            # The DRM nodes the driver registered for this function (not namespaced: the host's view).
            render = machine.render_minor(gpu)
            out.write(folder / "drm" / f"card{render - 128}" / "dev", f"226:{render - 128}")
            out.write(folder / "drm" / f"renderD{render}" / "dev", f"226:{render}")
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
    device = folder / "infiniband" / nic.name
    pci.out.write(device / "ports/1/link_layer", nic.link_layer)
    pci.out.write(device / "ports/1/state", "4: ACTIVE")
    pci.link(device / "device", folder)
    pci.out.write(folder / "net" / nic.netdev / "type", "32" if nic.link_layer == "InfiniBand" else "1")
    pci.link(pci.root / "sys/class/infiniband" / nic.name, device)


def _render_nvidia_proc(machine: Machine, root: Path, out: _Tree) -> None:
    # The NVIDIA runtime mounts a tmpfs over /proc/driver/nvidia holding only the container's GPUs
    # (libnvidia-container, nvc_mount.c: mount_procfs, mount_procfs_gpu); CDI leaves the host's listing.
    for gpu in machine.sorted_gpus():
        if gpu.vendor != "nvidia" or not (machine.cdi or machine.is_exposed(gpu)):
            continue
        minor = machine.nvidia_minor(gpu)
        out.write(
            root / "proc/driver/nvidia/gpus" / gpu.bus_id / "information",
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


def _render_dev(machine: Machine, root: Path, out: _Tree) -> None:
    """Device nodes as empty files: the names are what counts. A container holds only its GPUs' nodes."""
    dev = root / "dev"
    out.write(dev / "null", "")
    nvidia = [g for g in machine.sorted_gpus() if g.vendor == "nvidia" and machine.is_exposed(g)]
    if nvidia:
        out.write(dev / "nvidiactl", "")
        out.write(dev / "nvidia-uvm", "")
    for gpu in nvidia:
        out.write(dev / f"nvidia{machine.nvidia_minor(gpu)}", "")
    for gpu in machine.sorted_gpus():
        if gpu.vendor in ("amd", "intel") and machine.is_exposed(gpu):
            render = machine.render_minor(gpu)
            out.write(dev / "dri" / f"card{render - 128}", "")
            out.write(dev / "dri" / f"renderD{render}", "")
    if machine.has_kfd():
        out.write(dev / "kfd", "")


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


def _render_process(machine: Machine, root: Path, out: _Tree) -> None:
    proc = root / "proc" / str(PID)
    out.write(proc / "status", _status(machine, PID, "python3"))
    for tid in TIDS:
        out.write(proc / "task" / str(tid) / "status", _status(machine, tid, "python3" if tid == PID else "worker"))
    if machine.mempolicy is not None:
        # numa_maps' first mapping has no policy of its own, so it shows the task's (see kernel_view).
        line = f"00400000 {machine.mempolicy} file=/usr/bin/python3.12 mapped=2 N0=2 kernelpagesize_kB=4"
        out.write(proc / "numa_maps", line)
    self_link = root / "proc/self"
    if not self_link.exists():
        self_link.symlink_to(str(PID))
    allowed = machine.allowed()
    cpus, mems = allowed.cpus.to_list(), CpuSet.of(allowed.mems).to_list()
    path = machine.cgroup_path.strip("/")
    if machine.cgroup_version == 2:
        out.write(proc / "cgroup", f"0::{machine.cgroup_path}")
        top = root / "sys/fs/cgroup"
        whole = machine.online_cpus().to_list()
        every_mem = CpuSet.of(n.id for n in machine.nodes if n.memory_mb > 0).to_list()
        out.write(top / "cpuset.cpus.effective", whole)
        out.write(top / "cpuset.mems.effective", every_mem)
        if path:
            out.write(top / path / "cpuset.cpus", machine.cgroup_cpus or "")
            out.write(top / path / "cpuset.mems", machine.cgroup_mems or "")
            out.write(top / path / "cpuset.cpus.effective", cpus)
            out.write(top / path / "cpuset.mems.effective", mems)
        return
    # cgroup v1 (hybrid): cpuset is a v1 hierarchy; the unified mount carries no cpuset files.
    out.write(
        proc / "cgroup",
        f"12:cpuset:{machine.cgroup_path}\n11:memory:{machine.cgroup_path}\n"
        f"4:cpu,cpuacct:{machine.cgroup_path}\n0::{machine.cgroup_path}",
    )
    v1 = root / "sys/fs/cgroup/cpuset" / path
    out.write(v1 / "cpuset.cpus", cpus)
    out.write(v1 / "cpuset.mems", mems)
    out.write(v1 / "cpuset.effective_cpus", cpus)
    out.write(v1 / "cpuset.effective_mems", mems)
    out.write(root / "sys/fs/cgroup/unified" / path / "cgroup.procs", str(PID))
