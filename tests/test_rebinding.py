"""Rebinding and a user's own choices: gpunuma tells its own earlier binding apart from a user's or a
scheduler's narrowing, and leaves a memory policy someone set alone like a narrowed affinity.

The real-kernel cases run in a spawned child on a simulated two-node topology whose node 0 is this
host's first CPU and node 1 its last, with what the process is allowed read from the live ``/proc``.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from gpunuma.adapters.mempolicy import MempolicySyscalls
from gpunuma.adapters.own_binding import ThisProcess
from gpunuma.adapters.procfs import read_allowed
from gpunuma.adapters.syscall import SyscallBinder
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.api import bind_to_gpu
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.kernel_policy import Mempolicy, Mode
from gpunuma.core.plan import Allowed
from gpunuma.core.policy import MemoryPolicy, Policy
from gpunuma.core.rebind import OwnBinding, as_before, next_record
from gpunuma_fakes import build, machine
from gpunuma_fakes.kernel import SimulatedKernel

ALLOWED = frozenset(os.sched_getaffinity(0))
FIRST, LAST = min(ALLOWED), max(ALLOWED)
pytestmark = pytest.mark.skipif(len(ALLOWED) < 2, reason="two nodes of one CPU each need 2+ CPUs")


def in_child(function: Any, *args: Any) -> Any:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result(timeout=120)


class ThisProcessOnTwoNodes:
    """GPU 0 on node 0 (CPU ``FIRST``), GPU 1 on node 1 (CPU ``LAST``); allowed read from this live process."""

    name = "sysfs"

    def __init__(self) -> None:
        spec = build(sockets=2, cores_per_node=1, gpus_per_node=1)
        topology = spec.topology()
        remap = {0: FIRST, 1: LAST}
        nodes = tuple(dataclasses.replace(n, cpus=CpuSet.of([remap[n.id]])) for n in topology.nodes)
        gpus = tuple(dataclasses.replace(g, local_cpus=CpuSet.of([remap[g.numa_node]])) for g in topology.gpus)
        self.topology = dataclasses.replace(topology, nodes=nodes, gpus=gpus, cpus=())

    def read(self) -> Any:
        return self.topology

    def allowed(self) -> Allowed:
        return SysfsTopology(root="/", process=ThisProcess()).allowed()


def _bind(gpu: int, **options: Any) -> Any:
    return bind_to_gpu(gpu, source=ThisProcessOnTwoNodes(), binder=SyscallBinder(), env={}, **options)


def _threads() -> set[frozenset[int]]:
    return {frozenset(os.sched_getaffinity(int(tid))) for tid in os.listdir("/proc/self/task")}


# -- gpunuma's own earlier binding -----------------------------------------------------------------
def _rebind_for_another_gpu() -> dict[str, Any]:
    no_memory = Policy(memory=MemoryPolicy.NONE)  # node 1 exists only in the simulated topology
    first = _bind(0, policy=no_memory)
    second = _bind(1, policy=no_memory)  # the Ray hook's rebind of a worker reused for GPU 1
    return {"first": first.plan.nodes, "second": (second.bound, second.plan.nodes), "threads": _threads()}


def test_a_second_bind_for_another_gpu_lands_on_the_new_node():
    result = in_child(_rebind_for_another_gpu)

    assert result == {"first": (0,), "second": (True, (1,)), "threads": {frozenset({LAST})}}


def _same_plan_twice() -> dict[str, Any]:
    first, second = _bind(0), _bind(0)
    return {
        "bound": (first.ok, second.ok),
        "codes": second.plan.reason_codes,
        "policy": MempolicySyscalls().get(),
    }


def test_binding_the_same_plan_twice_reports_bound_both_times():
    result = in_child(_same_plan_twice)

    assert result["bound"] == (True, True)
    assert "affinity_narrowed" not in result["codes"] and "memory_policy_set" not in result["codes"]
    assert result["policy"] == Mempolicy(Mode.PREFERRED, (0,))


def _narrowed_after_gpunuma() -> dict[str, Any]:
    no_memory = Policy(memory=MemoryPolicy.NONE)
    _bind(1, policy=no_memory)
    os.sched_setaffinity(0, {LAST})  # someone narrows it again by hand (taskset -p)
    os.sched_setaffinity(0, {FIRST})
    report = _bind(1, policy=no_memory)
    return {"bound": report.bound, "codes": report.plan.reason_codes}


def test_a_narrowing_done_after_gpunuma_bound_is_someone_elses_and_left_alone():
    result = in_child(_narrowed_after_gpunuma)

    assert result["bound"] is False
    assert "affinity_narrowed" in result["codes"]


def test_without_a_cgroup_file_gpunumas_own_cpus_never_become_the_limit(render):
    spec = dataclasses.replace(machine("dgx-h100"), affinity="0-55,112-167")  # the status after binding GPU 0
    root = render(spec)
    for cgroup in (root / "sys/fs/cgroup").rglob("cpuset.*"):
        cgroup.unlink()
    own = OwnBinding(spec.online_cpus(), None, CpuSet.parse_list("0-55,112-167"), None)

    allowed = read_allowed(root, own=own)
    ignorant = read_allowed(root)

    assert ignorant.cpus == CpuSet.parse_list("0-55,112-167")  # the old reading: node 1 looked forbidden
    assert allowed.cpus == allowed.affinity == spec.online_cpus()


def test_the_record_keeps_what_the_process_held_before_the_first_binding():
    everything, node0, node1 = CpuSet.parse_list("0-3"), CpuSet.of([0, 1]), CpuSet.of([2, 3])
    preferred0, preferred1 = Mempolicy(Mode.PREFERRED, (0,)), Mempolicy(Mode.PREFERRED, (1,))
    user = Mempolicy(Mode.INTERLEAVE, (0, 1))

    first = next_record(None, everything, None, node0, preferred0)
    second = next_record(first, node0, preferred0, node1, preferred1)
    third = next_record(second, node1, preferred1, node1, None)  # memory left alone this time

    assert second == OwnBinding(everything, None, node1, preferred1)
    assert third == second
    held = Allowed(cpus=everything, mems=frozenset({0, 1}), affinity=node1, mempolicy=preferred1)
    assert as_before(held, third, cpuset_from_affinity=False) == Allowed(everything, frozenset({0, 1}), everything)
    # A policy gpunuma did not set stays the user's.
    other = dataclasses.replace(held, mempolicy=user)
    assert as_before(other, third, cpuset_from_affinity=False).mempolicy == user


# -- a memory policy someone set ---------------------------------------------------------------------
def _under_numactl(mode: Mode, override: bool) -> dict[str, Any]:
    MempolicySyscalls().set(Mempolicy(mode, (0,)))  # numactl --membind=0 / --interleave=0, no CPU option
    report = _bind(0, policy=Policy(override_affinity=override))
    return {
        "bound": report.bound,
        "memory": report.plan.memory_policy,
        "codes": report.plan.reason_codes,
        "held": MempolicySyscalls().get(),
        "threads": _threads(),
    }


@pytest.mark.parametrize("mode", [Mode.BIND, Mode.INTERLEAVE])
def test_a_memory_policy_set_before_is_left_alone_and_said_so(mode):
    result = in_child(_under_numactl, mode, False)

    assert result["bound"] and result["threads"] == {frozenset({FIRST})}  # the CPUs are still bound
    assert result["memory"] is MemoryPolicy.NONE
    assert "memory_policy_set" in result["codes"]
    assert result["held"] == Mempolicy(mode, (0,))


def test_the_override_switch_replaces_a_memory_policy_set_before():
    result = in_child(_under_numactl, Mode.BIND, True)

    assert result["memory"] is MemoryPolicy.PREFERRED
    assert "memory_policy_overridden" in result["codes"]
    assert result["held"] == Mempolicy(Mode.PREFERRED, (0,))


@pytest.mark.parametrize(("env", "kept"), [({}, True), ({"GPUNUMA_OVERRIDE": "1"}, False)])
def test_a_simulated_process_under_numactl_interleave_keeps_its_policy(render, env, kept):
    spec = dataclasses.replace(machine("dgx-h100"), mempolicy="interleave:0-1")
    source = SysfsTopology(root=render(spec))
    kernel = SimulatedKernel.for_machine(spec)

    report = bind_to_gpu(5, source=source, binder=kernel, env=env)

    assert source.allowed().mempolicy == Mempolicy(Mode.INTERLEAVE, (0, 1))  # read from numa_maps
    assert report.bound and report.plan.nodes == (1,)
    held = (report.kernel.mempolicy, report.kernel.mempolicy_nodes)
    assert held == (("interleave", (0, 1)) if kept else ("preferred", (1,)))
    assert ("memory_policy_set" if kept else "memory_policy_overridden") in report.plan.reason_codes
