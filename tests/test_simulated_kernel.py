"""SimulatedKernel refuses what Linux refuses, and keeps the binders' contract on simulated machines.

Its threads are this test process's real threads: the ``workers`` fixture starts two more, so every
test sees a process with several threads, as a Ray actor is.
"""

from __future__ import annotations

import _thread
import ast
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import MemoryPolicy
from gpunuma.core.ports import Binder
from gpunuma.errors import BindError
from gpunuma_fakes import machine, render_sysfs
from gpunuma_fakes.kernel import INHERITED, SimulatedKernel
from gpunuma_fakes.render import PID, TIDS


def plan(cpus: str, memory: MemoryPolicy, nodes: tuple[int, ...]) -> BindingPlan:
    return BindingPlan(gpus=(0,), nodes=nodes, cpus=CpuSet.parse_list(cpus), memory_policy=memory,
                       memory_nodes=nodes, reasons=("planned",))


def kernel(name: str, **options: object) -> SimulatedKernel:
    return SimulatedKernel.for_machine(machine(name), **options)


def real_tids() -> set[int]:
    return {int(tid) for tid in os.listdir("/proc/self/task")}


@pytest.fixture(autouse=True)
def workers() -> Iterator[list[int]]:
    """Two extra real threads, alive for the test; yields their TIDs."""
    stop = threading.Event()
    started = [threading.Thread(target=stop.wait, name=f"worker-{i}") for i in range(2)]
    for thread in started:
        thread.start()
    try:
        yield [thread.native_id for thread in started if thread.native_id is not None]
    finally:
        stop.set()
        for thread in started:
            thread.join()


def test_dgx_h100_node_1_binds_every_real_thread_and_reads_back_clean(workers: list[int]) -> None:
    sim = kernel("dgx-h100")
    wanted = plan("56-111,168-223", MemoryPolicy.PREFERRED, (1,))

    report = sim.apply(wanted)

    assert report.bound and report.method == "simulated" and report.mismatches == ()
    assert report.kernel.pid == os.getpid()
    assert {t.tid for t in report.kernel.threads} == real_tids() >= {os.getpid(), *workers}
    assert {t.cpus for t in report.kernel.threads} == {CpuSet.parse_list("56-111,168-223")}
    assert (report.kernel.mempolicy, report.kernel.mempolicy_nodes) == ("preferred", (1,))
    assert sim.applied == [wanted]


def test_memory_policy_is_the_calling_threads_only(workers: list[int]) -> None:
    sim = kernel("dgx-h100")
    sim.apply(plan("0-55", MemoryPolicy.BIND, (0,)))

    policies = {t.tid: (t.mempolicy, t.mempolicy_nodes) for t in sim.threads}
    assert policies[threading.get_native_id()] == ("bind", (0,))
    assert {policies[tid] for tid in workers} == {("default", ())}


NODE0, NODE1 = CpuSet.parse_list("0-55,112-167"), CpuSet.parse_list("56-111,168-223")


def held(sim: SimulatedKernel, tid: int | None) -> tuple[CpuSet, str, tuple[int, ...]]:
    """What thread ``tid`` of this process holds in ``sim``."""
    thread = next(t for t in sim.threads if t.tid == tid)
    return thread.cpus, thread.mempolicy, thread.mempolicy_nodes


def run_in_thread(work: Callable[[], object]) -> object:
    """``work()`` run in a new thread (started the ordinary way), its result returned."""
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(work()))
    thread.start()
    thread.join()
    return results[0]


def test_a_thread_started_after_binding_holds_its_creators_cpus_and_memory_policy() -> None:
    sim = kernel("dgx-h100")
    sim.apply(plan(NODE1.to_list(), MemoryPolicy.PREFERRED, (1,)))

    seen = run_in_thread(lambda: held(sim, threading.get_native_id()))

    assert seen == (NODE1, "preferred", (1,)), "Linux: clone() copies the creator's affinity and policy"


def test_a_thread_keeps_what_its_creator_held_when_it_was_started() -> None:
    # The main thread prefers node 0, starts a thread, then rebinds to node 1: CPUs move for every
    # thread (the binder sets each), the memory policy only for the caller.
    sim = kernel("dgx-h100")
    sim.apply(plan(NODE0.to_list(), MemoryPolicy.PREFERRED, (0,)))
    stop = threading.Event()
    early = threading.Thread(target=stop.wait)
    early.start()
    try:
        sim.apply(plan(NODE1.to_list(), MemoryPolicy.BIND, (1,)))
        assert held(sim, early.native_id) == (NODE1, "preferred", (0,))
        assert held(sim, threading.get_native_id()) == (NODE1, "bind", (1,))
    finally:
        stop.set()
        early.join()


def test_a_thread_started_by_an_unbound_thread_holds_the_default_policy(workers: list[int]) -> None:
    # The main thread binds: every thread gets node 1's CPUs, only the main thread the policy.
    sim = kernel("dgx-h100")
    sim.apply(plan(NODE1.to_list(), MemoryPolicy.BIND, (1,)))

    grandchild = run_in_thread(lambda: run_in_thread(lambda: held(sim, threading.get_native_id())))

    assert grandchild == (NODE1, "bind", (1,)), "the chain main -> thread -> thread carries the main's policy"
    assert held(sim, workers[0]) == (NODE1, "default", ())


def test_a_thread_started_outside_threading_counts_as_the_main_threads() -> None:
    # A worker thread binds (CPUs for all, policy for itself); a C extension's thread it starts is
    # taken to be the main thread's: bound CPUs, the main thread's default policy.
    sim = kernel("dgx-h100")
    run_in_thread(lambda: sim.apply(plan(NODE1.to_list(), MemoryPolicy.BIND, (1,))))
    stop, tids = threading.Event(), []
    native = threading.Event()

    def raw() -> None:
        tids.append(threading.get_native_id())
        native.set()
        stop.wait()

    _thread.start_new_thread(raw, ())
    native.wait()
    try:
        assert held(sim, tids[0]) == (NODE1, "default", ())
    finally:
        stop.set()


def _report_in_fork(sim: SimulatedKernel) -> list[tuple[int, str, str]]:
    """Fork; the child reports each of its threads (TID, CPUs, policy) through a pipe and exits."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one thread, the forking one's copy
        try:
            payload = repr([(t.tid, t.cpus.to_list(), t.mempolicy) for t in sim.threads])
            os.write(write, payload.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        seen = pipe.read()
    os.waitpid(pid, 0)
    return [(pid, *rest) for _, *rest in ast.literal_eval(seen)] if seen else []


def test_a_forked_child_holds_what_the_forking_thread_held() -> None:
    # A thread started before the bind forks too: it got the bound CPUs, never the main thread's policy.
    sim = kernel("dgx-h100")
    go, from_older = threading.Event(), []
    older = threading.Thread(target=lambda: (go.wait(), from_older.extend(_report_in_fork(sim))))
    older.start()
    sim.apply(plan(NODE1.to_list(), MemoryPolicy.PREFERRED, (1,)))

    from_main = _report_in_fork(sim)
    go.set()
    older.join()

    assert [(cpus, policy) for _, cpus, policy in from_main] == [(NODE1.to_list(), "preferred")]
    assert [(cpus, policy) for _, cpus, policy in from_older] == [(NODE1.to_list(), "default")]


CHILD = """
import json, os
from gpunuma_fakes import machine
from gpunuma_fakes.kernel import INHERITED, SimulatedKernel
sim = SimulatedKernel.for_machine(machine("dgx-h100"), machine="dgx-h100")
print(json.dumps(sorted({(t.cpus.to_list(), t.mempolicy, t.mempolicy_nodes) for t in sim.threads})))
"""


def test_an_execd_child_of_a_named_machines_kernel_holds_the_binding_it_was_handed() -> None:
    sim = kernel("dgx-h100", machine="dgx-h100")
    sim.apply(plan(NODE1.to_list(), MemoryPolicy.PREFERRED, (1,)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    child = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)

    assert json.loads(child.stdout) == [[NODE1.to_list(), "preferred", [1]]]


def test_what_a_process_handed_itself_down_is_not_inherited_by_its_own_kernel() -> None:
    kernel("dgx-h100", machine="dgx-h100").apply(plan(NODE1.to_list(), MemoryPolicy.PREFERRED, (1,)))

    fresh = kernel("dgx-h100", machine="dgx-h100")

    assert {t.cpus for t in fresh.threads} == {CpuSet.parse_list("0-223")}


@pytest.mark.parametrize(
    ("handed", "holds"),
    [
        ("0-55,112-167|bind|0", ("0-47,112-159", "bind", (0,))),  # cut to the container's cpuset 0-47,112-159
        ("56-111|bind|1", ("0-223", "default", ())),  # nothing of it inside: the cgroup's start instead
    ],
    ids=["partly-inside", "wholly-outside"],
)
def test_a_handed_down_binding_is_limited_by_the_cpuset(monkeypatch, handed: str, holds: tuple) -> None:
    monkeypatch.setenv(INHERITED, f"container-dgx-h100|1|{handed}")  # written by process 1, a parent
    sim = kernel("container-dgx-h100", machine="container-dgx-h100")

    cpus, policy, nodes = held(sim, threading.get_native_id())

    allowed = machine("container-dgx-h100").allowed()
    start = (allowed.affinity or allowed.cpus).to_list()
    assert (cpus.to_list(), policy, nodes) == (holds[0].replace("0-223", start), holds[1], holds[2])


def test_a_rendered_trees_proc_gives_that_trees_threads(tmp_path: Path) -> None:
    dgx = machine("dgx-h100")
    sim = SimulatedKernel.for_machine(dgx, proc_root=render_sysfs(dgx, tmp_path) / "proc")

    report = sim.apply(plan("0-55", MemoryPolicy.PREFERRED, (0,)))

    assert report.kernel.pid == PID
    assert [t.tid for t in report.kernel.threads] == list(TIDS)
    assert report.kernel.mempolicy == "preferred"


def _threads_in_child(sim: SimulatedKernel, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    report = sim.apply(plan("56-111", MemoryPolicy.NONE, (1,)))
    queue.put((os.getpid(), [t.tid for t in report.kernel.threads], [t.cpus for t in sim.threads]))


def test_pickled_into_another_process_it_simulates_that_process_threads() -> None:
    sim = kernel("dgx-h100")
    sim.apply(plan("0-55", MemoryPolicy.NONE, (0,)))
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_threads_in_child, args=(sim, queue))
    child.start()
    pid, tids, cpus = queue.get(timeout=60)
    child.join()

    assert pid != os.getpid() and pid in tids and not set(tids) & real_tids()
    assert set(cpus) == {CpuSet.parse_list("56-111")}
    assert {t.cpus for t in sim.threads} == {CpuSet.parse_list("0-55")}, "this process's state is its own"


def test_a_cpu_that_does_not_exist_is_einval_and_nothing_changes() -> None:
    sim = kernel("dgx-h100")
    before = sim.threads

    with pytest.raises(BindError, match=r"EINVAL.*CPU 999 does not exist"):
        sim.apply(plan("999", MemoryPolicy.BIND, (0,)))

    assert sim.threads == before and sim.applied == []
    assert len(sim.rejected) == 1


def test_container_cpuset_intersects_and_the_read_back_shows_the_difference() -> None:
    # The container allows 0-47,112-159: asking for all of node 0 (0-55,112-167) gets the intersection.
    sim = kernel("container-dgx-h100")

    report = sim.apply(plan("0-55,112-167", MemoryPolicy.BIND, (0,)))

    assert report.cpus == CpuSet.parse_list("0-47,112-159")
    assert {t.cpus for t in report.kernel.threads} == {CpuSet.parse_list("0-47,112-159")}
    assert len(report.mismatches) == len(report.kernel.threads), "every thread differs from the plan"


def test_cpus_wholly_outside_the_cpuset_are_einval() -> None:
    with pytest.raises(BindError, match="outside the cpuset 0-47,112-159"):
        kernel("container-dgx-h100").apply(plan("56-111", MemoryPolicy.BIND, (1,)))


@pytest.mark.parametrize(
    ("name", "cpus", "node", "why"),
    [
        ("gh200", "0-71", 2, "GH200 node 2 is a 0 MB MIG placeholder"),
        ("container-dgx-h100", "0-47", 1, "the container's cpuset.mems is 0"),
    ],
)
def test_memory_the_kernel_refuses_keeps_cpus_bound(name: str, cpus: str, node: int, why: str) -> None:
    report = kernel(name).apply(plan(cpus, MemoryPolicy.BIND, (node,)))

    assert report.bound and report.cpus == CpuSet.parse_list(cpus), why
    assert report.memory_policy is None
    assert "memory policy refused by the kernel (EINVAL): bound CPUs only" in report.reasons
    assert report.kernel.mempolicy == "default"


@pytest.mark.parametrize("nodes", [(5,), (0, 5)], ids=["only-missing", "one-of-two-missing"])
def test_a_memory_node_the_machine_lacks_raises_and_leaves_every_thread_as_it_was(nodes: tuple[int, ...]) -> None:
    sim = kernel("dgx-h100")
    before = sim.threads

    with pytest.raises(BindError, match=r"memory node 5 does not exist.*restored"):
        sim.apply(plan("0-55", MemoryPolicy.BIND, nodes))

    assert sim.threads == before and sim.applied == []
    assert len(sim.rejected) == 1 and "memory node 5" in sim.rejected[0][1]


def test_gh200_may_prefer_the_cpu_less_hbm_node() -> None:
    # Node 1 has no CPUs but 97280 MB of GPU memory: a memory policy on it is valid.
    report = kernel("gh200").apply(plan("0-71", MemoryPolicy.PREFERRED, (1,)))

    assert report.memory_policy == "preferred" and report.memory_nodes == (1,)


def test_several_preferred_nodes_become_preferred_many() -> None:
    report = kernel("dgx-h100").apply(plan("0-223", MemoryPolicy.PREFERRED, (0, 1)))

    assert report.memory_policy == "preferred_many" and report.mismatches == ()


def test_injected_cpu_failure_restores_the_threads_already_changed_and_raises() -> None:
    sim = kernel("dgx-h100", fail="cpu")
    before = sim.threads
    last = before[-1].tid

    with pytest.raises(BindError, match=rf"thread {last}: .*EINVAL.*restored"):
        sim.apply(plan("0-55", MemoryPolicy.BIND, (0,)))

    assert sim.threads == before and sim.applied == []


def test_injected_eperm_binds_cpus_only() -> None:
    report = kernel("dgx-h100", fail="mempolicy_eperm").apply(plan("0-55", MemoryPolicy.BIND, (0,)))

    assert report.bound and report.cpus == CpuSet.parse_list("0-55")
    assert "memory policy refused by the kernel (EPERM): bound CPUs only" in report.reasons
    assert report.mismatches == ()


def test_unknown_failure_name_is_refused() -> None:
    with pytest.raises(ValueError, match="cpu, mempolicy_eperm"):
        kernel("dgx-h100", fail="disk")


def test_plan_that_does_not_bind_changes_nothing() -> None:
    sim = kernel("cloud-vm")
    before = sim.threads
    empty = BindingPlan(gpus=(0,), nodes=(), cpus=CpuSet(), memory_policy=MemoryPolicy.BIND, memory_nodes=(),
                        reasons=("GPU 0 reports no locality",))

    report = sim.apply(empty)

    assert not report.bound and report.reasons == ("GPU 0 reports no locality",)
    assert sim.threads == before and sim.applied == []


def test_is_a_picklable_binder_that_keeps_its_state() -> None:
    sim = kernel("dgx-h100")
    sim.apply(plan("0-55,112-167", MemoryPolicy.PREFERRED, (0,)))

    copy = pickle.loads(pickle.dumps(sim))

    assert isinstance(copy, Binder)
    assert copy.threads == sim.threads and copy.applied == sim.applied
