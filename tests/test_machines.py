"""Every simulated machine: the real sysfs adapter reads back exactly what its spec declares,
and the planner puts every GPU on the node the spec expects."""

from __future__ import annotations

import dataclasses
import pickle
import re

import pytest

from gpunuma.adapters.static import StaticTopology
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.planner import plan_binding
from gpunuma.core.reasons import with_code
from gpunuma_fakes import MACHINES, UnknownMachineError, build, machine, names, static_topology

ALL = names()


def without_notes(topology):
    """``topology`` without the adapter's notes (the machine's and each GPU's: file paths, not layout)."""
    gpus = tuple(dataclasses.replace(gpu, notes=()) for gpu in topology.gpus)
    return dataclasses.replace(topology, notes=(), gpus=gpus)
_UUID = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.mark.parametrize("name", ALL)
def test_sysfs_reads_exactly_the_declared_topology(rendered, name):
    read = SysfsTopology(root=rendered(name)).read()

    assert without_notes(read) == machine(name).topology()


@pytest.mark.parametrize("name", ALL)
def test_notes_name_only_a_missing_node_directory_merged_nodes_and_the_gpus_left_out(rendered, name):
    spec = machine(name)
    notes = SysfsTopology(root=rendered(name)).read().notes

    node_notes = with_code(notes, "sysfs_no_numa")
    assert len(node_notes) == (1 if spec.no_numa_dir else 0)
    # The host GPUs this process cannot open (a container's others, a display-only AMD VGA), each named once.
    left_out = {g.bus_id for g in spec.gpus} - {g.bus_id for g in spec.visible_gpus()}
    gpu_notes = with_code(notes, "gpus_not_openable")
    named = [bus for n in gpu_notes for bus in n.values["buses"].split(", ")]
    assert sorted(named) == sorted(left_out)
    merged = with_code(notes, "sysfs_nodes_merged")  # an old kernel's nodes that list the same CPUs
    assert len(merged) == (1 if spec.merged_nodes else 0)
    assert len(notes) == len(node_notes) + len(gpu_notes) + len(merged)


@pytest.mark.parametrize("name", ALL)
def test_allowed_is_the_declared_cpuset_and_affinity(rendered, name):
    assert SysfsTopology(root=rendered(name)).allowed() == machine(name).allowed()


@pytest.mark.parametrize("name", ALL)
def test_every_gpu_lands_on_the_node_its_spec_expects(rendered, name):
    source = SysfsTopology(root=rendered(name))
    topology, allowed = source.read(), source.allowed()
    expected = machine(name).expected_nodes
    assert set(expected) == {gpu.index for gpu in topology.gpus}

    for index, node in expected.items():
        plan = plan_binding(topology, [index], allowed)
        if node is None:
            assert not plan.binds, plan.summary()
        else:
            assert plan.binds and plan.nodes == (node,), plan.summary()
            assert plan.cpus <= allowed.cpus


@pytest.mark.parametrize("name", ALL)
def test_the_static_source_answers_like_sysfs_and_survives_pickling(rendered, name):
    sysfs = SysfsTopology(root=rendered(name))
    static = static_topology(machine(name))

    copy = pickle.loads(pickle.dumps(static))

    assert copy == static
    assert copy.name == "static"
    assert without_notes(sysfs.read()) == copy.read()
    assert sysfs.allowed() == copy.allowed()


def test_static_topology_returns_what_it_was_given():
    spec = machine("gb200")
    source = StaticTopology(spec.topology(), spec.allowed())

    assert source.read() is source.read()
    assert len(source.read().nodes) == 34
    assert source.allowed().mems == frozenset({0, 1, 2, 10, 18, 26})


@pytest.mark.parametrize("name", ALL)
def test_each_machine_cites_sources_and_has_deterministic_well_formed_gpus(name):
    spec = machine(name)

    assert spec.sources and all(source.strip() for source in spec.sources)
    assert len({gpu.bus_id for gpu in spec.gpus}) == len(spec.gpus)
    for gpu in spec.gpus:
        assert _UUID.match(gpu.uuid), gpu.uuid
        assert re.match(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$", gpu.bus_id), gpu.bus_id
    # Two machines never share a UUID (so a test can't mix them up).
    others = {gpu.uuid for other in ALL if other != name for gpu in machine(other).gpus}
    assert others.isdisjoint(gpu.uuid for gpu in spec.gpus)


def test_the_catalogue_holds_the_promised_layouts():
    assert {
        "dgx-h100", "dgx-a100", "gh200", "gb200", "cloud-vm", "snc", "snc-socket-affinity",
        "workstation", "container-dgx-h100", "mi300x", "no-numa", "smt-off",
    } <= set(ALL)  # fmt: skip
    # DGX H100: 2 sockets x 56 cores x 2 threads = 224 CPUs; node 0 = 0-55 and their siblings 112-167.
    dgx = machine("dgx-h100").topology()
    assert len(dgx.cpus) == 224
    assert dgx.node(0).cpus.to_list() == "0-55,112-167"
    # GB200: 34 nodes, 4 HBM nodes of 188416 MB; Grace node 0 is 80 from its GPUs' nodes, 120 from the others.
    gb = machine("gb200").topology()
    assert [n.id for n in gb.nodes if n.memory_mb == 188_416] == [2, 10, 18, 26]
    assert (gb.node(0).distance_to(2), gb.node(0).distance_to(18), gb.node(2).distance_to(3)) == (80, 120, 11)
    # MI300X: 2 x 96 cores x 2 threads; node 1 = 96-191,288-383.
    assert machine("mi300x").topology().node(1).cpus.to_list() == "96-191,288-383"


def test_an_unknown_machine_name_is_a_lookup_error_listing_the_known_ones():
    with pytest.raises(UnknownMachineError) as caught:
        machine("dgx-h300")

    assert isinstance(caught.value, LookupError)
    assert caught.value.known == ALL
    assert "dgx-h100" in str(caught.value) and "'dgx-h300'" in str(caught.value)


def test_the_catalogue_is_read_only():
    with pytest.raises(TypeError):
        MACHINES["mine"] = machine("workstation")  # type: ignore[index]


BUILT = {
    "2x2-snc-smt": build(sockets=2, nodes_per_socket=2, cores_per_node=4, smt=2, gpus_per_node=1),
    "1-socket-cpuless-node": build(cores_per_node=8, cpu_less_nodes=1, gpus_per_node=2),
}


@pytest.mark.parametrize("shape", list(BUILT))
def test_a_built_machine_is_read_back_exactly_and_binds_each_gpu_to_its_node(render, shape):
    built = BUILT[shape]
    source = SysfsTopology(root=render(built))

    topology = source.read()

    assert dataclasses.replace(topology, notes=()) == built.topology()
    for index, node in built.expected_nodes.items():
        assert plan_binding(topology, [index], source.allowed()).nodes == (node,)


def test_build_numbers_cpus_as_linux_does_and_puts_cpu_less_nodes_last():
    built = build(sockets=2, nodes_per_socket=2, cores_per_node=4, smt=2, cpu_less_nodes=2, gpus_per_node=1)
    topology = built.topology()

    assert [node.cpus.to_list() for node in topology.nodes] == [
        "0-3,16-19", "4-7,20-23", "8-11,24-27", "12-15,28-31", "", ""]
    assert [node.has_memory for node in topology.nodes] == [True] * 6
    # 12 within a socket, 21 across; CPU-less node 4 counts as on socket 0, node 5 on socket 1.
    assert topology.node(0).distances == {0: 10, 1: 12, 2: 21, 3: 21, 4: 12, 5: 21}
    assert built.expected_nodes == {0: 0, 1: 1, 2: 2, 3: 3}
    assert [gpu.pci_bus_id for gpu in topology.gpus] == [f"0000:0{i}:00.0" for i in range(1, 5)]
