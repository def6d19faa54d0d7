"""Real machines whose kernel files bend the usual rules, read as they must be read (hwloc's captures are the
ground truth): GPUs only the NVIDIA driver names, nodes a kernel lists twice, a captured cgroup, a Kubernetes pod."""

from __future__ import annotations

import pytest

from gpunuma.core.planner import plan_binding
from gpunuma.core.reasons import codes
from gpunuma_fakes import machine

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
