"""The sysfs adapter on the awkward corners of real machines: sparse node ids, offline CPUs,
no node directory, decoy PCI devices, AMD GPUs, cgroup v1 and v2, missing optional files."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from gpunuma.adapters.procfs import read_cgroup_cpuset, read_status, read_thread_affinities
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.ports import TopologySource
from gpunuma.core.reasons import codes, with_code
from gpunuma_fakes import GpuSpec, Machine, NodeSpec, machine
from gpunuma_fakes.render import PID, TIDS


def _sparse() -> Machine:
    """Nodes 0 and 4 online (1-3 absent): distance rows hold one entry per online node."""
    return Machine(
        name="sparse",
        description="two sockets whose nodes are numbered 0 and 4",
        sources=("hand-made",),
        sockets=2,
        cores_per_socket=4,
        threads_per_core=1,
        nodes=(NodeSpec(0, "0-3", 16_000, (10, 21)), NodeSpec(4, "4-7", 16_000, (21, 10))),
        gpus=(GpuSpec(bus_id="0000:81:00.0", uuid="GPU-11111111-2222-3333-4444-555555555555", sysfs_numa_node=4),),
        expected_nodes={0: 4},
    )


def _small_container(version: int) -> Machine:
    """smt-off (2 x 16 cores, CPUs 0-31 online) in a cgroup holding socket 0's first 8 cores, memory node 0."""
    return dataclasses.replace(
        machine("smt-off"),
        name=f"small-container-v{version}",
        cgroup_cpus="0-7",
        cgroup_mems="0",
        cgroup_path="/docker/8d1f0c",
        cgroup_version=version,
    )


def test_it_implements_the_topology_port(rendered):
    source = SysfsTopology(root=rendered("workstation"))

    assert isinstance(source, TopologySource)
    assert source.name == "sysfs"
    assert source.read().source == "sysfs"


def test_sparse_node_ids_map_distances_by_position_not_by_id(render):
    topology = SysfsTopology(root=render(_sparse())).read()

    assert [node.id for node in topology.nodes] == [0, 4]
    assert topology.node(4).distances == {0: 21, 4: 10}
    assert topology.gpu(0).numa_node == 4


def test_offline_cpus_are_left_out_everywhere(rendered):
    # smt-off: 2 sockets x 16 cores x 2 threads = 64 CPUs, the second threads 32-63 offline.
    topology = SysfsTopology(root=rendered("smt-off")).read()

    assert [cpu.id for cpu in topology.cpus] == list(range(32))
    assert topology.node(0).cpus.to_list() == "0-15"
    assert topology.cpu(0).siblings == CpuSet.of([0])


def test_core_ids_repeat_across_sockets_and_siblings_come_from_the_core(rendered):
    topology = SysfsTopology(root=rendered("dgx-h100")).read()

    first, other_socket, sibling = topology.cpu(0), topology.cpu(56), topology.cpu(112)
    assert (first.package, first.core) == (0, 0)
    assert (other_socket.package, other_socket.core) == (1, 0)
    assert first.siblings == sibling.siblings == CpuSet.of([0, 112])


def test_without_a_node_directory_there_is_one_node_with_every_cpu_and_all_memory(rendered):
    # no-numa: 1 x 4 cores x 2 threads; proc/meminfo MemTotal = 31842 MB.
    topology = SysfsTopology(root=rendered("no-numa")).read()

    assert len(topology.nodes) == 1
    node = topology.nodes[0]
    assert (node.id, node.cpus.to_list(), node.memory_mb, node.distances) == (0, "0-7", 31_842, {0: 10})
    assert topology.gpu(0).numa_node is None


def test_decoy_pci_devices_are_not_gpus(rendered):
    root = rendered("dgx-h100")
    devices = {path.name: (path / "class").read_text().strip() for path in (root / "sys/bus/pci/devices").iterdir()}
    # The tree holds NVSwitches (NVIDIA, bridge class), a BMC VGA of another vendor, a NIC and bridges.
    assert {"0x068000", "0x020000", "0x060400", "0x060000"} <= set(devices.values())
    assert sum(1 for klass in devices.values() if klass == "0x030000") == 1  # the BMC's VGA

    gpus = SysfsTopology(root=root).read().gpus

    assert [gpu.pci_bus_id for gpu in gpus] == [
        "0000:1b:00.0", "0000:43:00.0", "0000:52:00.0", "0000:61:00.0",
        "0000:9d:00.0", "0000:c3:00.0", "0000:d1:00.0", "0000:df:00.0",
    ]  # fmt: skip
    assert [gpu.index for gpu in gpus] == list(range(8))


def test_a_vga_board_counts_but_its_audio_function_does_not(rendered):
    root = rendered("workstation")
    assert (root / "sys/bus/pci/devices/0000:01:00.1/vendor").read_text().strip() == "0x10de"

    gpus = SysfsTopology(root=root).read().gpus

    assert [(gpu.pci_bus_id, gpu.name) for gpu in gpus] == [("0000:01:00.0", "NVIDIA GeForce RTX 4090")]


def test_uuid_and_model_come_from_the_nvidia_driver_information(rendered):
    gpu = SysfsTopology(root=rendered("dgx-h100")).read().gpu(4)
    spec = machine("dgx-h100").sorted_gpus()[4]

    assert (gpu.uuid, gpu.name, gpu.numa_node) == (spec.uuid, "NVIDIA H100 80GB HBM3", 1)


def test_amd_gpus_are_read_from_sysfs_alone(rendered):
    gpus = SysfsTopology(root=rendered("mi300x")).read().gpus

    assert len(gpus) == 8
    assert {gpu.vendor for gpu in gpus} == {"amd"}
    assert {gpu.uuid for gpu in gpus} == {None}
    assert [gpu.numa_node for gpu in gpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert gpus[0].name == "AMD Instinct MI300X"


def test_grace_gpus_report_the_cpu_node_and_the_driver_names_the_memory_node(rendered):
    topology = SysfsTopology(root=rendered("gb200")).read()

    assert [gpu.numa_node for gpu in topology.gpus] == [0, 0, 1, 1]
    # /proc/driver/nvidia/gpus/<bdf>/numa_status ("Node: 2"), written where GPU memory is a NUMA node.
    assert [gpu.memory_node for gpu in topology.gpus] == [2, 10, 18, 26]
    assert [n.id for n in topology.nodes if not n.has_cpus and n.has_memory] == [2, 10, 18, 26]


def test_numa_node_minus_one_is_unknown_with_every_cpu_local(rendered):
    gpus = SysfsTopology(root=rendered("cloud-vm")).read().gpus

    assert {gpu.numa_node for gpu in gpus} == {None}
    assert {gpu.local_cpus.to_list() for gpu in gpus} == {"0-15"}


def test_local_cpus_mask_is_the_fallback_for_a_missing_local_cpulist(render):
    root = render(machine("smt-off"))
    (root / "sys/bus/pci/devices/0000:af:00.0/local_cpulist").unlink()

    gpu = SysfsTopology(root=root).read().gpu(1)

    assert gpu.local_cpus.to_list() == "16-31,48-63"  # the mask also names the offline siblings
    assert gpu.notes == ()


def test_missing_optional_files_become_notes_not_failures(render):
    root = render(machine("smt-off"))
    shutil.rmtree(root / "proc/driver/nvidia")
    (root / "sys/devices/system/node/node1/meminfo").unlink()
    (root / "sys/bus/pci/devices/0000:3b:00.0/numa_node").unlink()

    topology = SysfsTopology(root=root).read()

    assert topology.gpu(0).numa_node is None and codes(topology.gpu(0).notes)[0] == "sysfs_gpu_node_unknown"
    assert all(gpu.uuid is None and with_code(gpu.notes, "sysfs_gpu_uuid_unknown") for gpu in topology.gpus)
    assert topology.node(1).memory_mb is None and topology.node(1).has_memory  # has_memory still lists it
    [meminfo] = with_code(topology.notes, "sysfs_meminfo_missing")
    assert meminfo.values["path"].endswith("node1/meminfo")


def test_cgroup_v2_cpuset_limits_the_container(rendered):
    # container-dgx-h100: cpuset 0-47,112-159 (48 cores of socket 0 and their siblings), mems 0.
    root = rendered("container-dgx-h100")

    cpuset = read_cgroup_cpuset(root)
    allowed = SysfsTopology(root=root).allowed()

    assert cpuset.version == 2 and cpuset.cpus_file.parent.name == "cri-containerd-5f2c9a.scope"
    assert (allowed.cpus.to_list(), allowed.mems) == ("0-47,112-159", frozenset({0}))
    assert allowed.affinity == allowed.cpus


def test_cgroup_v1_cpuset_is_read_when_the_unified_tree_has_none(render):
    spec = _small_container(1)
    root = render(spec)

    cpuset = read_cgroup_cpuset(root)
    allowed = SysfsTopology(root=root).allowed()

    assert cpuset.version == 1 and cpuset.cpus_file.name == "cpuset.effective_cpus"
    assert allowed == spec.allowed()
    assert (allowed.cpus.to_list(), allowed.mems) == ("0-7", frozenset({0}))


def test_a_cgroup_without_cpuset_files_runs_on_its_nearest_ancestors(render):
    root = render(_small_container(2))
    leaf = root / "sys/fs/cgroup/docker/8d1f0c"
    (leaf / "cpuset.cpus.effective").unlink()
    (leaf / "cpuset.mems.effective").unlink()

    allowed = SysfsTopology(root=root).allowed()

    assert allowed.cpus.to_list() == "0-31"  # the root cgroup's effective cpuset: every online CPU
    assert allowed.mems == frozenset({0, 1})


def test_without_cgroup_information_the_status_lists_answer(render):
    spec = dataclasses.replace(_small_container(2), affinity="0-3")
    root = render(spec)
    (root / f"proc/{PID}/cgroup").unlink()

    allowed = SysfsTopology(root=root).allowed()

    assert allowed.cpus.to_list() == "0-3" and allowed.affinity.to_list() == "0-3"
    assert allowed.mems == frozenset({0})


def test_a_narrowed_affinity_is_read_from_the_status_under_a_wider_cgroup(render):
    spec = dataclasses.replace(machine("smt-off"), name="smt-off-taskset", affinity="16-19")
    allowed = SysfsTopology(root=render(spec)).allowed()

    assert allowed.cpus.to_list() == "0-31"
    assert allowed.affinity.to_list() == "16-19"
    assert allowed.affinity_narrowed


def test_status_masks_are_printed_as_the_kernel_prints_them(rendered):
    # gb200 has 144 CPUs: four full 32-bit words plus a 16-bit leading chunk; nodemasks are 1024 bits.
    status = read_status(rendered("gb200"))

    assert status["Cpus_allowed"] == "ffff," + ",".join(["ffffffff"] * 4)
    assert status["Mems_allowed"] == ",".join(["00000000"] * 31 + ["04040407"])
    assert status["Mems_allowed_list"] == "0-2,10,18,26"


def test_every_thread_reports_its_own_affinity(rendered):
    threads = read_thread_affinities(rendered("container-dgx-h100"), PID)

    assert sorted(threads) == list(TIDS)
    assert {cpus.to_list() for cpus in threads.values()} == {"0-47,112-159"}


def test_a_numeric_pid_reads_the_same_process_as_self(rendered):
    root = rendered("workstation")

    assert SysfsTopology(root=root, pid=PID).allowed() == SysfsTopology(root=root).allowed()


def _opened(mocker, read) -> list[str]:
    """The files ``read()`` opens, in order."""
    import os

    spy = mocker.patch("gpunuma.adapters.procfs.os.open", side_effect=os.open)
    read()
    return [str(call.args[0]) for call in spy.call_args_list]


def _node_view(topology):
    return [(node.id, node.cpus, node.has_memory, node.distances) for node in topology.nodes]


def test_a_node_scope_read_gives_the_same_nodes_and_gpus_without_opening_a_cpu_or_meminfo_file(rendered, mocker):
    root = rendered("dgx-h100")
    full = SysfsTopology(root=root)
    light = SysfsTopology(root=root, layout=False)
    expected = full.read()

    topology = light.read()
    assert _node_view(topology) == _node_view(expected) and topology.gpus == expected.gpus
    assert topology.cpus == () and {node.memory_mb for node in topology.nodes} == {None}
    opened = _opened(mocker, light.read)
    assert not [path for path in opened if "/topology/" in path or "/cache/" in path or path.endswith("meminfo")]
    # The CPU and node files; PCI functions and RDMA devices are read alike by both.
    system = "sys/devices/system/"
    assert len([p for p in opened if system in p]) < len([p for p in _opened(mocker, full.read) if system in p]) / 3


def test_a_node_scope_read_still_reads_meminfo_when_has_memory_is_missing(render, mocker):
    import os

    root = render(machine("dgx-h100"))
    os.remove(root / "sys/devices/system/node/has_memory")
    topology = SysfsTopology(root=root, layout=False).read()
    assert [node.has_memory for node in topology.nodes] == [True, True]
    assert [path for path in _opened(mocker, SysfsTopology(root=root, layout=False).read) if path.endswith("meminfo")]


def _realpath_ancestry(root, device):
    import os

    devices = os.path.realpath(os.path.join(root, "sys/devices"))
    resolved = os.path.realpath(device)
    if not resolved.startswith(devices + os.sep):
        return ()
    parts = tuple(resolved[len(devices) + 1 :].split(os.sep))
    return parts if parts[0].startswith("pci") else ()


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel-named", "followed-here"])
def test_pcie_ancestries_resolve_as_realpath_does_even_under_a_linked_root(rendered, tmp_path, mocker, kernel):
    import os

    from gpunuma.adapters.sysfs_nics import PciPaths

    if not kernel:  # no /proc/self/fd (or a path the kernel cannot name): links followed one directory at a time
        mocker.patch("gpunuma.adapters.files.HostFiles.resolve", return_value=None)

    tree = rendered("dgx-h100")
    (tmp_path / "linked").symlink_to(tree)  # the root through a symlink, as /tmp is on some systems
    for root in (tree, tmp_path / "linked"):
        devices = [*sorted((root / "sys/bus/pci/devices").iterdir()), *(root / "sys/class/infiniband").glob("*/device")]
        lstat = mocker.spy(os, "lstat")
        expected = [_realpath_ancestry(root, device) for device in devices]
        mocker.stop(lstat)
        readlink = mocker.spy(os, "readlink")
        paths = PciPaths(root)
        assert [paths.of(device) for device in devices] == expected and any(expected)
        # Each directory once: realpath checks every component of every path again.
        assert readlink.call_count < lstat.call_count / 2
        mocker.stop(readlink)
