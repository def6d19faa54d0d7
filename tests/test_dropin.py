"""gpunuma as a drop-in for serving stacks: GPU identity as callers pass it, required binding, simulated
machines selected by the environment, the last report, and log levels.

Each test names the peer call site it stands for; the machines are the simulated catalogue's.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import pytest

import gpunuma
from gpunuma.api import bind_to_gpu, bind_to_node, last_report, plan_for
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.reasons import codes
from gpunuma.errors import NotBoundError
from gpunuma.settings import SettingsError
from gpunuma_fakes import machine

NODE0 = CpuSet.parse_list("0-55,112-167")
NODE1 = CpuSet.parse_list("56-111,168-223")
REVERSED = {"CUDA_VISIBLE_DEVICES": "7,6,5,4,3,2,1,0"}
H200X2 = str(Path(__file__).parent / "data" / "h200x2.tar.gz")


class NoGpuRay:
    """The Ray API inside an actor started with ``num_gpus=0``."""

    def get_gpu_ids(self) -> list[int]:
        return []


@pytest.fixture
def dgx(rendered):
    dgx = machine("dgx-h100")
    return dgx.source(rendered("dgx-h100")), dgx.kernel()


# -- physical ids: NeMo RL's bind_to_gpu_numa(int(ray.get_gpu_ids()[0])) ----------------------------------
def test_a_physical_id_binds_that_gpu_whatever_cuda_visible_devices_lists(dgx):
    source, kernel = dgx
    # RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES=1: the variable lists every GPU of the node, here reversed.
    report = bind_to_gpu(physical=7, source=source, binder=kernel, env=REVERSED)

    assert report.bound and report.plan.gpus == (7,) and report.plan.nodes == (1,) and report.cpus == NODE1
    assert codes(report.reasons)[0] == "gpu_physical"


def test_the_same_int_as_a_local_index_is_the_gpu_the_list_names_there(dgx):
    source, _ = dgx
    # The literal swap NeMo RL must not do: 7 read as cuda:7 is physical GPU 0 here, on node 0.
    assert plan_for(7, source=source, env=REVERSED).gpus == (0,)
    assert plan_for(physical=7, source=source, env=REVERSED).gpus == (7,)


def test_a_physical_id_beyond_the_machine_is_not_bound_with_the_reason(dgx):
    source, kernel = dgx
    report = bind_to_gpu(physical=8, source=source, binder=kernel, env={})

    assert not report.bound and codes(report.reasons) == ("plan_failed",) and kernel.applied == []


# -- torchrun: LOCAL_RANK when nothing narrows the visible GPUs -------------------------------------------
def test_torchrun_local_rank_5_binds_gpu_5_on_node_1(dgx):
    source, kernel = dgx
    report = bind_to_gpu(source=source, binder=kernel, env={"LOCAL_RANK": "5", "LOCAL_WORLD_SIZE": "8"})

    assert report.bound and report.plan.gpus == (5,) and report.plan.nodes == (1,)
    assert codes(report.reasons)[0] == "gpu_from_local_rank"


def test_without_local_rank_all_eight_gpus_span_everything_and_do_not_bind(dgx):
    source, kernel = dgx
    report = bind_to_gpu(source=source, binder=kernel, env={})

    assert not report.bound and report.plan.gpus == tuple(range(8)) and kernel.applied == []
    assert codes(report.reasons)[-1] == "spans_everything"


# -- a Ray worker that holds no GPU ----------------------------------------------------------------------
@pytest.mark.parametrize("env", [{}, {"CUDA_VISIBLE_DEVICES": "3"}], ids=["cvd-unset", "cvd-left-over"])
def test_a_ray_worker_with_num_gpus_0_is_not_bound_and_says_so(dgx, env):
    source, kernel = dgx
    report = bind_to_gpu(source=source, binder=kernel, env=env, ray=NoGpuRay())

    assert not report.bound and kernel.applied == []
    assert codes(report.reasons) == ("ray_worker_without_gpu",)


# -- require_bound / GPUNUMA_REQUIRE ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "env", "code"),
    [
        ("cloud-vm", {"CUDA_VISIBLE_DEVICES": "0"}, "gpu_locality_unknown"),  # a VM that reports no locality
        ("workstation", {}, "spans_everything"),  # one node: nothing to narrow
        ("dgx-h100", {"CUDA_VISIBLE_DEVICES": ""}, "no_gpu_owned"),  # no GPU at all
    ],
)
def test_require_bound_raises_when_nothing_gets_bound(rendered, name, env, code):
    simulated = machine(name)
    kernel = simulated.kernel()
    with pytest.raises(NotBoundError) as caught:
        bind_to_gpu(source=simulated.source(rendered(name)), binder=kernel, env=env, require_bound=True)

    assert not caught.value.report.bound and codes(caught.value.report.reasons)[-1] == code
    assert kernel.applied == [], "nothing was changed"


def test_gpunuma_require_1_raises_for_a_cgroup_that_allows_none_of_the_node(rendered):
    from gpunuma.core.policy import Policy

    container = machine("container-dgx-h100")  # GPU 5 is on node 1, which the cpuset forbids
    with pytest.raises(NotBoundError):
        bind_to_gpu(
            5, source=container.source(rendered("container-dgx-h100")), binder=container.kernel(),
            policy=Policy(on_disallowed="none"), env={"GPUNUMA_REQUIRE": "1"},
        )


def test_require_bound_lets_a_bound_process_through_and_gpunuma_bind_0_wins(dgx):
    source, kernel = dgx
    assert bind_to_gpu(5, source=source, binder=kernel, env={}, require_bound=True).bound
    dry = bind_to_gpu(5, source=source, binder=kernel, env={"GPUNUMA_BIND": "0", "GPUNUMA_REQUIRE": "1"})
    assert not dry.bound and dry.method == "noop", "the off switch is a choice, not a failure"


# -- GPUNUMA_SIMULATE: an unmodified server on a simulated machine ---------------------------------------
def test_gpunuma_simulate_runs_an_argument_free_bind_on_the_simulated_machine():
    before = os.sched_getaffinity(0)

    report = bind_to_gpu(env={"GPUNUMA_SIMULATE": "dgx-h100", "CUDA_VISIBLE_DEVICES": "5"})

    assert report.bound and report.method == "simulated"
    assert report.plan.gpus == (5,) and report.plan.nodes == (1,) and report.cpus == NODE1
    assert {t.tid for t in report.kernel.threads} == {int(t) for t in os.listdir("/proc/self/task")}
    assert os.sched_getaffinity(0) == before, "nothing on this machine changed"


def test_gpunuma_simulate_replays_a_captured_host():
    plan = plan_for(physical=1, env={"GPUNUMA_SIMULATE": H200X2})
    # The lent H200 VM: one node holds every CPU, so its GPUs do not bind (it used to "bind" to node 0).
    assert plan.gpus == (1,) and not plan.binds and codes(plan.reasons)[-1] == "spans_everything"
    assert bind_to_node(0, env={"GPUNUMA_SIMULATE": H200X2}).cpus == CpuSet.parse_list("0-31")


def test_gpunuma_simulate_keeps_adapters_passed_in_code(dgx):
    source, kernel = dgx
    report = bind_to_gpu(2, source=source, binder=kernel, env={"GPUNUMA_SIMULATE": "gb200"})
    assert report.plan.nodes == (0,) and kernel.applied == [report.plan], "the dgx-h100 adapters were used"


def test_an_unknown_gpunuma_simulate_is_a_settings_error_or_a_not_bound_report():
    env = {"GPUNUMA_SIMULATE": "dgx-h1000", "CUDA_VISIBLE_DEVICES": "0"}
    report = bind_to_gpu(env=env)
    assert not report.bound and codes(report.reasons) == ("plan_failed",)
    with pytest.raises(SettingsError, match="dgx-h100"):
        bind_to_gpu(env=env, strict=True)


# -- the last report and its truth value -----------------------------------------------------------------
def test_the_last_report_is_the_binding_in_force(dgx):
    source, kernel = dgx
    assert last_report() is None
    nothing = bind_to_gpu(source=source, binder=kernel, env={"CUDA_VISIBLE_DEVICES": ""})
    assert last_report() is nothing, "while none held, the latest attempt says why"
    bound = bind_to_node(0, source=source, binder=kernel, env={})
    assert last_report() is bound and gpunuma.last_report() is bound

    # A no-op bind_to_gpu() (no GPU named or visible) and a failed one change nothing: the node-0 binding holds.
    noop = bind_to_gpu(source=source, binder=kernel, env={})
    failed = bind_to_gpu(1, source=source, binder=RefusingBinder(), env={})
    dry = bind_to_gpu(1, source=source, binder=kernel, env={"GPUNUMA_BIND": "0"})
    assert not (noop.bound or failed.bound or dry.bound) and codes(failed.reasons)[-1] == "bind_failed"
    assert last_report() is bound and kernel.view().cpus_allowed == NODE0

    rebound = bind_to_gpu(5, source=source, binder=kernel, env={})
    assert last_report() is rebound and rebound.cpus == NODE1, "a binding that holds replaces it"


class RefusingBinder:
    """A binder the kernel refuses: it raises, the process left as it was."""

    name = "refusing"

    def apply(self, plan):
        from gpunuma.errors import BindError

        raise BindError("the kernel refused every CPU")


def test_a_report_is_true_exactly_when_bound(dgx):
    source, kernel = dgx
    bound = bind_to_gpu(1, source=source, binder=kernel, env={})
    unbound = bind_to_gpu(source=source, binder=kernel, env={"CUDA_VISIBLE_DEVICES": ""})
    assert bool(bound) is True and bool(unbound) is False
    assert bool(pickle.loads(pickle.dumps(bound))) is True


# -- log levels: a bound process one INFO line, not bound and refusals WARNING ---------------------------
def gpunuma_records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("gpunuma.")]


def test_bound_is_one_info_line_with_the_label(dgx, caplog):
    source, kernel = dgx
    with caplog.at_level(logging.INFO, logger="gpunuma"):
        bind_to_gpu(6, source=source, binder=kernel, env={}, label="TP6")

    assert gpunuma_records(caplog) == [
        (logging.INFO, f"[TP6] bound to NUMA node 1 (CPUs {NODE1}), memory preferred 1 for GPU 6")
    ]


def test_not_bound_is_a_warning_with_the_label(rendered, caplog):
    vm = machine("cloud-vm")
    with caplog.at_level(logging.INFO, logger="gpunuma"):
        bind_to_gpu(0, source=vm.source(rendered("cloud-vm")), binder=vm.kernel(), env={}, label="TP0")

    ((level, line),) = gpunuma_records(caplog)
    assert level == logging.WARNING and line.startswith("[TP0] not bound: ")


def test_a_refused_memory_policy_is_a_warning(rendered, caplog):
    dgx = machine("dgx-h100")
    with caplog.at_level(logging.INFO, logger="gpunuma"):
        report = bind_to_gpu(
            0, source=dgx.source(rendered("dgx-h100")), binder=dgx.kernel(fail="mempolicy_eperm"), env={}
        )

    assert report.bound and report.memory_policy is None
    assert [level for level, _ in gpunuma_records(caplog)] == [logging.WARNING]


# -- visible under Ray's default logging ---------------------------------------------------------------
def unconfigured_logging(monkeypatch: pytest.MonkeyPatch) -> logging.Logger:
    """A Ray worker's logging as Ray leaves it: no handler on the root logger or on ``gpunuma``.

    Called in the test body: pytest adds its capturing handlers to the root logger for the call phase.
    """
    log = logging.getLogger("gpunuma")
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(log, "handlers", [])
    monkeypatch.setattr(log, "level", logging.NOTSET)
    return log


def test_a_ray_worker_with_no_logging_gets_one_stderr_handler_at_info(monkeypatch, capfd):
    import sys

    from gpunuma.integrations.ray import show_logs_in_worker

    log = unconfigured_logging(monkeypatch)
    show_logs_in_worker()
    show_logs_in_worker()

    (handler,) = log.handlers
    assert isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr
    log.info("[TP1] bound to NUMA node 0")
    assert capfd.readouterr().err == "gpunuma: [TP1] bound to NUMA node 0\n", "Ray forwards stderr to the driver"


def test_a_worker_that_configured_logging_keeps_its_own(monkeypatch):
    from gpunuma.integrations.ray import show_logs_in_worker

    log = unconfigured_logging(monkeypatch)
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.NullHandler()])

    show_logs_in_worker()

    assert log.handlers == [] and log.level == logging.NOTSET
