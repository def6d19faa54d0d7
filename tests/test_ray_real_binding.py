"""Real binding inside Ray actors on this CI machine: real sysfs, real libnuma, real threads.

The actor binds its whole process; the test reads ``/proc/self/task`` inside the actor and checks
that every thread, including the ones Ray started before ``__init__``, holds the new affinity.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from gpunuma.adapters.sysfs import SysfsTopology  # noqa: E402
from gpunuma.api import apply_plan, bind_to_node, plan_for  # noqa: E402
from gpunuma.core.cpuset import CpuSet  # noqa: E402
from gpunuma.core.model import Gpu, Topology  # noqa: E402
from gpunuma.core.plan import Allowed  # noqa: E402
from gpunuma.core.policy import Policy  # noqa: E402
from gpunuma.errors import GpunumaError  # noqa: E402
from gpunuma.integrations.ray import make_setup_hook  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def thread_affinities() -> dict[int, CpuSet]:
    """Every thread of this process and its ``Cpus_allowed_list``, as the kernel reports them."""
    result: dict[int, CpuSet] = {}
    for entry in Path("/proc/self/task").iterdir():
        try:
            status = (entry / "status").read_text()
        except FileNotFoundError:  # the thread exited while we listed
            continue
        line = next(line for line in status.splitlines() if line.startswith("Cpus_allowed_list:"))
        result[int(entry.name)] = CpuSet.parse_list(line.split(":", 1)[1])
    return result


def libnuma_binder():
    from gpunuma.adapters.libnuma import LibnumaBinder

    try:
        return LibnumaBinder()
    except GpunumaError as err:
        pytest.skip(f"no usable libnuma here: {err}")


def node0_cpus() -> CpuSet:
    return SysfsTopology(root="/").read().cpu_nodes[0].cpus


class ThreadProbe:
    """An actor that binds itself in ``__init__`` and keeps what the kernel showed before and after."""

    def __init__(self, narrow_to_first_cpu: bool) -> None:
        from gpunuma.adapters.libnuma import LibnumaBinder

        self.before = thread_affinities()
        if narrow_to_first_cpu:
            # A plan for the only node, narrowed to one CPU, so the change is visible on any box.
            plan = plan_for(node=0, source=SysfsTopology(root="/"))
            plan = dataclasses.replace(plan, cpus=CpuSet.of([min(plan.cpus)]))
            self.report = apply_plan(plan, LibnumaBinder(), strict=True)
        else:
            self.report = bind_to_node(0, source=SysfsTopology(root="/"), binder=LibnumaBinder(), strict=True)
        self.after = thread_affinities()

    def result(self):
        return self.before, self.report, self.after


@pytest.fixture(scope="class")
def plain_ray():
    """A local Ray for one test class (each class needs its own job-level settings)."""
    libnuma_binder()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


class TestActorBindsEveryThread:
    def run_probe(self, narrow: bool):
        actor = ray.remote(num_cpus=0)(ThreadProbe).remote(narrow)
        try:
            return ray.get(actor.result.remote())
        finally:
            ray.kill(actor)

    def test_bind_to_node_0_reaches_every_thread_ray_started_before_init(self, plain_ray):
        before, report, after = self.run_probe(narrow=False)

        node0 = node0_cpus()
        assert len(before) > 1, "a Ray worker runs several threads before the actor's __init__"
        assert report.bound and report.method == "libnuma"
        assert report.cpus == node0
        reported = {t.tid: t.cpus for t in report.kernel.threads}
        assert set(before) <= set(reported), "the report lists every thread that existed before"
        for tid in before:
            if tid in after:
                assert after[tid] == node0 == reported[tid]

    def test_narrowed_plan_moves_every_preexisting_thread(self, plain_ray):
        if len(node0_cpus()) < 2:
            pytest.skip("node 0 has a single CPU: a narrowed plan would change nothing")
        before, report, after = self.run_probe(narrow=True)

        first = CpuSet.of([min(node0_cpus())])
        assert report.bound and report.cpus == first
        assert any(cpus != first for cpus in before.values()), "the threads started elsewhere"
        still_alive = [tid for tid in before if tid in after]
        assert len(still_alive) > 1
        assert all(after[tid] == first for tid in still_alive)
        assert all(t.cpus == first for t in report.kernel.threads)


class MachineWithTwoGpus:
    """This machine as its sysfs shows it, plus two simulated GPUs attached to node 0."""

    name = "this-machine+2gpus"

    def __init__(self) -> None:
        self.sysfs = SysfsTopology(root="/")

    def read(self) -> Topology:
        topology = self.sysfs.read()
        node0 = topology.cpu_nodes[0]
        gpus = tuple(
            Gpu(index=i, pci_bus_id=f"0000:{bus}:00.0", uuid=f"GPU-{i:08d}-0000-0000-0000-000000000000",
                numa_node=node0.id, local_cpus=node0.cpus, name="simulated")
            for i, bus in enumerate(("1b", "43"))
        )
        return dataclasses.replace(topology, gpus=gpus)

    def allowed(self) -> Allowed:
        return self.sysfs.allowed()


class Unmodified:
    """A user's actor with no gpunuma code at all."""

    def where(self) -> tuple[list[int], dict[int, CpuSet]]:
        return [int(g) for g in ray.get_gpu_ids()], thread_affinities()


@pytest.fixture(scope="class")
def hooked_ray():
    """A local Ray whose job installs the gpunuma setup hook (real libnuma, exclusive CPU shares)."""
    libnuma_binder()
    if len(node0_cpus()) < 2:
        pytest.skip("node 0 needs two cores to split between two GPUs")
    hook = make_setup_hook(source=MachineWithTwoGpus(), binder="libnuma", policy=Policy(cpu_scope="exclusive"))
    ray.init(
        num_cpus=2,
        num_gpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"worker_process_setup_hook": hook},
    )
    try:
        yield
    finally:
        ray.shutdown()


class TestSetupHook:
    def test_unmodified_gpu_actors_are_bound_when_ray_assigns_their_gpu(self, hooked_ray):
        remote = ray.remote(num_gpus=1, num_cpus=0)(Unmodified)
        actors = [remote.remote() for _ in range(2)]
        try:
            results = ray.get([a.where.remote() for a in actors])
        finally:
            for actor in actors:
                ray.kill(actor)

        # Exclusive scope splits node 0's cores between its two GPUs by rank: GPU 0 gets the first.
        cores = sorted(node0_cpus())
        per_gpu = {}
        for gpu_ids, threads in results:
            (gpu,) = gpu_ids
            assert len(threads) > 1
            assert len(set(threads.values())) == 1, "every thread of the process got the same CPUs"
            per_gpu[gpu] = next(iter(threads.values()))
        assert sorted(per_gpu) == [0, 1]
        assert per_gpu[0].isdisjoint(per_gpu[1])
        assert cores[0] in per_gpu[0] and cores[-1] in per_gpu[1]

    def test_worker_without_gpu_is_left_alone(self, hooked_ray):
        actor = ray.remote(num_cpus=0)(Unmodified).remote()
        try:
            gpu_ids, threads = ray.get(actor.where.remote())
        finally:
            ray.kill(actor)

        assert gpu_ids == []
        allowed = CpuSet.of(os.sched_getaffinity(0))
        assert set(threads.values()) == {allowed}
