"""The sysfs adapter reads what real kernels and gathering tools write, as hwloc and libnuma do.

Each test writes a small tree by hand: two sockets of one SMT core each (CPUs 0,2 and 1,3), node 0
holding CPUs 0-1... in the layouts real trees have, then takes one liberty real trees take.
A malformed value still raises the typed error that names its file; a missing optional file is a
note, never a guessed answer.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.api import plan_for
from gpunuma.core.reasons import with_code
from gpunuma.errors import SysfsFormatError, TopologyUnavailableError

NODE = "sys/devices/system/node"
CPU = "sys/devices/system/cpu"
GPU = "sys/bus/pci/devices/0000:3b:00.0"


def base_tree() -> dict[str, str]:
    """Node 0: CPUs 0,2 (socket 0, one core with two threads); node 1: CPUs 1,3 (socket 1); a GPU on node 1."""
    files = {
        f"{NODE}/possible": "0-1\n",
        f"{NODE}/online": "0-1\n",
        f"{NODE}/has_cpu": "0-1\n",
        f"{NODE}/has_memory": "0-1\n",
        f"{NODE}/node0/cpulist": "0,2\n",
        f"{NODE}/node0/cpumap": "00000005\n",
        f"{NODE}/node0/distance": "10 21\n",
        f"{NODE}/node0/meminfo": "Node 0 MemTotal:       8388608 kB\nNode 0 MemFree:        4194304 kB\n",
        f"{NODE}/node1/cpulist": "1,3\n",
        f"{NODE}/node1/cpumap": "0000000a\n",
        f"{NODE}/node1/distance": "21 10\n",
        f"{NODE}/node1/meminfo": "Node 1 MemTotal:       8388608 kB\nNode 1 MemFree:        4194304 kB\n",
        f"{CPU}/possible": "0-3\n",
        f"{CPU}/present": "0-3\n",
        f"{CPU}/online": "0-3\n",
        f"{CPU}/offline": "\n",
        f"{GPU}/class": "0x030200\n",
        f"{GPU}/vendor": "0x10de\n",
        f"{GPU}/numa_node": "1\n",
        f"{GPU}/local_cpulist": "1,3\n",
        f"{GPU}/local_cpus": "0000000a\n",
        "proc/driver/nvidia/gpus/0000:3b:00.0/information": "Model: \t\t NVIDIA H100\nGPU UUID: \t GPU-1234\n",
        "proc/meminfo": "MemTotal:       16777216 kB\n",
        "proc/self/status": "Name:\tpython3\nCpus_allowed_list:\t0-3\nMems_allowed_list:\t0-1\n",
        "proc/self/cgroup": "0::/\n",
        "sys/fs/cgroup/cpuset.cpus.effective": "0-3\n",
        "sys/fs/cgroup/cpuset.mems.effective": "0-1\n",
    }
    for cpu in range(4):
        socket, siblings = cpu % 2, "0,2" if cpu % 2 == 0 else "1,3"
        mask = "00000005" if cpu % 2 == 0 else "0000000a"
        if cpu:
            files[f"{CPU}/cpu{cpu}/online"] = "1\n"
        topology = f"{CPU}/cpu{cpu}/topology"
        files[f"{topology}/physical_package_id"] = f"{socket}\n"
        files[f"{topology}/core_id"] = "0\n"
        files[f"{topology}/core_cpus_list"] = f"{siblings}\n"
        files[f"{topology}/thread_siblings_list"] = f"{siblings}\n"
        files[f"{topology}/core_cpus"] = f"{mask}\n"
        files[f"{topology}/thread_siblings"] = f"{mask}\n"
        files[f"{topology}/package_cpus_list"] = f"{siblings}\n"
        files[f"{topology}/core_siblings_list"] = f"{siblings}\n"
        files[f"{topology}/package_cpus"] = f"{mask}\n"
        files[f"{topology}/core_siblings"] = f"{mask}\n"
    return files


def write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
    return root


def read(root: Path, files: dict[str, str]):
    return SysfsTopology(root=write(root, files)).read()


def without(files: dict[str, str], *names: str) -> dict[str, str]:
    return {path: text for path, text in files.items() if not any(path.endswith(name) for name in names)}


@pytest.fixture
def clean(tmp_path):
    return read(tmp_path / "clean", base_tree())


def layout(topology):
    return {(c.id, c.package, c.siblings.to_list()) for c in topology.cpus}


def nodes(topology):
    return [(n.id, n.cpus.to_list(), n.has_memory, dict(n.distances)) for n in topology.nodes]


# -- text around values -------------------------------------------------------------------------
@pytest.mark.parametrize("tail", ["\n\x00\x00\x00", "   \n\n", "\r\n", "\x00" * 64, ""])
def test_trailing_blanks_and_nul_bytes_on_every_file_read_the_same(tmp_path, clean, tail):
    damaged = {path: text.rstrip("\n") + tail for path, text in base_tree().items()}

    topology = read(tmp_path, damaged)

    assert nodes(topology) == nodes(clean) and layout(topology) == layout(clean)
    assert [(g.pci_bus_id, g.numa_node, g.local_cpus, g.uuid, g.name) for g in topology.gpus] == [
        ("0000:3b:00.0", 1, clean.gpus[0].local_cpus, "GPU-1234", "NVIDIA H100")
    ]
    assert SysfsTopology(root=tmp_path).allowed() == SysfsTopology(root=tmp_path / "clean").allowed()


# -- node CPUs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mask", ["0000000a\n", "00000000,0000000a\n", "A\n"])
def test_a_node_with_cpumap_but_no_cpulist_reads_its_cpus_from_the_mask(tmp_path, clean, mask):
    files = without(base_tree(), "node1/cpulist")
    files[f"{NODE}/node1/cpumap"] = mask

    assert nodes(read(tmp_path, files)) == nodes(clean)


def test_old_kernels_cpumap_listing_offline_cpus_keeps_only_online_ones(tmp_path):
    files = without(base_tree(), "node1/cpulist", "cpu3/topology/core_cpus_list")
    files = {p: t for p, t in files.items() if "cpu3/topology" not in p}
    files[f"{CPU}/online"] = "0-2\n"
    files[f"{CPU}/cpu3/online"] = "0\n"
    files[f"{NODE}/node1/cpumap"] = "0000000a\n"  # still lists the offline CPU 3

    topology = read(tmp_path, files)

    assert topology.node(1).cpus.to_list() == "1"
    assert sorted(c.id for c in topology.cpus) == [0, 1, 2]


def test_one_node_without_cpu_files_gets_the_cpus_no_other_node_lists(tmp_path, clean):
    files = without(base_tree(), "node1/cpulist", "node1/cpumap")

    topology = read(tmp_path, files)

    assert nodes(topology) == nodes(clean)
    assert [n.values["nodes"] for n in topology.notes if n.code.startswith("sysfs_node_cpus_")] == ["1"]


def test_nodes_without_cpu_files_are_cpu_less_when_has_cpu_says_so(tmp_path):
    files = base_tree()
    files[f"{NODE}/online"] = files[f"{NODE}/possible"] = files[f"{NODE}/has_memory"] = "0-2\n"
    files[f"{NODE}/node0/distance"] = "10 21 40\n"
    files[f"{NODE}/node1/distance"] = "21 10 40\n"
    files[f"{NODE}/node2/distance"] = "40 40 10\n"
    files[f"{NODE}/node2/meminfo"] = "Node 2 MemTotal:       1048576 kB\n"  # a CPU-less memory node

    topology = read(tmp_path, files)

    assert topology.node(2).cpus.to_list() == "" and topology.node(2).has_memory


def test_several_nodes_without_cpu_files_are_an_error_unless_links_tell_them_apart(tmp_path, clean):
    files = without(base_tree(), "cpulist", "cpumap")

    with pytest.raises(TopologyUnavailableError, match="nodes 0-1 have neither cpulist nor cpumap"):
        read(tmp_path, files)

    for cpu in range(4):  # the kernel's cpuN/nodeM links, which hwloc-gather keeps
        os.symlink(f"../../node/node{cpu % 2}", tmp_path / f"{CPU}/cpu{cpu}/node{cpu % 2}")
    topology = SysfsTopology(root=tmp_path).read()
    assert nodes(topology) == nodes(clean)


# -- distance rows -------------------------------------------------------------------------------
def offline_node_1(files: dict[str, str]) -> dict[str, str]:
    """Nodes 0 and 2 online, node 1 possible but offline (no folder); CPUs 1,3 moved to node 2."""
    files = {p.replace("node1/", "node2/"): t for p, t in files.items()}
    files[f"{NODE}/possible"] = "0-2\n"
    files[f"{NODE}/online"] = files[f"{NODE}/has_cpu"] = files[f"{NODE}/has_memory"] = "0,2\n"
    files[f"{NODE}/node2/meminfo"] = "Node 2 MemTotal:       8388608 kB\n"
    files[f"{GPU}/numa_node"] = "2\n"
    return files


def test_distance_rows_hold_one_entry_per_online_node(tmp_path):
    topology = read(tmp_path, offline_node_1(base_tree()))

    assert topology.node(0).distances == {0: 10, 2: 21} and topology.node(2).distances == {0: 21, 2: 10}


def test_distance_rows_printed_for_every_possible_node_skip_the_offline_ones(tmp_path):
    files = offline_node_1(base_tree())
    files[f"{NODE}/node0/distance"] = "10 17 21\n"
    files[f"{NODE}/node2/distance"] = "21 17 10\n"

    topology = read(tmp_path, files)

    assert topology.node(0).distances == {0: 10, 2: 21} and topology.node(2).distances == {0: 21, 2: 10}


def test_a_row_whose_own_entry_is_not_the_smallest_in_that_order_is_not_trusted(tmp_path):
    files = offline_node_1(base_tree())
    files[f"{NODE}/node2/distance"] = "10 17 21\n"  # by possible ids node 2 -> node 2 would be 21

    topology = read(tmp_path, files)

    assert topology.node(2).distances == {2: 10}
    assert [n.values["node"] for n in with_code(topology.notes, "sysfs_distance_unordered")] == [2]


# -- absent lists --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "missing",
    [
        ("node/has_memory",),
        ("node/has_cpu",),
        ("node/online",),
        ("node/possible",),
        ("cpu/online",),
        ("cpu/present", "cpu/possible", "cpu/offline"),
        ("node/has_memory", "node/has_cpu", "node/online", "node/possible", "cpu/online"),
    ],
)
def test_absent_kernel_lists_are_rebuilt_from_the_per_node_and_per_cpu_files(tmp_path, clean, missing):
    topology = read(tmp_path, without(base_tree(), *missing))

    assert nodes(topology) == nodes(clean) and layout(topology) == layout(clean)


def test_without_the_online_list_each_cpus_own_flag_says_whether_it_is_online(tmp_path):
    files = without(base_tree(), "cpu/online")
    files[f"{CPU}/cpu3/online"] = "0\n"
    files = {p: t for p, t in files.items() if "cpu3/topology" not in p}

    topology = read(tmp_path, files)

    assert topology.all_cpus.to_list() == "0-2"  # cpu0 has no flag: it cannot go offline
    assert with_code(topology.notes, "sysfs_online_from_flags")


def test_an_empty_online_list_left_by_a_gathering_tool_is_read_as_missing(tmp_path, clean):
    files = base_tree()
    files[f"{CPU}/online"] = ""
    files[f"{NODE}/online"] = "\x00"

    topology = read(tmp_path, files)

    assert nodes(topology) == nodes(clean) and layout(topology) == layout(clean)


def test_a_node_of_unknown_memory_is_assumed_with_memory_only_when_it_has_cpus_and_says_so(tmp_path):
    files = without(base_tree(), "has_memory", "node1/meminfo")

    topology = read(tmp_path, files)

    assert topology.node(1).has_memory and topology.node(1).memory_mb is None
    assert [n.values["node"] for n in with_code(topology.notes, "sysfs_node_memory_assumed")] == [1]


# -- per-CPU topology files ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "missing",
    [
        ("core_cpus_list",),
        ("core_cpus_list", "thread_siblings_list"),
        ("core_cpus_list", "thread_siblings_list", "core_cpus"),
        ("package_cpus_list",),
        ("package_cpus_list", "core_siblings_list", "package_cpus", "core_siblings"),
        ("core_id",),
    ],
)
def test_older_or_missing_per_cpu_files_give_the_same_layout(tmp_path, clean, missing):
    assert layout(read(tmp_path, without(base_tree(), *missing))) == layout(clean)


@pytest.mark.parametrize("package_id", [None, "-1\n"])
def test_without_a_package_id_sockets_are_told_apart_by_their_members(tmp_path, package_id):
    files = without(base_tree(), "physical_package_id")
    if package_id is not None:
        files.update({f"{CPU}/cpu{cpu}/topology/physical_package_id": package_id for cpu in range(4)})

    topology = read(tmp_path, files)

    sockets = {frozenset(c.id for c in topology.cpus if c.package == p) for p in {c.package for c in topology.cpus}}
    assert sockets == {frozenset({0, 2}), frozenset({1, 3})}
    assert with_code(topology.notes, "sysfs_sockets_from_package_lists")


def test_a_socket_named_by_one_cpu_and_listed_by_another_is_one_socket(tmp_path):
    # Two cores per socket: CPU 1's files give its id but no members; CPU 3's give members but no id.
    files = base_tree()
    for cpu in range(4):
        topology = f"{CPU}/cpu{cpu}/topology"
        files[f"{topology}/core_cpus_list"] = files[f"{topology}/thread_siblings_list"] = f"{cpu}\n"
        files.pop(f"{topology}/core_cpus")
        files.pop(f"{topology}/thread_siblings")
    files = {p: t for p, t in files.items() if not (p.startswith(f"{CPU}/cpu1/topology/") and "package_cpus" in p
                                                    or p.startswith(f"{CPU}/cpu1/topology/core_siblings"))}
    files.pop(f"{CPU}/cpu3/topology/physical_package_id")

    topology = read(tmp_path, files)

    assert topology.cpu(1).package == topology.cpu(3).package == 1
    assert topology.cpu(0).package == topology.cpu(2).package == 0


def test_a_core_no_file_describes_is_left_out_of_the_layout_not_guessed(tmp_path, clean):
    files = {p: t for p, t in base_tree().items() if not ("cpu1/topology" in p or "cpu3/topology" in p)}

    topology = read(tmp_path, files)

    assert sorted(c.id for c in topology.cpus) == [0, 2]
    assert nodes(topology) == nodes(clean)
    assert [n.values["cpus"] for n in with_code(topology.notes, "sysfs_cpu_layout_unknown")] == ["1,3"]


def test_a_sibling_lists_a_cpu_whose_own_files_are_missing(tmp_path, clean):
    files = {p: t for p, t in base_tree().items() if "cpu2/topology" not in p}

    assert layout(read(tmp_path, files)) == layout(clean)


# -- the process ---------------------------------------------------------------------------------
def test_a_captured_tree_without_the_process_status_allows_the_whole_machine_and_says_so(tmp_path):
    root = write(tmp_path, without(base_tree(), "proc/self/status", "proc/self/cgroup"))

    source = SysfsTopology(root=root)
    allowed = source.allowed()
    plan = plan_for(node=1, source=source, env={})

    assert (allowed.cpus.to_list(), sorted(allowed.mems), allowed.affinity.to_list()) == ("0-3", [0, 1], "0-3")
    assert plan.cpus.to_list() == "1,3" and plan.binds
    notes = [r.values["note"].code for r in with_code(plan.reasons, "topology_note")]
    assert "no_process_status" in notes


def test_a_named_process_that_is_missing_is_still_an_error(tmp_path):
    root = write(tmp_path, base_tree())

    with pytest.raises(TopologyUnavailableError, match="proc/4242/status"):
        SysfsTopology(root=root, pid=4242).allowed()


def test_status_and_cgroup_files_with_nul_padding_read_the_same(tmp_path):
    files = base_tree()
    files["proc/self/status"] += "\x00" * 32
    files["proc/self/cgroup"] += "\n\x00\x00"

    allowed = SysfsTopology(root=write(tmp_path, files)).allowed()

    assert allowed.cpus.to_list() == "0-3" and allowed.mems == frozenset({0, 1})


# -- still malformed -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("damage", "relative", "text"),
    [
        ("node1/cpulist", f"{NODE}/node1/cpumap", "0000000g\n"),
        ("cpu/online", f"{CPU}/cpu3/online", "yes\n"),
        ("", f"{NODE}/possible", "0-x\n"),
        ("", f"{NODE}/node0/distance", "10 21 x\n"),
        ("core_cpus_list", f"{CPU}/cpu1/topology/thread_siblings_list", "1;3\n"),
        ("", f"{CPU}/cpu1/topology/physical_package_id", "one\n"),
        ("", f"{GPU}/numa_node", "1\x00junk\n"),
    ],
)
def test_a_malformed_value_still_raises_the_typed_error_naming_its_file(tmp_path, damage, relative, text):
    files = without(base_tree(), damage) if damage else base_tree()
    files[relative] = text

    with pytest.raises(SysfsFormatError) as caught:
        read(tmp_path, files)

    assert str(caught.value.path).endswith(relative)
