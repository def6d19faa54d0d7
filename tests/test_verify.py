"""``gpunuma.verify()`` on a simulated DGX H100: drift after the bind seen thread by thread, put back through the
binder that bound, and where the memory is; ``gpunuma check --pid`` shows a drifted worker the same way.

The simulated kernel's threads are this test process's real threads: a library "pinning" one of them is the
kernel's :meth:`~gpunuma_fakes.kernel.SimulatedKernel.sched_setaffinity` on a real thread id.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

import gpunuma
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.kernel_policy import Mempolicy, Mode
from gpunuma.core.readback import Drift
from gpunuma.tools.check import Verdict
from gpunuma.tools.cli import ExitCode, main
from gpunuma_fakes import machine
from gpunuma_fakes.kernel import SimulatedKernel

#: GPU 5 of a DGX H100 is on node 1.
NODE0 = CpuSet.parse_list("0-55,112-167")
NODE1 = CpuSet.parse_list("56-111,168-223")


@pytest.fixture
def dgx() -> tuple[object, SimulatedKernel]:
    simulated = machine("dgx-h100")
    return simulated.source(), simulated.kernel()


@pytest.fixture
def worker() -> Iterator[int]:
    """A real thread of this process (a communicator's progress thread), alive for the test: its TID."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="progress")
    thread.start()
    try:
        assert thread.native_id is not None
        yield thread.native_id
    finally:
        stop.set()
        thread.join()


def bound(dgx: tuple[object, SimulatedKernel]) -> SimulatedKernel:
    source, kernel = dgx
    report = gpunuma.bind_to_gpu(5, source=source, binder=kernel, env={})  # type: ignore[arg-type]
    assert report.ok and report.plan.nodes == (1,)
    return kernel


def test_a_worker_that_holds_its_binding_verifies_clean_with_its_memory_on_its_node(dgx, worker) -> None:
    kernel = bound(dgx)
    kernel.touch(12_345)  # weights loaded after the bind: first touch on the preferred node

    result = gpunuma.verify()

    assert result.verdict is Verdict.AS_EXPECTED and result.repaired == ()
    assert set(result.drift) == {None} and worker in {t.tid for t in result.view.threads}
    assert result.plan is not None and result.plan.cpus == NODE1 and result.gpus == (5,)
    assert (result.pages_by_node, result.local_fraction) == ({1: 12_345}, 1.0)
    assert "memory: 100% on node 1 (12,345 pages)" in result.render()


@pytest.mark.parametrize(("pinned", "drift"), [(NODE0, Drift.MOVED), (NODE0 | NODE1, Drift.WIDENED)])
def test_a_thread_a_library_pinned_off_the_binding_is_found_and_put_back(dgx, worker, pinned, drift) -> None:
    kernel = bound(dgx)
    kernel.sched_setaffinity(worker, pinned)

    found = gpunuma.verify()
    repaired = gpunuma.verify(repair=True)

    assert found.verdict is Verdict.NOT_AS_EXPECTED and found.drift_of(worker) is drift
    assert [d for d in found.drift if d is not None] == [drift]
    assert f"({drift.value}): {worker} (" in found.render()
    assert [(r.tid, r.drift, r.what) for r in repaired.repaired] == [(worker, drift, ("cpus",))]
    assert repaired.verdict is Verdict.AS_EXPECTED and repaired.drift_of(worker) is None
    assert {t.tid: t.cpus for t in kernel.threads}[worker] == NODE1, "put back through the kernel that bound"


def test_a_thread_an_openmp_runtime_placed_within_the_binding_is_left_alone_unless_asked(dgx, worker) -> None:
    kernel = bound(dgx)
    place = CpuSet.parse_list("70-83,182-195")
    kernel.sched_setaffinity(worker, place)

    left = gpunuma.verify(repair=True)
    widened = gpunuma.verify(repair=True, include_narrowed=True)

    assert left.verdict is Verdict.AS_EXPECTED and left.drift_of(worker) is Drift.NARROWED and left.repaired == ()
    assert "check_threads_within_plan" in left.note_codes
    assert [(r.tid, r.drift) for r in widened.repaired] == [(worker, Drift.NARROWED)]
    assert {t.tid: t.cpus for t in kernel.threads}[worker] == NODE1


def test_a_memory_policy_a_library_changed_on_the_calling_thread_is_put_back(dgx) -> None:
    kernel = bound(dgx)
    kernel.set_mempolicy(Mempolicy(Mode.LOCAL))  # numa_set_localalloc() in a library's init
    caller = threading.get_native_id()

    found = gpunuma.verify()
    repaired = gpunuma.verify(repair=True)

    assert found.drift_of(caller) is Drift.POLICY and found.verdict is Verdict.NOT_AS_EXPECTED
    assert [(r.tid, r.drift, r.what) for r in repaired.repaired] == [(caller, Drift.POLICY, ("mempolicy",))]
    assert (repaired.view.mempolicy, repaired.view.mempolicy_nodes) == ("preferred", (1,))
    assert repaired.verdict is Verdict.AS_EXPECTED


def test_a_stricter_policy_on_the_bound_node_is_narrowed_and_put_back_only_when_asked(dgx) -> None:
    kernel = bound(dgx)
    kernel.set_mempolicy(Mempolicy(Mode.BIND, (1,)))
    caller = threading.get_native_id()

    left = gpunuma.verify(repair=True)
    put_back = gpunuma.verify(repair=True, include_narrowed=True)

    assert left.drift_of(caller) is Drift.NARROWED and left.repaired == () and left.ok
    assert [(r.tid, r.what) for r in put_back.repaired] == [(caller, ("mempolicy",))]
    assert put_back.view.mempolicy == "preferred"


def test_a_policy_the_kernel_refuses_to_put_back_is_said_and_the_cpus_still_are(worker) -> None:
    simulated = machine("dgx-h100")
    kernel = simulated.kernel()
    gpunuma.bind_to_gpu(5, source=simulated.source(), binder=kernel, env={})
    kernel.sched_setaffinity(worker, NODE0)
    kernel.set_mempolicy(Mempolicy(Mode.LOCAL))
    kernel.fail = "mempolicy_eperm"  # a seccomp profile installed after the bind

    result = gpunuma.verify(repair=True)

    assert [(r.tid, r.what) for r in result.repaired] == [(worker, ("cpus",))]
    assert "verify_policy_not_repaired" in result.note_codes
    assert result.drift_of(threading.get_native_id()) is Drift.POLICY and not result.ok


def test_nothing_bound_cannot_be_verified_and_says_why() -> None:
    result = gpunuma.verify(repair=True)

    assert result.verdict is Verdict.CANNOT_TELL and result.plan is None and result.repaired == ()
    assert result.note_codes == ("verify_nothing_in_force",)


def test_a_failed_bind_after_one_that_held_verifies_the_one_that_holds(dgx, worker) -> None:
    source, kernel = dgx
    bound(dgx)
    gpunuma.bind_to_gpu(source=source, binder=kernel, env={"CUDA_VISIBLE_DEVICES": ""})  # binds nothing

    result = gpunuma.verify()

    assert result.plan is not None and result.plan.cpus == NODE1 and result.ok


def test_pages_touched_before_a_late_bind_stay_on_the_far_node(dgx) -> None:
    source, kernel = dgx
    kernel.touch(3_000)  # imports and weights before the bind: first touch on node 0, where the process ran
    gpunuma.bind_to_gpu(5, source=source, binder=kernel, env={})
    kernel.touch(1_000)

    result = gpunuma.verify()

    assert result.pages_by_node == {0: 3_000, 1: 1_000} and result.local_fraction == 0.25
    assert "memory: 25% on node 1 (4,000 pages; node 0: 3,000, node 1: 1,000)" in result.render()
    assert result.to_dict()["local_fraction"] == 0.25 and result.to_dict()["pages_by_node"] == {"0": 3000, "1": 1000}


@pytest.mark.simulated_machine("dgx-h100")
def test_an_unmodified_worker_under_gpunuma_simulate_verifies_with_the_argument_free_call(gpunuma_simulate, worker,
                                                                                         monkeypatch) -> None:
    from gpunuma_fakes.source import SimulatedTopology

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    assert gpunuma.bind_to_gpu().ok
    SimulatedTopology(gpunuma_simulate).kernel().sched_setaffinity(worker, NODE0)

    result = gpunuma.verify(repair=True)

    assert [(r.tid, r.drift) for r in result.repaired] == [(worker, Drift.MOVED)] and result.ok
    assert gpunuma.check_process().drift_of(worker) is None


# -- gpunuma check --pid: a drifted worker, read from outside -------------------------------------------------
#: A serving worker under GPUNUMA_SIMULATE: binds, loads 2,000 pages, starts its progress thread, which a
#: library then pins to node 0; waits for the operator (one line on stdin ends it).
DRIFTING = """
import json, sys, threading
import gpunuma
from gpunuma.core.cpuset import CpuSet
from gpunuma_fakes.source import SimulatedTopology
kernel = SimulatedTopology("dgx-h100").kernel()
kernel.touch(500)
gpunuma.bind_to_gpu()
kernel.touch(1500)
stop = threading.Event()
progress = threading.Thread(target=stop.wait, name="progress")
progress.start()
kernel.sched_setaffinity(progress.native_id, CpuSet.parse_list("0-3"))
print(json.dumps({"progress": progress.native_id}), flush=True)
sys.stdin.readline()
stop.set()
"""


@pytest.mark.parametrize("as_json", [True, False])
def test_gpunuma_check_pid_shows_a_simulated_workers_drift_and_memory(capsys, as_json) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "GPUNUMA_SIMULATE": "dgx-h100",
           "CUDA_VISIBLE_DEVICES": "5"}
    env.pop("GPUNUMA_SIMULATED_KERNEL", None)
    process = subprocess.Popen([sys.executable, "-c", DRIFTING], env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        progress = json.loads(process.stdout.readline())["progress"]  # type: ignore[union-attr]
        status = main(["check", "--pid", str(process.pid), "--simulate", "dgx-h100", *(["--json"] if as_json else [])])
    finally:
        process.communicate("done\n", timeout=120)

    out = capsys.readouterr().out
    assert status == ExitCode.NOT_AS_EXPECTED
    if as_json:
        checked = json.loads(out)
        assert {t["tid"]: t["drift"] for t in checked["threads"]} == {process.pid: None, progress: "moved"}
        assert checked["pages_by_node"] == {"0": 500, "1": 1500} and checked["local_fraction"] == 0.75
    else:
        assert f"1 thread(s) on CPUs 0-3 (moved): {progress} (" in out
        assert "memory: 75% on node 1 (2,000 pages; node 0: 500, node 1: 1,500)" in out
