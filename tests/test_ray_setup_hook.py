"""The Ray setup hook in one worker process: Ray assigns GPUs, the hook binds, reused workers rebind.

Ray is simulated here: a ``ray`` module whose ``get_gpu_ids()`` the test sets, and a
``ray._private.utils`` whose ``set_visible_accelerator_ids`` the test calls as Ray does before
each task or actor creation. The binder is the simulated kernel of a DGX H100, and the topology
source shows the affinity that kernel holds now, as ``/proc/self/status`` would.
"""

from __future__ import annotations

import dataclasses
import sys
import types
from collections.abc import Callable

import pytest

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.model import Topology
from gpunuma.core.plan import Allowed
from gpunuma.core.policy import MemoryPolicy, Policy
from gpunuma.integrations.ray import install_binding_hook
from gpunuma_fakes import machine
from gpunuma_fakes.kernel import SimulatedKernel

NODE0 = CpuSet.parse_list("0-55,112-167")
NODE1 = CpuSet.parse_list("56-111,168-223")


class KernelBackedSource:
    """dgx-h100's topology; ``allowed()`` reports the affinity the simulated kernel holds now."""

    name = "kernel-backed"

    def __init__(self, kernel: SimulatedKernel) -> None:
        self.kernel = kernel

    def read(self) -> Topology:
        return self.kernel.topology

    def allowed(self) -> Allowed:
        return dataclasses.replace(self.kernel.allowed, affinity=self.kernel.view().cpus_allowed)


class SimulatedRay:
    """A Ray worker process: ``assign(gpus)`` does what Ray does before a task or actor runs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gpu_ids: list[int] = []
        self.visibility_calls = 0
        #: What Ray's runtime context says of the task about to run: an actor's creation, as Ray names it.
        self.task = {"function": "app.servers.Worker.__init__", "actor_id": "c091f7cf", "actor_name": "tp3"}
        worker = types.SimpleNamespace(  # WORKER_MODE, not the driver
            worker=types.SimpleNamespace(mode=1),
            get_task_function_name=lambda: self.task["function"],
            get_actor_id=lambda: self.task["actor_id"],
            get_actor_name=lambda: self.task["actor_name"],
        )
        self.api = types.SimpleNamespace(
            is_initialized=lambda: True,
            get_gpu_ids=lambda: list(self.gpu_ids),
            get_runtime_context=lambda: worker,
            WORKER_MODE=1,
        )
        self.utils = types.ModuleType("ray._private.utils")
        self.original = self._set_visible_accelerator_ids
        self.utils.set_visible_accelerator_ids = self.original  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "ray", self.api)
        monkeypatch.setitem(sys.modules, "ray._private.utils", self.utils)

    def _set_visible_accelerator_ids(self) -> None:
        self.visibility_calls += 1

    @property
    def hook(self) -> Callable[[], None]:
        return self.utils.set_visible_accelerator_ids  # type: ignore[no-any-return]

    def assign(self, *gpus: int) -> None:
        self.gpu_ids = list(gpus)
        self.hook()


@pytest.fixture
def ray_worker(monkeypatch: pytest.MonkeyPatch) -> SimulatedRay:
    for name in ("GPUNUMA_BIND", "GPUNUMA_STRICT", "GPUNUMA_CPU_SCOPE", "GPUNUMA_MEMORY", "GPUNUMA_OVERRIDE"):
        monkeypatch.delenv(name, raising=False)
    return SimulatedRay(monkeypatch)


@pytest.fixture
def kernel() -> SimulatedKernel:
    return machine("dgx-h100").kernel()


def test_a_reused_worker_is_rebound_to_the_node_of_its_new_gpu(ray_worker, kernel):
    assert install_binding_hook(source=KernelBackedSource(kernel), binder=kernel, strict=True)
    assert kernel.applied == [], "no GPU yet, nothing bound"

    ray_worker.assign(2)
    ray_worker.assign(5)  # the same worker process, reused for a task on GPU 5

    assert ray_worker.visibility_calls == 2, "Ray's own function still runs"
    assert [(plan.gpus, plan.nodes) for plan in kernel.applied] == [((2,), (0,)), ((5,), (1,))]
    assert kernel.view().cpus_allowed == NODE1
    assert {thread.cpus for thread in kernel.view().threads} == {NODE1}
    assert kernel.applied[1].policy.override_affinity, "only the rebind overrides, because the hook bound it"
    assert not kernel.applied[0].policy.override_affinity


def test_the_same_gpus_again_do_not_rebind(ray_worker, kernel):
    install_binding_hook(source=KernelBackedSource(kernel), binder=kernel, strict=True)
    ray_worker.assign(2)
    ray_worker.assign(2)
    assert len(kernel.applied) == 1


def test_a_rebind_keeps_the_policy_of_the_environment(ray_worker, kernel, monkeypatch):
    monkeypatch.setenv("GPUNUMA_CPU_SCOPE", "exclusive")
    install_binding_hook(source=KernelBackedSource(kernel), binder=kernel, strict=True)
    ray_worker.assign(1)
    ray_worker.assign(5)

    # GPU 5 is rank 1 of the four GPUs on node 1: cores 70-83 and their SMT siblings.
    rebound = kernel.applied[-1]
    assert rebound.gpus == (5,) and rebound.cpus == CpuSet.parse_list("70-83,182-195")
    assert kernel.view().cpus_allowed == rebound.cpus


def test_a_rebind_keeps_the_policy_passed_in_code(ray_worker, kernel):
    install_binding_hook(
        source=KernelBackedSource(kernel), binder=kernel, policy=Policy(memory="bind"), strict=True
    )
    ray_worker.assign(6)
    ray_worker.assign(0)

    assert [plan.memory_policy for plan in kernel.applied] == [MemoryPolicy.BIND, MemoryPolicy.BIND]
    assert kernel.view().mempolicy == "bind" and kernel.view().mempolicy_nodes == (0,)
    assert kernel.view().cpus_allowed == NODE0


def test_an_affinity_the_user_narrowed_is_still_left_alone(ray_worker):
    dgx = machine("dgx-h100")
    narrowed = dataclasses.replace(dgx.allowed(), affinity=CpuSet.parse_list("0-3"))  # taskset before Ray
    kernel = SimulatedKernel(dgx.topology(), narrowed)
    install_binding_hook(source=KernelBackedSource(kernel), binder=kernel)
    ray_worker.assign(2)
    ray_worker.assign(5)

    assert kernel.applied == [], "the hook never bound it, so it never overrides"
    assert kernel.view().cpus_allowed == CpuSet.parse_list("0-3")


def test_installing_twice_wraps_once_and_binds_once(ray_worker, kernel, mocker):
    first = KernelBackedSource(kernel)
    second = KernelBackedSource(kernel)
    first_reads, second_reads = mocker.spy(first, "read"), mocker.spy(second, "read")
    assert install_binding_hook(source=first, binder=kernel, strict=True)
    wrapper = ray_worker.hook
    assert install_binding_hook(source=second, binder=kernel, strict=True)

    assert ray_worker.hook is wrapper
    assert wrapper.__wrapped__ is ray_worker.original  # type: ignore[attr-defined]
    ray_worker.assign(3)
    assert (first_reads.call_count, second_reads.call_count) == (1, 0)
    assert len(kernel.applied) == 1 and ray_worker.visibility_calls == 1


def test_a_worker_that_already_holds_a_gpu_binds_at_install(ray_worker, kernel):
    ray_worker.gpu_ids = [7]
    install_binding_hook(source=KernelBackedSource(kernel), binder=kernel, strict=True)
    assert [plan.gpus for plan in kernel.applied] == [(7,)]
    assert kernel.view().cpus_allowed == NODE1


def test_the_hook_keeps_its_report_as_the_last_report(ray_worker, kernel):
    from gpunuma.api import last_report

    install_binding_hook(source=KernelBackedSource(kernel), binder=kernel, strict=True)
    ray_worker.assign(5)

    report = last_report()
    assert report is not None and report.bound and report.plan.gpus == (5,)
    assert kernel.applied[-1] == report.plan


# -- the keywords every entry point takes; the lines name the actor --------------------------------------
def test_every_ray_entry_point_takes_the_keywords_bind_to_gpu_takes():
    import inspect

    from gpunuma.api import bind_to_gpu
    from gpunuma.integrations.ray import GpuBoundActor, bind_this_process, make_setup_hook

    shared = {"source", "binder", "policy", "strict", "require_bound", "require_local", "label", "migrate"}
    assert shared <= set(inspect.signature(bind_to_gpu).parameters)
    for entry in (bind_this_process, GpuBoundActor, install_binding_hook, make_setup_hook):
        assert shared <= set(inspect.signature(entry).parameters), entry


@pytest.mark.parametrize(("rank", "label"), [(None, "[Worker tp3]"), ("3", "[Worker rank 3]")])
def test_hook_lines_name_the_actor_class_and_its_rank(ray_worker, kernel, caplog, monkeypatch, rank, label):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    install_binding_hook(source=KernelBackedSource(kernel), binder=kernel)
    with caplog.at_level("INFO", logger="gpunuma"):
        ray_worker.assign(5)

    (line,) = [record.getMessage() for record in caplog.records if "bound to NUMA node" in record.getMessage()]
    assert label in line and line.endswith("for GPU 5")


@pytest.mark.parametrize("require_bound", [False, True])
def test_a_hook_s_own_label_and_require_bound_apply_to_its_bindings(ray_worker, caplog, require_bound):
    from gpunuma.errors import NotBoundError

    cloud = machine("cloud-vm")  # its GPUs report no NUMA locality: nothing gets bound
    kernel = cloud.kernel()
    install_binding_hook(source=KernelBackedSource(kernel), binder=kernel, require_bound=require_bound, label="TP3")
    with caplog.at_level("INFO", logger="gpunuma"):
        if require_bound:
            with pytest.raises(NotBoundError, match="no NUMA locality"):
                ray_worker.assign(1)  # no Ray function manager here: the failure is raised in place
        else:
            ray_worker.assign(1)
            assert any(record.getMessage().startswith("[TP3] not bound") for record in caplog.records)


# -- a strict failure handed to the next function Ray looks up ------------------------------------------
class FunctionManager:
    """Ray's per-worker function manager, as the hook uses it: a lookup cache and the lookup itself."""

    Info = __import__("collections").namedtuple("Info", ["function", "function_name", "max_calls"])

    def __init__(self) -> None:
        self.execution_infos: dict[str, object] = {}

    def get_execution_info(self, job_id: str, descriptor: str) -> object:
        return self.Info(lambda: f"ran {descriptor}", descriptor, 0)

    def run(self, descriptor: str) -> object:
        """What Ray's execute_task does: the cache first, else the lookup, then the call."""
        info = self.execution_infos.get(descriptor)
        if info is None:
            info = self.execution_infos[descriptor] = self.get_execution_info("job", descriptor)
        return info.function()  # type: ignore[attr-defined]


def ray_with(manager: FunctionManager) -> types.SimpleNamespace:
    worker = types.SimpleNamespace(global_worker=types.SimpleNamespace(function_actor_manager=manager))
    return types.SimpleNamespace(_private=types.SimpleNamespace(worker=worker))


def test_a_strict_failure_fails_the_next_task_once_then_the_worker_runs_tasks_again():
    from gpunuma.errors import NotBoundError
    from gpunuma.integrations.ray import fail_this_task

    manager = FunctionManager()
    assert manager.run("warm") == "ran warm"  # cached before the failure: still looked up afresh
    first, second = NotBoundError(None), NotBoundError(None)
    fail_this_task(ray_with(manager), first)
    fail_this_task(ray_with(manager), second)  # twice before a lookup: the last one wins, nothing stacks

    with pytest.raises(NotBoundError) as caught:
        manager.run("warm")
    assert caught.value is second
    assert manager.run("warm") == "ran warm" and manager.run("other") == "ran other"
    assert "get_execution_info" not in vars(manager)


def test_without_ray_s_function_manager_the_strict_failure_is_raised_in_place():
    from gpunuma.errors import NotBoundError
    from gpunuma.integrations.ray import fail_this_task

    err = NotBoundError(None)
    with pytest.raises(NotBoundError) as caught:
        fail_this_task(types.SimpleNamespace(), err)
    assert caught.value is err
