"""A plan reads what it uses: an explicit node and no GPU reads no PCI function, RDMA device or PCIe path;
a GPU plan reads them all and still names its nearest NICs (issue 15), on the rendered DGX H100."""

from __future__ import annotations

import os

import pytest

from gpunuma import compose
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core import planner
from gpunuma.core.planner import plan_binding
from gpunuma.core.policy import Policy
from gpunuma.settings import CapturedTree, Options
from gpunuma_fakes import machine

DGX = machine("dgx-h100")
NODE0 = DGX.topology().node(0)
assert NODE0 is not None


def _touched(mocker, call) -> tuple[list[str], object]:
    """Every path ``call`` opens, lists or resolves through the sysfs readers, and what it returned."""
    opens = mocker.patch("gpunuma.adapters.procfs.os.open", side_effect=os.open)
    lists = mocker.patch("gpunuma.adapters.procfs.os.listdir", side_effect=os.listdir)
    links = mocker.patch("gpunuma.adapters.sysfs_nics.os.readlink", side_effect=os.readlink)
    kernel = mocker.patch("gpunuma.adapters.sysfs_nics.os.open", side_effect=os.open)
    result = call()
    paths = [str(c.args[0]) for spy in (opens, lists, links, kernel) for c in spy.call_args_list]
    for spy in (opens, lists, links, kernel):
        mocker.stop(spy)
    return paths, result


def _pci(paths: list[str]) -> list[str]:
    return [p for p in paths if "/sys/bus/pci" in p or "/sys/class/infiniband" in p or "/sys/devices/pci" in p]


def test_a_plan_for_an_explicit_node_reads_no_pci_function_nic_or_pcie_path(rendered, mocker):
    root = rendered("dgx-h100")
    options = Options(source="auto", machine=CapturedTree(str(root)))

    paths, planned = _touched(mocker, lambda: compose.plan(options, node=0))

    assert _pci(paths) == [] and not [p for p in paths if "/proc/driver/nvidia" in p]
    assert [p for p in paths if p.endswith("node0/cpulist")]  # the nodes were read
    assert (planned.nodes, planned.cpus, planned.memory_nodes) == ((0,), NODE0.cpus, (0,))
    assert planned.gpus == () and planned.nics == () and "explicit_node" in planned.reason_codes


@pytest.mark.parametrize("scope", ["node", "exclusive"])
def test_a_gpu_plan_reads_the_nics_and_names_the_one_behind_its_switch(rendered, mocker, scope):
    root = rendered("dgx-h100")
    options = Options(source="sysfs", machine=CapturedTree(str(root)), policy=Policy(cpu_scope=scope))

    paths, planned = _touched(mocker, lambda: compose.plan(options, gpus=[0]))

    assert [p for p in paths if "/sys/class/infiniband/mlx5_0" in p]
    assert [(nic.name, nic.pci_bus_id, nic.ports) for nic in planned.nics] == [("mlx5_0", "0000:18:00.0", (1,))]
    assert planned.nodes == (0,) and planned.cpus <= NODE0.cpus and planned.env()["NCCL_IB_HCA"] == "=mlx5_0:1"


def test_without_gpus_the_reader_gives_the_same_nodes_and_no_device(rendered, mocker):
    root = rendered("dgx-h100")
    full = SysfsTopology(root=root, layout=False).read()

    paths, light = _touched(mocker, SysfsTopology(root=root, layout=False, gpus=False).read)

    assert _pci(paths) == [] and (light.gpus, light.nics) == ((), ())
    assert [(n.id, n.cpus, n.has_memory, n.distances) for n in light.nodes] == [
        (n.id, n.cpus, n.has_memory, n.distances) for n in full.nodes
    ]
    assert len(full.gpus) == 8 and len(full.nics) == 12


def test_a_plan_for_an_explicit_node_places_no_gpu(mocker):
    node1 = DGX.topology().node(1)
    assert node1 is not None
    ranks = mocker.spy(planner, "gpu_nodes")
    planned = plan_binding(DGX.topology(), [], DGX.allowed(), node=1)
    assert ranks.call_count == 0 and (planned.nodes, planned.cpus) == ((1,), node1.cpus)

    planned = plan_binding(DGX.topology(), [5], DGX.allowed())
    assert ranks.call_count == 1 and (planned.nodes, planned.cpus) == ((1,), node1.cpus)
    assert [nic.name for nic in planned.nics] == ["mlx5_9"]
