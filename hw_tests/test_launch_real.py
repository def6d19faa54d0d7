"""The numactl launcher and `gpunuma exec`: the child reads its own binding."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from gpunuma.core.cpuset import CpuSet

_SELF = "import json, os; print(json.dumps(sorted(os.sched_getaffinity(0))))"


def _node0_plan(sysfs_topology):
    from gpunuma.adapters.sysfs import SysfsTopology
    from gpunuma.core.planner import plan_binding

    return plan_binding(sysfs_topology, (), SysfsTopology().allowed(), node=sysfs_topology.cpu_nodes[0].id)


def test_numactl_launcher_runs_a_bound_child(sysfs_topology, child_env):
    if shutil.which("numactl") is None:
        pytest.skip("numactl is not installed on this host")
    from gpunuma.adapters.numactl import NumactlLauncher

    plan = _node0_plan(sysfs_topology)
    argv = NumactlLauncher().command(plan, [sys.executable, "-c", _SELF])
    out = subprocess.run(argv, env=child_env, capture_output=True, text=True, check=True).stdout
    assert CpuSet.of(json.loads(out)) == plan.cpus


def test_gpunuma_exec_binds_then_runs_the_command(nvml_topology, sysfs_topology, child_env):
    node = sysfs_topology.cpu_nodes[0]
    argv = [sys.executable, "-m", "gpunuma", "exec", "--node", str(node.id), "--", sys.executable, "-c", _SELF]
    out = subprocess.run(argv, env=child_env, capture_output=True, text=True, check=True).stdout
    assert CpuSet.of(json.loads(out.strip().splitlines()[-1])) == node.cpus


def test_gpunuma_exec_for_gpu_0_runs_with_the_planned_cpus(nvml_topology, child_env):
    from gpunuma.api import plan_for

    plan = plan_for(0, env={})
    argv = [sys.executable, "-m", "gpunuma", "exec", "--gpu", "0", "--", sys.executable, "-c", _SELF]
    proc = subprocess.run(argv, env={**child_env, "CUDA_VISIBLE_DEVICES": "0"},
                          capture_output=True, text=True, check=True)
    cpus = CpuSet.of(json.loads(proc.stdout.strip().splitlines()[-1]))
    expected = plan.cpus if plan.binds else CpuSet.of(__import__("os").sched_getaffinity(0))
    assert cpus == expected
