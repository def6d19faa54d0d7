"""The composition root: resolve, plan, bind and report, with simulated machines injected."""

from __future__ import annotations

import logging

import pytest

from gpunuma.adapters.noop import NoopBinder
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.api import bind_to_gpu, bind_to_node, make_binder, make_source, plan_for
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.policy import CpuScope, Policy
from gpunuma.errors import BindError, GpuResolutionError, InvalidNodeError, NotBoundError, UnknownSourceError
from gpunuma.settings import CapturedTree, Options
from gpunuma_fakes import machine

NODE0 = CpuSet.parse_list("0-55,112-167")
NODE1 = CpuSet.parse_list("56-111,168-223")


@pytest.fixture
def dgx(rendered):
    dgx = machine("dgx-h100")
    return dgx, dgx.source(rendered("dgx-h100"))


def test_gpu_named_by_uuid_in_cuda_visible_devices_binds_to_its_node(dgx):
    simulated, source = dgx
    kernel = simulated.kernel()
    uuid = source.read().gpu(6).uuid
    report = bind_to_gpu(source=source, binder=kernel, env={"CUDA_VISIBLE_DEVICES": uuid})
    assert report.bound and report.ok
    assert report.plan.gpus == (6,) and report.plan.nodes == (1,)
    assert report.cpus == NODE1
    assert kernel.applied == [report.plan]
    assert report.plan.reason_codes[0] == "gpu_from_visibility"
    assert report.plan.reasons[0].values["origin"] == f"CUDA_VISIBLE_DEVICES={uuid}"


def test_local_index_maps_through_a_permuted_visible_list(dgx):
    _, source = dgx
    plan = plan_for(0, source=source, env={"CUDA_VISIBLE_DEVICES": "5,1"})
    assert plan.gpus == (5,) and plan.nodes == (1,)


def test_environment_policy_is_used_when_no_policy_is_given(dgx):
    _, source = dgx
    plan = plan_for(2, source=source, env={"GPUNUMA_CPU_SCOPE": "exclusive", "GPUNUMA_MEMORY": "bind"})
    assert plan.policy.cpu_scope is CpuScope.EXCLUSIVE
    assert plan.memory_policy.value == "bind"
    assert plan.cpus < NODE0 and len(plan.cpus) == 28  # 56 cores / 4 GPUs = 14 cores, 2 threads each


def test_explicit_node_binds_a_cpu_only_helper(dgx):
    simulated, source = dgx
    report = bind_to_node(1, source=source, binder=simulated.kernel(), env={})
    assert report.bound and report.plan.gpus == () and report.cpus == NODE1


def test_best_effort_failure_restores_and_reports_not_bound(dgx, caplog):
    simulated, source = dgx
    kernel = simulated.kernel(fail="cpu")
    with caplog.at_level(logging.WARNING, logger="gpunuma"):
        report = bind_to_gpu(3, source=source, binder=kernel, env={})
    assert not report.bound
    assert report.reason_codes[-1] == "bind_failed" and "sched_setaffinity" in report.reasons[-1].values["error"]
    assert {t.cpus for t in kernel.threads} == {simulated.allowed().cpus}  # every thread as it was
    assert "not bound" in caplog.text


def test_strict_failure_raises_not_bound_caused_by_the_binders_error(dgx):
    simulated, source = dgx
    with pytest.raises(NotBoundError, match="sched_setaffinity") as caught:
        bind_to_gpu(3, source=source, binder=simulated.kernel(fail="cpu"), strict=True, env={})
    assert isinstance(caught.value.__cause__, BindError) and caught.value.report.reason_codes[-1] == "bind_failed"


def test_strict_comes_from_the_environment_too(dgx):
    simulated, source = dgx
    with pytest.raises(NotBoundError):
        bind_to_gpu(3, source=source, binder=simulated.kernel(fail="cpu"),
                    env={"GPUNUMA_STRICT": "1"})


@pytest.mark.parametrize("switch", [{"strict": True}, {"require_bound": True}], ids=["strict", "require_bound"])
def test_nothing_bound_is_one_error_type_whichever_switch_asked(dgx, switch):
    _, source = dgx
    report = bind_to_gpu("GPU-00000000-dead", source=source, binder=NoopBinder(), env={})
    assert not report.bound and report.reason_codes[-1] == "plan_failed"
    with pytest.raises(NotBoundError) as caught:
        bind_to_gpu("GPU-00000000-dead", source=source, binder=NoopBinder(), env={}, **switch)
    assert caught.value.report.reason_codes[-1] == "plan_failed"
    assert isinstance(caught.value.__cause__, GpuResolutionError), "the typed error that stopped it"


def test_a_node_the_machine_lacks_is_not_bound_and_strict_says_which(dgx):
    _, source = dgx
    assert bind_to_node(9, source=source, binder=NoopBinder(), env={}).reason_codes[-1] == "plan_failed"
    with pytest.raises(NotBoundError, match="does not exist") as caught:
        bind_to_node(9, source=source, binder=NoopBinder(), strict=True, env={})
    assert isinstance(caught.value.__cause__, InvalidNodeError) and caught.value.__cause__.node == 9


@pytest.mark.parametrize("node", [None, "1", 1.0, True], ids=repr)
def test_bind_to_node_of_anything_but_an_int_is_a_typed_error_even_best_effort(rendered, node):
    # On the DGX A100 bind_to_node(None) once resolved every GPU and bound to all their nodes: 1,3,5,7.
    a100 = machine("dgx-a100")
    kernel = a100.kernel()
    with pytest.raises(InvalidNodeError, match="a node id is an int"):
        bind_to_node(node, source=a100.source(rendered("dgx-a100")), binder=kernel,  # type: ignore[arg-type]
                     env={"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"})
    assert kernel.applied == []


def test_bind_to_node_takes_an_integer_type_such_as_numpy_s(rendered):
    class Int64:  # what numpy.int64 offers: __index__, no int base class
        def __index__(self) -> int:
            return 3

    a100 = machine("dgx-a100")
    report = bind_to_node(Int64(), source=a100.source(rendered("dgx-a100")), binder=a100.kernel(), env={})  # type: ignore[arg-type]
    assert report.bound and report.plan.nodes == (3,)


def test_bind_disabled_by_environment_records_the_plan_and_changes_nothing(dgx):
    simulated, source = dgx
    kernel = simulated.kernel()
    report = bind_to_gpu(5, source=source, binder=kernel, env={"GPUNUMA_BIND": "0"})
    assert not report.bound and report.method == "noop"
    assert report.plan.nodes == (1,)  # the plan was still made: a dry run
    assert kernel.applied == []  # even a binder passed in code is not used


def test_a_process_without_gpus_gets_a_no_binding_plan_not_an_error(rendered):
    source = SysfsTopology(root=rendered("dgx-h100"))
    plan = plan_for(source=source, env={"CUDA_VISIBLE_DEVICES": ""})
    assert not plan.binds and plan.reason_codes == ("no_gpu_owned",)


def test_one_log_line_names_node_cpus_and_gpu(dgx, caplog):
    simulated, source = dgx
    with caplog.at_level(logging.INFO, logger="gpunuma"):
        bind_to_gpu(3, source=source, binder=simulated.kernel(), env={}, label="TP3")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("gpunuma.")]
    # One prefix: the logger's name says gpunuma, the message does not again ("WARNING:gpunuma.compose:...").
    assert lines == [f"[TP3] bound to NUMA node 0 (CPUs {NODE0}), memory preferred 0 for GPU 3"]


def test_sources_and_binders_are_built_by_name(rendered):
    assert make_source("sysfs", machine=CapturedTree(str(rendered("workstation")))).name == "sysfs"
    assert make_binder("noop").name == "noop"
    source = SysfsTopology(root=rendered("workstation"))
    assert make_source(source) is source
    with pytest.raises(UnknownSourceError, match="known: auto, nvml, sysfs"):
        make_source("magic")


def test_policy_argument_wins_over_environment(dgx):
    _, source = dgx
    plan = plan_for(2, source=source, policy=Policy(cpu_scope="socket"), env={"GPUNUMA_CPU_SCOPE": "exclusive"})
    assert plan.policy.cpu_scope is CpuScope.SOCKET


def test_gpus_without_locality_are_spread_by_rank_only_when_asked(rendered):
    vm = machine("cloud-vm")
    source = vm.source(rendered("cloud-vm"))
    assert not plan_for(3, source=source, env={}).binds  # default: not guessing
    nodes = [plan_for(gpu, source=source, env={"GPUNUMA_SPREAD": "1"}).nodes for gpu in range(4)]
    assert nodes == [(0,), (0,), (1,), (1,)]  # contiguous blocks in bus order, never all on node 0


@pytest.mark.parametrize("scope, layout", [("node", False), ("socket", True), ("exclusive", True)])
def test_the_root_reads_each_cpus_core_and_socket_only_for_the_plans_that_use_them(rendered, mocker, scope, layout):
    from gpunuma import compose
    from gpunuma.adapters import sysfs

    spy = mocker.spy(sysfs, "read_cpus")
    options = Options(source="sysfs", machine=CapturedTree(str(rendered("dgx-h100"))), policy=Policy(cpu_scope=scope))
    assert compose.plan(options, node=1).nodes == (1,)
    assert spy.called is layout, "an explicit node in node scope needs no core"
    assert compose.plan(options, gpus=[5]).nodes == (1,)
    assert spy.called, "a GPU's plan splits whole cores among the processes sharing its node"
