"""NVML and sysfs on a real GPU host: both list the same GPUs and agree on their locality."""

from __future__ import annotations

import json

from gpunuma.core.pci import normalize_bus_id


def test_nvml_lists_every_gpu_with_uuid_and_bus_id(nvml_topology, results_dir):
    import pynvml

    pynvml.nvmlInit()
    try:
        count = pynvml.nvmlDeviceGetCount()
        expected = {
            normalize_bus_id(pynvml.nvmlDeviceGetPciInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).busId)
            for i in range(count)
        }
    finally:
        pynvml.nvmlShutdown()
    assert len(nvml_topology.gpus) == count
    assert {gpu.pci_bus_id for gpu in nvml_topology.gpus} == expected
    for gpu in nvml_topology.gpus:
        assert gpu.uuid and gpu.uuid.startswith("GPU-"), gpu
    if results_dir is not None:
        (results_dir / "topology-nvml.json").write_text(json.dumps(nvml_topology.to_dict(), indent=2))


def test_nvml_and_sysfs_agree_on_bus_ids_nodes_and_local_cpus(nvml_topology, sysfs_topology, results_dir):
    assert [g.pci_bus_id for g in nvml_topology.gpus] == [g.pci_bus_id for g in sysfs_topology.gpus]
    for nvml_gpu, kernel_gpu in zip(nvml_topology.gpus, sysfs_topology.gpus, strict=True):
        assert nvml_gpu.numa_node == kernel_gpu.numa_node, (nvml_gpu, kernel_gpu)
        assert nvml_gpu.local_cpus == kernel_gpu.local_cpus, (nvml_gpu, kernel_gpu)
        if nvml_gpu.numa_node is None:
            # Both say "unknown": NVML must say why in its notes.
            assert nvml_gpu.notes, nvml_gpu
    assert [n.cpus for n in nvml_topology.nodes] == [n.cpus for n in sysfs_topology.nodes]
    if results_dir is not None:
        (results_dir / "topology-sysfs.json").write_text(json.dumps(sysfs_topology.to_dict(), indent=2))


def test_auto_source_uses_nvml_for_identity(nvml_topology):
    from gpunuma.adapters.auto import AutoTopology
    from gpunuma.adapters.sysfs import SysfsTopology

    auto = AutoTopology(sysfs=SysfsTopology()).read()
    assert auto.source.startswith("auto(nvml")
    assert [g.uuid for g in auto.gpus] == [g.uuid for g in nvml_topology.gpus]


def test_plan_for_each_gpu_binds_or_says_why(nvml_topology):
    from gpunuma.api import plan_for

    for gpu in nvml_topology.gpus:
        plan = plan_for(gpu.uuid, env={})
        assert plan.gpus == (gpu.index,)
        if plan.binds:
            assert plan.cpus <= nvml_topology.all_cpus
        else:
            assert plan.reasons, plan


_BIND_PROBE = """
import json, sys
import gpunuma
plan = gpunuma.plan_for(0)
print(json.dumps({"pynvml": "pynvml" in sys.modules, "nodes": list(plan.nodes)}))
"""


def test_a_plan_asks_nvml_only_when_sysfs_cannot_answer(sysfs_topology, nvml_topology, child_env):
    # A fresh process plans GPU 0 as a worker would: pynvml is imported only if sysfs and the driver's
    # /proc leave something NVML must answer (numa_node -1, no UUID), and the plan is NVML's.
    import subprocess
    import sys

    from gpunuma.adapters.auto import nvml_needs
    from gpunuma.api import plan_for

    env = {k: v for k, v in child_env.items() if k != "CUDA_VISIBLE_DEVICES"}
    out = subprocess.run([sys.executable, "-c", _BIND_PROBE], env=env, capture_output=True, text=True, check=True)
    child = json.loads(out.stdout.strip().splitlines()[-1])
    assert child["pynvml"] is bool(nvml_needs(sysfs_topology))
    assert child["nodes"] == list(plan_for(0, source="nvml", env={}).nodes)
