"""LibnumaBinder binds a real process on this CI machine: every thread, read back, undone on failure.

Every binding runs in a spawned child so the test runner itself is never changed.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import pickle
import queue
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gpunuma.adapters.libnuma import LibnumaBinder
from gpunuma.adapters.mempolicy import MempolicySyscalls
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.kernel_policy import Mempolicy, Mode
from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import MemoryPolicy
from gpunuma.errors import BindError, LibraryNotFoundError

ALLOWED = frozenset(os.sched_getaffinity(0))
FIRST_CPU = min(ALLOWED)

needs_two_cpus = pytest.mark.skipif(len(ALLOWED) < 2, reason="binding to one CPU proves a change only with 2+ CPUs")


def plan(cpus: set[int], memory: MemoryPolicy = MemoryPolicy.BIND, nodes: tuple[int, ...] = (0,)) -> BindingPlan:
    return BindingPlan(
        gpus=(0,), nodes=nodes, cpus=CpuSet.of(cpus), memory_policy=memory, memory_nodes=nodes,
        reasons=("GPU 0 is local to node 0",),
    )


def in_child(function: Any, *args: Any) -> Any:
    """Run ``function(*args)`` in a fresh spawned process and return its result."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result(timeout=120)


class Probe(threading.Thread):
    """A thread that reports its own affinity and memory policy on request (both are per thread)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.requests: queue.Queue[bool] = queue.Queue()
        self.replies: queue.Queue[tuple[frozenset[int], Mempolicy]] = queue.Queue()
        self.ready = threading.Event()

    def run(self) -> None:
        syscalls = MempolicySyscalls()
        self.ready.set()
        while self.requests.get():
            self.replies.put((frozenset(os.sched_getaffinity(0)), syscalls.get()))

    def probe(self) -> tuple[frozenset[int], Mempolicy]:
        self.requests.put(True)
        return self.replies.get(timeout=30)

    def stop(self) -> None:
        self.requests.put(False)
        self.join()


def _bind_with_threads(the_plan: BindingPlan) -> dict[str, Any]:
    probes = [Probe() for _ in range(3)]
    for probe in probes:
        probe.start()
        probe.ready.wait()
    report = LibnumaBinder().apply(the_plan)
    existing = {probe.native_id: probe.probe() for probe in probes}
    born_after = Probe()
    born_after.start()
    born_after.ready.wait()
    inherited = born_after.probe()
    for probe in [*probes, born_after]:
        probe.stop()
    return {
        "report": report,
        "existing": existing,
        "inherited": inherited,
        "caller": MempolicySyscalls().get(),
        "pid": os.getpid(),
    }


@needs_two_cpus
def test_binds_every_thread_started_before_binding_and_reads_back_the_plan() -> None:
    result = in_child(_bind_with_threads, plan({FIRST_CPU}))
    report = result["report"]

    assert report.bound and report.method == "libnuma"
    assert report.mismatches == ()
    assert report.cpus == CpuSet.of({FIRST_CPU})
    # 3 probe threads + the main thread, all read back from /proc/<pid>/task on CPU FIRST_CPU only.
    assert report.kernel.pid == result["pid"]
    assert len(report.kernel.threads) >= 4
    assert {t.cpus for t in report.kernel.threads} == {CpuSet.of({FIRST_CPU})}
    assert all(cpus == {FIRST_CPU} for cpus, _ in result["existing"].values())


@needs_two_cpus
def test_memory_policy_is_the_calling_threads_and_new_threads_inherit_it() -> None:
    result = in_child(_bind_with_threads, plan({FIRST_CPU}))

    assert result["report"].memory_policy == "bind" and result["report"].memory_nodes == (0,)
    assert result["caller"] == Mempolicy(Mode.BIND, (0,))
    # Threads that already existed keep their policy; a thread born afterwards inherits BIND.
    assert {policy.mode for _, policy in result["existing"].values()} == {Mode.DEFAULT}
    assert result["inherited"] == (frozenset({FIRST_CPU}), Mempolicy(Mode.BIND, (0,)))


def _bind(the_plan: BindingPlan) -> Any:
    report = LibnumaBinder().apply(the_plan)
    return report, MempolicySyscalls().get()


def test_preferred_single_node_sets_mpol_preferred() -> None:
    report, held = in_child(_bind, plan(set(ALLOWED), MemoryPolicy.PREFERRED))

    assert held == Mempolicy(Mode.PREFERRED, (0,))
    assert report.memory_policy == "preferred" and report.mismatches == ()


def test_policy_none_binds_cpus_and_leaves_memory_alone() -> None:
    report, held = in_child(_bind, plan(set(ALLOWED), MemoryPolicy.NONE))

    assert report.bound and report.memory_policy is None
    assert held == Mempolicy(Mode.DEFAULT)


def test_a_plan_that_does_not_bind_changes_nothing() -> None:
    empty = BindingPlan(
        gpus=(0,), nodes=(), cpus=CpuSet(), memory_policy=MemoryPolicy.BIND, memory_nodes=(),
        reasons=("GPU 0 reports no NUMA locality",),
    )
    report, held = in_child(_bind, empty)

    assert not report.bound and report.kernel is None
    assert report.reasons == ("GPU 0 reports no NUMA locality",)
    assert held == Mempolicy(Mode.DEFAULT)


def _bind_claiming_nodes(the_plan: BindingPlan, sys_root: str) -> Any:
    report = LibnumaBinder(sys_root=sys_root).apply(the_plan)
    return report, MempolicySyscalls().get()


@needs_two_cpus
def test_memory_node_that_exists_but_is_refused_keeps_cpus_bound_and_says_so(tmp_path: Path) -> None:
    # The sys tree says nodes 0-7 are online, as on a host whose container's cpuset.mems excludes node 5:
    # set_mempolicy answers EINVAL and the node exists, so the CPUs stay bound.
    sys_root = online_nodes(tmp_path, "0-7")

    report, held = in_child(_bind_claiming_nodes, plan({FIRST_CPU}, MemoryPolicy.BIND, nodes=(5,)), str(sys_root))

    assert report.bound and report.cpus == CpuSet.of({FIRST_CPU})
    assert report.memory_policy is None
    assert "memory policy refused by the kernel (EINVAL): bound CPUs only" in report.reasons
    assert held == Mempolicy(Mode.DEFAULT)


@needs_two_cpus
def test_memory_node_that_does_not_exist_raises_and_leaves_every_thread_as_it_was() -> None:
    # Node 5 is not in /sys/devices/system/node/online: the plan is wrong, nothing may stay changed.
    result = in_child(_fail_and_compare, plan({FIRST_CPU}, MemoryPolicy.BIND, nodes=(5,)))

    assert result["error"] is not None and "memory node 5 does not exist" in result["error"]
    assert "restored" in result["error"]
    assert result["after"] == result["before"]
    assert result["before"]["main"][1] == Mempolicy(Mode.PREFERRED, (0,))


def online_nodes(tmp_path: Path, nodes: str) -> Path:
    """A sys root whose ``devices/system/node/online`` lists ``nodes``."""
    folder = tmp_path / "sys" / "devices" / "system" / "node"
    folder.mkdir(parents=True)
    (folder / "online").write_text(nodes + "\n")
    return tmp_path / "sys"


def _fail_and_compare(the_plan: BindingPlan) -> dict[str, Any]:
    syscalls = MempolicySyscalls()
    # A non-default starting state, so "restored" cannot mean "reset to defaults".
    syscalls.set(Mempolicy(Mode.PREFERRED, (0,)))
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})  # the plan binds min(): a real change
    probes = [Probe() for _ in range(3)]
    for probe in probes:
        probe.start()
        probe.ready.wait()
    before = {"main": (frozenset(os.sched_getaffinity(0)), syscalls.get())}
    before.update({probe.native_id: probe.probe() for probe in probes})
    try:
        LibnumaBinder().apply(the_plan)
        error = None
    except BindError as err:
        error = str(err)
    after = {"main": (frozenset(os.sched_getaffinity(0)), syscalls.get())}
    after.update({probe.native_id: probe.probe() for probe in probes})
    for probe in probes:
        probe.stop()
    return {"before": before, "after": after, "error": error}


def test_failed_cpu_binding_leaves_every_thread_exactly_as_it_was() -> None:
    result = in_child(_fail_and_compare, plan({999}, MemoryPolicy.BIND, nodes=(5,)))

    # CPU 999 is not online: refused before any thread or the memory policy changed.
    assert result["error"] is not None and result["error"].startswith("CPUs 999 are not online")
    assert result["after"] == result["before"]
    assert result["before"]["main"][1] == Mempolicy(Mode.PREFERRED, (0,))


def test_missing_library_is_a_typed_error_with_the_install_hint() -> None:
    with pytest.raises(LibraryNotFoundError) as caught:
        LibnumaBinder(library="libnope.so")

    assert "libnope.so" in str(caught.value)
    assert "apt-get install libnuma1" in str(caught.value)


def test_pickles_by_reloading_the_library() -> None:
    binder = LibnumaBinder(sys_root="/host/sys")

    copy = pickle.loads(pickle.dumps(binder))

    assert isinstance(copy, LibnumaBinder)
    assert (copy.library, copy.proc_root, copy.sys_root) == ("libnuma.so.1", "/proc", "/host/sys")


# -- libnuma says nothing on stderr ---------------------------------------------------------------------
@pytest.mark.parametrize("mode", [Mode.BIND, Mode.PREFERRED])
def test_libnuma_refusing_a_node_prints_nothing_and_its_words_become_the_error(capfd, mode) -> None:
    from gpunuma.adapters.libnuma import LibnumaMemory

    memory = LibnumaMemory()
    before = memory.syscalls.get()
    with pytest.raises(OSError) as caught:
        memory.set(mode, (max(64, os.cpu_count() or 1),))  # a node no kernel of this machine has

    assert caught.value.errno == errno.EINVAL and "set_mempolicy" in str(caught.value)
    assert capfd.readouterr().err == ""
    assert memory.syscalls.get() == before


def test_what_another_thread_writes_while_libnuma_runs_still_reaches_stderr(capfd) -> None:
    from gpunuma.adapters.libnuma import quietly

    result, printed = quietly(lambda: os.write(2, b"another thread's line\n"))

    assert (result, printed) == (len(b"another thread's line\n"), "")
    assert capfd.readouterr().err == "another thread's line\n"


def _stderr() -> str:
    return os.readlink("/proc/self/fd/2")


def _two_threads_quiet_at_once() -> dict[str, Any]:
    from gpunuma.adapters import guard
    from gpunuma.adapters.libnuma import quietly

    before = _stderr()
    first_inside, first_go, second_go, second_looked = (threading.Event() for _ in range(4))
    lock_free: list[bool] = []

    def second_caller() -> None:
        lock = guard.lock()
        lock_free.append(lock.acquire(blocking=False))
        if lock_free[-1]:
            lock.release()
        second_looked.set()
        quietly(second_go.wait)  # it redirects stderr only once the first has put it back

    first = threading.Thread(target=quietly, args=(lambda: (first_inside.set(), first_go.wait()),))
    second = threading.Thread(target=second_caller)
    first.start()
    first_inside.wait()
    second.start()
    second_looked.wait()
    first_go.set()
    first.join()  # the first ends first...
    second_go.set()
    second.join()  # ...and the second must not have saved the first's buffer as "stderr"
    return {"before": before, "after": _stderr(), "lock_free": lock_free}


def test_two_threads_hushing_libnuma_at_once_take_turns_and_leave_stderr_as_it_was() -> None:
    result = in_child(_two_threads_quiet_at_once)

    assert result["lock_free"] == [False]  # the first holds the bind lock while stderr is redirected
    assert result["after"] == result["before"]


def _forked_while_libnuma_runs() -> dict[str, str]:
    from gpunuma.adapters.libnuma import quietly

    inside, go = threading.Event(), threading.Event()
    caller = threading.Thread(target=quietly, args=(lambda: (inside.set(), go.wait()),))
    caller.start()
    inside.wait()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child has the forking thread alone: nobody there will put stderr back
        try:
            os.write(write_end, _stderr().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read().decode()
    os.waitpid(pid, 0)
    go.set()
    caller.join()
    return {"parent": _stderr(), "child": child}


def test_a_child_forked_while_another_thread_hushes_libnuma_has_its_stderr() -> None:
    result = in_child(_forked_while_libnuma_runs)

    assert result["child"] == result["parent"]
    assert "memfd" not in result["child"]
