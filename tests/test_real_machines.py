"""Real machines whose kernel files bend the usual rules, read as they must be read (hwloc's captures are the
ground truth): GPUs only the NVIDIA driver names, nodes a kernel lists twice, a captured cgroup, a Kubernetes pod."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.planner import plan_binding
from gpunuma.core.reasons import codes
from gpunuma.errors import SysfsFormatError
from gpunuma.tools.cli import ExitCode, main
from gpunuma_fakes import NodeSpec, machine
from gpunuma_fakes.render import PID

POWER9 = machine("power9-v100")


# -- IBM POWER9 with V100s: the driver names the GPUs, their memory is a NUMA node of its own ------------------
def test_power9_gpus_without_vendor_or_numa_node_files_are_found_through_the_nvidia_driver():
    gpus = POWER9.source(kind="sysfs").read().gpus

    assert [g.pci_bus_id for g in gpus] == [
        "0004:05:00.0", "0004:06:00.0", "0006:00:00.0", "0007:00:00.0", "0035:04:00.0", "0035:05:00.0"
    ]
    assert {g.vendor for g in gpus} == {"nvidia"} and {g.numa_node for g in gpus} == {None}
    assert [g.memory_node for g in gpus] == [255, 254, 253, 252, 251, 250]  # the driver's numa_status
    assert [g.local_cpus.to_list() for g in gpus] == ["0-87"] * 3 + ["88-175"] * 3
    assert all("sysfs_gpu_vendor_from_driver" in codes(g.notes) for g in gpus)


@pytest.mark.parametrize("kind", ["sysfs", "auto"])
def test_each_power9_gpu_binds_to_its_sockets_node_by_its_local_cpus(kind):
    source = POWER9.source(kind=kind)
    topology, allowed = source.read(), source.allowed()

    plans = [plan_binding(topology, [gpu], allowed) for gpu in range(6)]

    # Each GPU-memory node is at 80 from both CPU nodes (no choice): the local CPUs decide.
    assert [p.nodes for p in plans] == [(POWER9.expected_nodes[i],) for i in range(6)]
    assert [p.memory_nodes for p in plans] == [(0,)] * 3 + [(8,)] * 3  # the CPU node's memory, not the GPU's


# -- the cgroup cpuset hwloc-gather-topology records limits a replayed plan as a live cgroup does -------------------
CONTAINER = machine("container-dgx-h100")  # cpuset 0-47,112-159, mems 0: GPUs 4-7 fall back to node 0
GROUP = CONTAINER.cgroup_path.strip("/")
#: How hwloc-gather-topology keeps the capturing process: proc/self/{cpuset,cgroup} as files, proc/mounts,
#: and the whole cpuset mount; no proc/self/status.
MOUNTS = {
    "cgroup2": ("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0", "sys/fs/cgroup",
                ("cpuset.cpus.effective", "cpuset.mems.effective"), f"0::/{GROUP}"),
    "cgroup-v1": ("cgroup /cgroup/cpuset cgroup rw,relatime,cpuset 0 0", "cgroup/cpuset",
                  ("cpuset.cpus", "cpuset.mems"), f"3:cpuset:/{GROUP}\n2:memory:/{GROUP}"),
    "dev-cpuset": ("none /dev/cpuset cpuset rw,relatime 0 0", "dev/cpuset", ("cpus", "mems"), None),
}


def gathered(tree: Path, mount: str) -> Path:
    """``tree`` rewritten as hwloc-gather-topology records it, its cpuset under the ``mount`` kind."""
    line, folder, names, cgroup = MOUNTS[mount]
    cpus = (tree / "sys/fs/cgroup" / GROUP / "cpuset.cpus.effective").read_text()
    mems = (tree / "sys/fs/cgroup" / GROUP / "cpuset.mems.effective").read_text()
    shutil.rmtree(tree / "sys/fs/cgroup")
    shutil.rmtree(tree / "proc" / str(PID))
    (tree / "proc/self").unlink()
    (tree / "proc/self").mkdir()
    (tree / "proc/self/cpuset").write_text(f"/{GROUP}\n")
    if cgroup is not None:
        (tree / "proc/self/cgroup").write_text(cgroup + "\n")
    (tree / "proc/mounts").write_text(f"sysfs /sys sysfs rw 0 0\n{line}\n")
    (tree / folder / GROUP).mkdir(parents=True)
    (tree / folder / GROUP / names[0]).write_text(cpus)
    (tree / folder / GROUP / names[1]).write_text(mems)
    return tree


@pytest.mark.parametrize("mount", list(MOUNTS))
def test_a_captured_cgroup_cpuset_limits_the_replayed_plan_as_the_live_cgroup_does(render, mount):
    live = SysfsTopology(root=render(CONTAINER))
    captured = SysfsTopology(root=gathered(render(CONTAINER), mount))

    allowed = captured.allowed()

    assert (allowed.cpus.to_list(), allowed.mems) == ("0-47,112-159", frozenset({0}))
    for gpu in (1, 5):  # node 0's GPU and node 1's, which the cpuset forbids
        replayed = plan_binding(captured.read(), [gpu], allowed)
        held = plan_binding(live.read(), [gpu], live.allowed())
        assert (replayed.nodes, replayed.cpus) == (held.nodes, held.cpus) == ((0,), allowed.cpus)
    assert "no_process_status_cgroup" in codes(captured.read().notes)


def test_gpunuma_plan_root_replays_the_captured_cgroup(render, capsys):
    tree = gathered(render(CONTAINER), "dev-cpuset")

    status = main(["plan", "--root", str(tree), "--source", "sysfs", "--physical-gpu", "5", "--json"])

    plan = json.loads(capsys.readouterr().out)
    assert status == ExitCode.OK and (plan["numa_nodes"], plan["cpus"]) == ([0], "0-47,112-159")


def test_a_captured_tree_with_no_cgroup_recorded_allows_every_online_cpu(render):
    tree = gathered(render(CONTAINER), "cgroup2")
    (tree / "proc/mounts").unlink()
    shutil.rmtree(tree / "sys/fs/cgroup")
    source = SysfsTopology(root=tree)

    assert source.allowed().cpus.to_list() == "0-223"
    assert "no_process_status" in codes(source.read().notes)


# -- an old kernel listing the same CPUs in two nodes at the local distance: one node, as hwloc reads it ----------
ALTIX = machine("altix-xe320")


def test_nodes_listing_the_same_cpus_at_the_local_distance_are_read_as_one_node_with_a_note():
    topology = ALTIX.source(kind="sysfs").read()

    assert [(n.id, n.cpus.to_list(), dict(n.distances)) for n in topology.nodes] == [(0, "0-7", {0: 10})]
    (note,) = topology.notes
    assert (note.code, note.values) == ("sysfs_nodes_merged", {"nodes": "0-1", "cpus": "0-7", "kept": 0})


def test_a_process_on_the_merged_node_binds_to_it():
    source = ALTIX.source(kind="sysfs")

    plan = plan_binding(source.read(), [], source.allowed(), node=0)

    assert plan.nodes == (0,) and plan.cpus.to_list() == "0-7" and plan.memory_nodes == (0,)


@pytest.mark.parametrize(
    ("cpus", "distances", "why"),
    [
        ("4-7", (10, 10), "CPUs 4-7 are node 0's too"),  # shares only some CPUs: no kernel wrote that
        ("0-7", (20, 10), "lies at another distance"),  # the same CPUs, but the nodes are not one place
    ],
    ids=["partial-overlap", "same-cpus-other-distance"],
)
def test_nodes_that_are_not_one_place_are_refused(render, cpus, distances, why):
    nodes = (NodeSpec(0, "0-7", 2_047, (10, distances[0])), NodeSpec(1, cpus, 0, (distances[0], distances[1])))
    odd = replace(ALTIX, nodes=nodes, merged_nodes=())

    with pytest.raises(SysfsFormatError, match=why):
        SysfsTopology(root=render(odd)).read()
