"""The catalogue of simulated machines, each built from a published layout (see ``sources``).

Every machine renders a sysfs/procfs tree (``render.py``) and a fake ``pynvml`` (``nvml.py``);
``expected_nodes`` says where the default plan must put each GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from gpunuma.core.cpuset import CpuSet
from gpunuma.errors import UnknownSourceError
from gpunuma_fakes.builder import core_cpus, distance_rows, gpu, gpu_uuid
from gpunuma_fakes.spec import GpuSpec, Machine, NicSpec, NodeSpec


class UnknownMachineError(UnknownSourceError):
    """A simulated machine name that the catalogue does not hold; ``known`` lists the names."""

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown simulated machine {name!r}; known: {', '.join(known)}")


# -- small builders ------------------------------------------------------------------


def _gpus(chassis: str, placed: list[tuple[str, int]], **fields: Any) -> tuple[GpuSpec, ...]:
    """GpuSpecs for ``(bus id, sysfs numa_node)`` pairs sharing the other ``fields``."""
    return tuple(gpu(bus, node, chassis=chassis, **fields) for bus, node in placed)


# -- the machines ----------------------------------------------------------------------

_DGX_H100_BUSES = ["1b", "43", "52", "61", "9d", "c3", "d1", "df"]
#: GPU i's compute ConnectX-7 (DGX H100 user guide, table "Network Modules"): RDMA name and bus.
_DGX_H100_COMPUTE = [("mlx5_0", "18"), ("mlx5_3", "40"), ("mlx5_4", "4f"), ("mlx5_5", "5e"),
                     ("mlx5_6", "9a"), ("mlx5_9", "c0"), ("mlx5_10", "ce"), ("mlx5_11", "dc")]  # fmt: skip


def _dgx_h100_nics() -> tuple[NicSpec, ...]:
    compute = tuple(
        NicSpec(name, f"0000:{bus}:00.0", 0 if i < 4 else 1, f"ibp{int(bus, 16)}s0", switches=(f"gpu{i}",))
        for i, (name, bus) in enumerate(_DGX_H100_COMPUTE)
    )
    # The two dual-port storage ConnectX-7 (slots 1 and 2): port 1 InfiniBand, port 2 Ethernet.
    storage = tuple(
        NicSpec(name, f"0000:{bus}:00.{fn}", node, netdev, link_layer=link)
        for bus, node, pairs in (("29", 0, ("mlx5_1", "mlx5_2")), ("aa", 1, ("mlx5_7", "mlx5_8")))
        for fn, (name, netdev, link) in enumerate(
            [(pairs[0], f"ibp{int(bus, 16)}s0f0", "InfiniBand"), (pairs[1], f"enp{int(bus, 16)}s0f1np1", "Ethernet")]
        )
    )
    return compute + storage


def _dgx_h100(name: str, description: str, more_sources: tuple[str, ...] = (), **extra: object) -> Machine:
    rows = distance_rows((0, 1), lambda a, b: 21)
    nodes = (
        NodeSpec(0, core_cpus(2, 56, 2, 0, 0, 56), 1_031_820, rows[0]),
        NodeSpec(1, core_cpus(2, 56, 2, 1, 0, 56), 1_032_166, rows[1]),
    )
    gpus = tuple(
        replace(gpu, switches=(f"gpu{i}",))  # each GPU shares a PCIe switch with its compute NIC
        for i, gpu in enumerate(
            _gpus(
                name,
                [(f"0000:{bus}:00.0", 0 if i < 4 else 1) for i, bus in enumerate(_DGX_H100_BUSES)],
                name="NVIDIA H100 80GB HBM3",
            )
        )
    )
    return Machine(
        name=name,
        description=description,
        sources=(
            "CPU and node layout: numa-nvml-facts F, DGX H100 row (2x Xeon 8480C, 56 cores, SNC off)",
            "GPU bus ids 1b,43,52,61 / 9d,c3,d1,df: 8x H200 HGX `nvidia-smi topo -m` capture and DGX H100 BDF mock",
            "distances 10/21: typical two-socket Intel (not checked on a DGX)",
            "compute NICs, one ConnectX-7 per GPU (GPU0 mlx5_0 ibp24s0 ... GPU7 mlx5_11 ibp220s0): DGX H100 user "
            "guide, table 'Network Modules'; their bus ids 18,40,4f,5e,9a,c0,ce,dc: DGX BasePOD deployment guide "
            "(mlxconfig loop); each behind its GPU's PCIe switch: the same table pairs each CX with one GPU",
            "storage NICs mlx5_1,2 / mlx5_7,8 (dual-port ConnectX-7 in slots 1, 2; port 2 Ethernet): the names the "
            "user guide's table leaves free and the BasePOD guide's port roles; buses 29 and aa are chosen inside "
            "the ranges that RDMA numbering implies (not checked)",
            "one L3 per socket (SNC off)",
            *more_sources,
        ),
        sockets=2,
        cores_per_socket=56,
        threads_per_core=2,
        nodes=nodes,
        gpus=gpus,
        nics=_dgx_h100_nics(),
        **extra,  # type: ignore[arg-type]
    )


def _dgx_a100() -> Machine:
    # NPS4: each EPYC 7742 socket is four nodes of 16 cores; nodes 0-3 on socket 0, 4-7 on socket 1.
    ids = tuple(range(8))
    rows = distance_rows(ids, lambda a, b: 12 if a // 4 == b // 4 else 32)
    nodes = tuple(NodeSpec(k, core_cpus(2, 64, 2, k // 4, 16 * (k % 4), 16), 128_764, rows[k]) for k in ids)
    placed = [("07", 3), ("0f", 3), ("47", 1), ("4e", 1), ("87", 7), ("90", 7), ("b7", 5), ("bd", 5)]
    # Each GPU pair and its two compute HCAs hang off one PCIe switch; each GPU behind a switch of its own.
    gpus = tuple(
        replace(gpu, switches=(f"pair{i // 2}", f"gpu{i}"))
        for i, gpu in enumerate(
            _gpus("dgx-a100", [(f"0000:{bus}:00.0", node) for bus, node in placed], name="NVIDIA A100-SXM4-80GB")
        )
    )
    compute = [("mlx5_0", "0c"), ("mlx5_1", "12"), ("mlx5_2", "4b"), ("mlx5_3", "54"),
               ("mlx5_6", "8d"), ("mlx5_7", "94"), ("mlx5_8", "ba"), ("mlx5_9", "cc")]  # fmt: skip
    nics = tuple(
        NicSpec(name, f"0000:{bus}:00.0", placed[i][1], f"ibp{int(bus, 16)}s0", model="ConnectX-6",
                switches=(f"pair{i // 2}",))  # fmt: skip
        for i, (name, bus) in enumerate(compute)
    ) + tuple(
        NicSpec(
            name, f"0000:{bus}:00.{fn}", node, f"enp{int(bus, 16)}s0f{fn}", link_layer="Ethernet", model="ConnectX-6"
        )
        for bus, node, names in (("61", 0, ("mlx5_4", "mlx5_5")), ("e1", 4, ("mlx5_10", "mlx5_11")))
        for fn, name in enumerate(names)
    )
    return Machine(
        name="dgx-a100",
        description="DGX A100: 2x EPYC 7742 (64 cores, SMT) in NPS4, 8 nodes, 8 A100 SXM4",
        sources=(
            "node layout and GPU->node map GPU0,1->3, GPU2,3->1, GPU4,5->7: NVIDIA/nccl#1505",
            "GPU6,7->5: inferred from the same capture (numa-nvml-facts F)",
            "distances 10/12/32: numa-nvml-facts F, DGX A100 row",
            "mlx5_0 at 0c behind the PCIe switch of GPU0 (07), storage mlx5_4/mlx5_5 at 61 on node 0: "
            "NVIDIA/nccl#1505 topology dump",
            "the other compute HCAs (ibp18s0, ibp75s0, ibp84s0, ibp141s0, ibp148s0, ibp186s0, ibp204s0) and the "
            "second storage card (enp225s0f*, node 4 assumed): DGX A100 user guide's port names, not checked here",
            "EPYC 7742: 16 CCXs of 4 cores per socket, one L3 each",
        ),
        sockets=2,
        cores_per_socket=64,
        threads_per_core=2,
        nodes=nodes,
        gpus=gpus,
        expected_nodes={i: node for i, (_, node) in enumerate(placed)},
        l3_cores=4,
        nics=nics,
    )


def _gh200() -> Machine:
    ids = tuple(range(9))

    def distance(a: int, b: int) -> int:
        return 80 if 0 in (a, b) else 255  # GPU-memory node 1 and MIG placeholder nodes 2-8

    rows = distance_rows(ids, distance)
    nodes = (
        NodeSpec(0, "0-71", 491_520, rows[0]),
        NodeSpec(1, "", 97_280, rows[1]),
        *(NodeSpec(k, "", 0, rows[k]) for k in range(2, 9)),
    )
    return Machine(
        name="gh200",
        description="GH200 superchip: Grace 72 cores (node 0), CPU-less HBM node 1, MIG placeholder nodes 2-8",
        sources=(
            "9 nodes, node 1 97280 MB, nodes 2-8 0 MB: kernel fake-numa patch mail, bytedance/xpu-perf#129",
            "distances 80 / 255: NVIDIA/mlperf-common#16",
            "GPU PCI numa_node 0 (the local Grace node): numa-nvml-facts F, not verified on hardware",
        ),
        sockets=1,
        cores_per_socket=72,
        threads_per_core=1,
        nodes=nodes,
        gpus=_gpus("gh200", [("0009:01:00.0", 0)], name="NVIDIA GH200 480GB", nvml_numa_node=1),
        expected_nodes={0: 0},
    )


def _gb200() -> Machine:
    ids = tuple(range(34))

    def distance(a: int, b: int) -> int:
        if {a, b} == {0, 1}:
            return 40
        if a in (0, 1) or b in (0, 1):
            grace, other = (a, b) if a in (0, 1) else (b, a)
            near = other < 18  # GPU groups 2-9, 10-17 hang off node 0; 18-25, 26-33 off node 1
            return 80 if near == (grace == 0) else 120
        return 11 if (a - 2) // 8 == (b - 2) // 8 else 40

    rows = distance_rows(ids, distance)
    hbm = {2, 10, 18, 26}
    nodes = (
        NodeSpec(0, "0-71", 491_520, rows[0]),
        NodeSpec(1, "72-143", 491_520, rows[1]),
        *(NodeSpec(k, "", 188_416 if k in hbm else 0, rows[k]) for k in range(2, 34)),
    )
    gpus = tuple(
        GpuSpec(
            bus_id=bus,
            uuid=gpu_uuid("gb200", bus),
            sysfs_numa_node=grace,
            name="NVIDIA GB200",
            nvml_numa_node=memory,
        )
        for bus, grace, memory in [
            ("0008:01:00.0", 0, 2),
            ("0009:01:00.0", 0, 10),
            ("0018:01:00.0", 1, 18),
            ("0019:01:00.0", 1, 26),
        ]
    )
    return Machine(
        name="gb200",
        description="GB200 tray: 2 Grace (nodes 0, 1) + 4 B200, HBM nodes 2,10,18,26, 34 nodes in all",
        sources=(
            "nodes, HBM sizes and distances: NVIDIA/TensorRT-LLM blog8 (Scaling Expert Parallelism part 2)",
            "GPU0,1 local to node 0, GPU2,3 to node 1: ishandhanani/srt-slurm#164",
            "NICs (OSFP ConnectX-7 mlx5_0,1,4,5 at 0000/0002/0010/0012:03:00.0; BlueField-3 mlx5_2,3 / mlx5_6,7 at "
            "0006/0016:03:00.*, Ethernet for storage): NVIDIA Mission Control GB200 north-south network guide, "
            "compute tray table; nodes by PCI domain (0000-0006 Grace 0, 0010-0016 Grace 1)",
        ),
        sockets=2,
        cores_per_socket=72,
        threads_per_core=1,
        nodes=nodes,
        gpus=gpus,
        expected_nodes={0: 0, 1: 0, 2: 1, 3: 1},
        nics=(
            NicSpec("mlx5_0", "0000:03:00.0", 0, "ibP0p3s0"),
            NicSpec("mlx5_1", "0002:03:00.0", 0, "ibP2p3s0"),
            NicSpec("mlx5_2", "0006:03:00.0", 0, "enP6p3s0f0np0", link_layer="Ethernet", model="BlueField-3"),
            NicSpec("mlx5_3", "0006:03:00.1", 0, "enP6p3s0f1np1", link_layer="Ethernet", model="BlueField-3"),
            NicSpec("mlx5_4", "0010:03:00.0", 1, "ibP16p3s0"),
            NicSpec("mlx5_5", "0012:03:00.0", 1, "ibP18p3s0"),
            NicSpec("mlx5_6", "0016:03:00.0", 1, "enP22p3s0f0np0", link_layer="Ethernet", model="BlueField-3"),
            NicSpec("mlx5_7", "0016:03:00.1", 1, "enP22p3s0f1np1", link_layer="Ethernet", model="BlueField-3"),
        ),
    )


def _cloud_vm() -> Machine:
    rows = distance_rows((0, 1), lambda a, b: 20)
    nodes = (
        NodeSpec(0, core_cpus(2, 4, 2, 0, 0, 4), 95_872, rows[0]),
        NodeSpec(1, core_cpus(2, 4, 2, 1, 0, 4), 96_376, rows[1]),
    )
    buses = ["0000:00:06.0", "0000:00:07.0", "0000:00:08.0", "0000:00:09.0"]
    return Machine(
        name="cloud-vm",
        description="KVM guest: 2 nodes of 8 vCPUs (SMT), 4 passed-through GPUs with numa_node -1",
        sources=(
            "numa_node -1 and local_cpulist = every CPU, NVML NUMA id NotSupported: [EXP-h100] KVM guest capture",
            "two guest nodes: a common large-VM shape (numa-nvml-facts D, trap 4)",
        ),
        sockets=2,
        cores_per_socket=4,
        threads_per_core=2,
        nodes=nodes,
        gpus=_gpus("cloud-vm", [(bus, -1) for bus in buses], name="NVIDIA L4"),
        expected_nodes={i: None for i in range(4)},
    )


_SNC_PLACED = [("0000:18:00.0", 0), ("0000:2a:00.0", 0), ("0000:3a:00.0", 0), ("0000:5d:00.0", 1),
               ("0000:9a:00.0", 2), ("0000:ab:00.0", 2)]  # fmt: skip


def _snc_nodes() -> tuple[NodeSpec, ...]:
    # SNC2: each 48-core socket is two nodes of 24 cores; 12 within a socket, 21 across.
    ids = (0, 1, 2, 3)
    rows = distance_rows(ids, lambda a, b: 12 if a // 2 == b // 2 else 21)
    return tuple(NodeSpec(k, core_cpus(2, 48, 2, k // 2, 24 * (k % 2), 24), 257_700, rows[k]) for k in ids)


_SNC_SOURCES = (
    "SNC2 node layout 0-23,96-119 / 24-47,120-143 / ... and GPU0-2->0, GPU3->1, GPU4,5->2: sgl-project/sglang#13973",
    "distances 10/12/21: the SNC rows of numa-nvml-facts F (Leonardo DCGP `numactl -H`)",
)


def _snc() -> Machine:
    return Machine(
        name="snc",
        description="2x 48-core Xeon with SMT in SNC2: 4 nodes, 6 GPUs",
        sources=_SNC_SOURCES,
        sockets=2,
        cores_per_socket=48,
        threads_per_core=2,
        nodes=_snc_nodes(),
        gpus=_gpus("snc", _SNC_PLACED),
        expected_nodes={i: node for i, (_, node) in enumerate(_SNC_PLACED)},
        l3_cores=24,  # one L3 per SNC domain, as the Intel layouts state
    )


def _snc_socket_affinity() -> Machine:
    nodes = _snc_nodes()
    socket_cpus = {
        s: (CpuSet.parse_list(nodes[2 * s].cpus) | CpuSet.parse_list(nodes[2 * s + 1].cpus)).to_list() for s in (0, 1)
    }
    gpus = tuple(
        GpuSpec(
            bus_id=bus,
            uuid=gpu_uuid("snc-socket-affinity", bus),
            sysfs_numa_node=-1,
            local_cpus=socket_cpus[node // 2],
        )
        for bus, node in _SNC_PLACED
    )
    return Machine(
        name="snc-socket-affinity",
        description="the SNC2 machine whose firmware reports GPUs per socket: numa_node -1, local CPUs = the socket",
        sources=(*_SNC_SOURCES, "socket-wide affinity with numa_node -1: the case of sgl-project/sglang#31317"),
        sockets=2,
        cores_per_socket=48,
        threads_per_core=2,
        nodes=nodes,
        gpus=gpus,
        # Spread by rank over the socket's two nodes in contiguous blocks: socket 0's four GPUs
        # 2 + 2 over nodes 0 and 1, socket 1's two GPUs 1 + 1 over nodes 2 and 3.
        expected_nodes={0: 0, 1: 0, 2: 1, 3: 1, 4: 2, 5: 3},
    )


def _workstation() -> Machine:
    return Machine(
        name="workstation",
        description="desktop: one 8-core SMT CPU, one node, one GeForce (VGA class, with its HDMI audio function)",
        sources=(
            "a single-socket desktop; the GeForce VGA + audio function pair as lspci shows it",
            "Intel integrated graphics at 00:02.0 on the root bus, the place Intel's iGPU always takes",
        ),
        sockets=1,
        cores_per_socket=8,
        threads_per_core=2,
        nodes=(NodeSpec(0, "0-15", 64_212, (10,)),),
        gpus=_gpus("workstation", [("0000:01:00.0", 0)], name="NVIDIA GeForce RTX 4090"),
        # Its one node holds every CPU and all memory: binding to it would change nothing (rule 9).
        expected_nodes={0: None},
        decoys=(("0000:00:02.0", 0x8086, 0x030000),),  # the CPU's integrated graphics: not a GPU to bind to
    )


def _mi300x(
    name: str = "mi300x", description: str | None = None, more_sources: tuple[str, ...] = (), **extra: object
) -> Machine:
    rows = distance_rows((0, 1), lambda a, b: 32)
    nodes = (
        NodeSpec(0, core_cpus(2, 96, 2, 0, 0, 96), 1_547_740, rows[0]),
        NodeSpec(1, core_cpus(2, 96, 2, 1, 0, 96), 1_548_220, rows[1]),
    )
    buses = ["05", "26", "46", "65", "85", "a6", "c6", "e5"]
    gpus = _gpus(
        name,
        [(f"0000:{bus}:00.0", 0 if i < 4 else 1) for i, bus in enumerate(buses)],
        name="AMD Instinct MI300X",
        vendor="amd",
    )
    fields: dict[str, object] = {"expected_nodes": {i: 0 if i < 4 else 1 for i in range(8)}, **extra}
    return Machine(
        name=name,
        description=description or "2x EPYC 9654 (96 cores, SMT) NPS1 with 8 MI300X: AMD GPUs, sysfs only (no NVML)",
        sources=(
            "GPUs 0-3 -> node 0, 4-7 -> node 1, distances 10/32: ROCm/legacy-rocm-build#4740",
            "CPU numbering 0-95,192-287 / 96-191,288-383: egandro/proxmox-cpu-affinity#58 (computed)",
            "EPYC 9654: 12 CCDs of 8 cores per socket, one L3 each",
            *more_sources,
        ),
        sockets=2,
        cores_per_socket=96,
        threads_per_core=2,
        nodes=nodes,
        gpus=gpus,
        l3_cores=8,
        **fields,  # type: ignore[arg-type]
    )


def _intel_max() -> Machine:
    rows = distance_rows((0, 1), lambda a, b: 21)
    nodes = (
        NodeSpec(0, core_cpus(2, 52, 2, 0, 0, 52), 515_496, rows[0]),
        NodeSpec(1, core_cpus(2, 52, 2, 1, 0, 52), 516_012, rows[1]),
    )
    buses = ["18", "42", "6c", "9a", "c2", "ec"]
    return Machine(
        name="intel-max",
        description="2x Xeon CPU Max 9470C (52 cores, SMT), 6 Intel Data Center GPU Max 1550: Intel GPUs, sysfs only",
        sources=(
            "2 packages, 208 CPUs, GPUs 0-2 on package 0 and 3-5 on package 1: geopm/geopm#3593 (an Aurora-class node)",
            "GPU bus ids: illustrative, three per socket in bus order",
            "one L3 per socket",
        ),
        sockets=2,
        cores_per_socket=52,
        threads_per_core=2,
        nodes=nodes,
        gpus=_gpus("intel-max", [(f"0000:{bus}:00.0", 0 if i < 3 else 1) for i, bus in enumerate(buses)],
                   name="Intel Data Center GPU Max 1550", vendor="intel"),  # fmt: skip
        expected_nodes={i: 0 if i < 3 else 1 for i in range(6)},
    )


_CONTAINER_SOURCE = (
    "the NVIDIA runtime mounts a tmpfs over /proc/driver/nvidia and binds in only the container's "
    "gpus/<bus id> entries and /dev/nvidiaN nodes: NVIDIA/libnvidia-container src/nvc_mount.c "
    "(mount_procfs, mount_procfs_gpu, mount_device); sysfs is not namespaced and still lists every GPU"
)


def _server_amd_vga() -> Machine:
    rows = distance_rows((0, 1), lambda a, b: 21)
    placed = [("0000:04:00.0", 0), ("0000:84:00.0", 1)]
    vga = GpuSpec(
        bus_id="0000:08:00.0",
        uuid=gpu_uuid("server-amd-vga", "0000:08:00.0"),
        sysfs_numa_node=0,
        name="AMD ES1000",
        vendor="amd",
        pci_class=0x030000,
        compute=False,
    )
    return Machine(
        name="server-amd-vga",
        description="2x 16-core Xeon, 2 L40S on nodes 0 and 1, and an onboard AMD ES1000 VGA on a bus between them",
        sources=(
            "onboard ATI ES1000 (1002:515e, VGA class) as the server VGA: lspci of HP ProLiant G6/G7-era boards",
            "CUDA numbers NVIDIA GPUs only, so Ray's GPU 1 is the second L40S whatever sits between them",
        ),
        sockets=2,
        cores_per_socket=16,
        threads_per_core=2,
        nodes=(
            NodeSpec(0, core_cpus(2, 16, 2, 0, 0, 16), 257_612, rows[0]),
            NodeSpec(1, core_cpus(2, 16, 2, 1, 0, 16), 257_980, rows[1]),
        ),
        gpus=(*_gpus("server-amd-vga", placed, name="NVIDIA L40S"), vga),
        expected_nodes={0: 0, 1: 1},
    )


def _no_numa() -> Machine:
    return Machine(
        name="no-numa",
        description="a kernel built without NUMA: no /sys/devices/system/node, one GPU with numa_node -1",
        sources=("CONFIG_NUMA=n kernels expose no node directory and report numa_node -1 (numa-nvml-facts D)",),
        sockets=1,
        cores_per_socket=4,
        threads_per_core=2,
        nodes=(NodeSpec(0, "0-7", 31_842, (10,)),),
        gpus=_gpus("no-numa", [("0000:01:00.0", -1)], name="NVIDIA RTX A2000"),
        # Its local CPUs (all of them) lie on the one node there is, which holds every CPU: not a binding.
        expected_nodes={0: None},
        no_numa_dir=True,
    )


#: An IBM AC922's six V100s, in bus order: (bus id, the socket's CPU node, the node holding the GPU's memory).
_AC922_GPUS = [("0004:05:00.0", 0, 255), ("0004:06:00.0", 0, 254), ("0006:00:00.0", 0, 253),
               ("0007:00:00.0", 8, 252), ("0035:04:00.0", 8, 251), ("0035:05:00.0", 8, 250)]  # fmt: skip


def _power9_v100() -> Machine:
    # CPU nodes 0 and 8 (one per POWER9 socket); the driver onlines each V100's 16 GB as a CPU-less node.
    ids = (0, 8, *range(250, 256))
    rows = distance_rows(ids, lambda a, b: 40 if {a, b} == {0, 8} else 80)
    nodes = (
        NodeSpec(0, "0-87", 126_796, rows[0]),
        NodeSpec(8, "88-175", 130_812, rows[8]),
        *(NodeSpec(k, "", 15_360, rows[k]) for k in range(250, 256)),
    )
    gpus = tuple(
        gpu(bus, node, chassis="power9-v100", name="Tesla V100-SXM2-16GB", nvml_numa_node=memory, pci_ids=False)
        for bus, node, memory in _AC922_GPUS
    )
    return Machine(
        name="power9-v100",
        description="IBM AC922: 2x POWER9 (22 cores, SMT4), CPU nodes 0 and 8, six V100 whose memory the NVIDIA "
        "driver onlines as nodes 250-255; their PCI functions keep no vendor or numa_node file",
        sources=(
            "PowerNV 8335-GTW, nodes 0 and 8 (129839104 and 133952000 KB), GPU memory nodes 250-255 (15728640 KB "
            "each) with each GPU's bus id, CPUs 0-87 / 88-175 (SMT4, a core's threads numbered consecutively), "
            "distances 10/40/80: hwloc tests/hwloc/linux/nvidiagpunumanodes.output and .kept.output",
            "the GPU functions without vendor and numa_node files, found through /proc/driver/nvidia/gpus: how "
            "hwloc's captured tree of that host keeps them (its tarball was not re-read here)",
            "numa_status ('Node:', 'Status:'), written only where the GPU's memory is a NUMA node: "
            "NVIDIA/open-gpu-kernel-modules kernel-open/nvidia/nv-procfs.c",
        ),
        sockets=2,
        cores_per_socket=22,
        threads_per_core=4,
        threads_consecutive=True,
        nodes=nodes,
        gpus=gpus,
        expected_nodes={i: node for i, (_, node, _) in enumerate(_AC922_GPUS)},
    )


def _altix_xe320() -> Machine:
    # The kernel lists CPUs 0-7 in both nodes, each at the local distance of the other: one place.
    return Machine(
        name="altix-xe320",
        description="SGI Altix XE320: 2x 4-core Xeon E5472 whose kernel lists CPUs 0-7 in nodes 0 and 1, "
        "each at distance 10 of the other; read as one node, as hwloc reads it. No GPU",
        sources=(
            "SGI Altix XE320 (2x Xeon E5472, 8 CPUs, 2096684 KB) that hwloc reads as one node: hwloc "
            "tests/hwloc/linux/8em64t-2s2ca2c-buggynuma.output",
            "node 1 listing node 0's CPUs at distance 10, without memory: the kernel layout that reading implies "
            "(the capture's tarball was not re-read here); CPUs numbered as this catalogue numbers x86 (the "
            "capture interleaves the two packages)",
        ),
        sockets=2,
        cores_per_socket=4,
        threads_per_core=1,
        nodes=(NodeSpec(0, "0-7", 2_047, (10, 10)), NodeSpec(1, "0-7", 0, (10, 10))),
        gpus=(),
        merged_nodes=(1,),
    )


def _smt_off() -> Machine:
    rows = distance_rows((0, 1), lambda a, b: 21)
    return Machine(
        name="smt-off",
        description="2x 16-core Xeon with SMT switched off at runtime: CPUs 32-63 offline",
        sources=("`echo off > /sys/devices/system/cpu/smt/control` offlines every second thread",),
        sockets=2,
        cores_per_socket=16,
        threads_per_core=2,
        nodes=(
            NodeSpec(0, core_cpus(2, 16, 2, 0, 0, 16), 257_612, rows[0]),
            NodeSpec(1, core_cpus(2, 16, 2, 1, 0, 16), 257_980, rows[1]),
        ),
        gpus=_gpus("smt-off", [("0000:3b:00.0", 0), ("0000:af:00.0", 1)], name="NVIDIA L40S"),
        expected_nodes={0: 0, 1: 1},
        offline_cpus="32-63",
    )


def _build() -> Mapping[str, Machine]:
    machines = [
        _dgx_h100(
            "dgx-h100",
            "DGX H100: 2x Xeon 8480C (56 cores, SMT), 2 nodes, 8 H100 SXM5",
            expected_nodes={i: 0 if i < 4 else 1 for i in range(8)},
        ),
        _dgx_a100(),
        _gh200(),
        _gb200(),
        _cloud_vm(),
        _snc(),
        _snc_socket_affinity(),
        _workstation(),
        _dgx_h100(
            "container-dgx-h100",
            "a DGX H100 container limited to socket 0's first 48 cores: cpuset 0-47,112-159, mems 0",
            # GPUs 4-7 are local to node 1, which the cpuset forbids: nearest allowed node is 0.
            expected_nodes={i: 0 for i in range(8)},
            cgroup_cpus="0-47,112-159",
            cgroup_mems="0",
            cgroup_path="/kubepods.slice/kubepods-pod7c1e.slice/cri-containerd-5f2c9a.scope",
        ),
        _mi300x(),
        _intel_max(),
        _no_numa(),
        _smt_off(),
        _power9_v100(),
        _altix_xe320(),
        _server_amd_vga(),
        _dgx_h100(
            "docker-dgx-h100",
            "a container the NVIDIA runtime gave DGX H100 GPU 5 (bus c3, node 1): NVIDIA_VISIBLE_DEVICES=5, "
            "no CUDA_VISIBLE_DEVICES; sysfs still lists all eight",
            more_sources=(_CONTAINER_SOURCE,),
            expected_nodes={0: 1},
            exposed_gpus=("0000:c3:00.0",),
            cgroup_path="/system.slice/docker-3f9a1c.scope",
        ),
        _dgx_h100(
            "k8s-dgx-h100",
            "a Guaranteed Kubernetes pod on a DGX H100 under the kubelet's static CPU manager: 16 exclusive whole "
            "cores, 8 on each socket (cpuset 8-15,64-71,120-127,176-183), and GPUs 1 (node 0) and 5 (node 1) "
            "from the NVIDIA device plugin",
            more_sources=(
                "static CPU manager policy: a Guaranteed pod's container with an integer CPU request gets exclusive "
                "CPUs, whole physical cores first (Kubernetes docs, 'Control CPU Management Policies on the Node', "
                "static policy and its full-pcpus-only option); which cores is the kubelet's choice, these are one",
                "NVIDIA_VISIBLE_DEVICES=<the GPUs' UUIDs>: NVIDIA/k8s-device-plugin defaults (envvar device list "
                "strategy, uuid device ids); the NVIDIA container runtime then exposes only those GPUs",
                _CONTAINER_SOURCE,
            ),
            expected_nodes={0: 0, 1: 1},
            exposed_gpus=("0000:43:00.0", "0000:c3:00.0"),
            visible_device_ids="uuid",
            cgroup_cpus="8-15,64-71,120-127,176-183",
            cgroup_mems="0-1",
            cgroup_path="/kubepods.slice/kubepods-pod4f1d2c9e_8a7b_4c3d_9e2f_1a2b3c4d5e6f.slice/"
            "cri-containerd-9c41e7d2.scope",
        ),
        _mi300x(
            "docker-mi300x",
            "a container given MI300X GPU 6 (bus c6, node 1) by docker --device /dev/kfd --device /dev/dri/renderD134",
            more_sources=(
                "docker --device puts only the named /dev/dri/renderD* and /dev/kfd in the container; "
                "sysfs (and /sys/class/kfd) still show every GPU",
            ),
            expected_nodes={0: 1},
            exposed_gpus=("0000:c6:00.0",),
            cgroup_path="/system.slice/docker-8b2e4d.scope",
        ),
    ]
    return MappingProxyType({m.name: m for m in machines})


#: Every simulated machine by name (read-only).
MACHINES: Mapping[str, Machine] = _build()


def names() -> tuple[str, ...]:
    """The catalogue's machine names, in catalogue order."""
    return tuple(MACHINES)


def machine(name: str) -> Machine:
    """The simulated machine called ``name``; :class:`UnknownMachineError` lists the known names."""
    try:
        return MACHINES[name]
    except KeyError:
        raise UnknownMachineError(name, names()) from None
