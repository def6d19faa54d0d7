"""Never half bound: a bind interrupted by a signal, by an error, raced by another bind or by threads
born during it leaves every thread on one side, the old CPUs or the new.

Every case runs on the real kernel in a spawned child (the test runner's own threads are never
changed): the child starts threads on one CPU and binds the whole process to another, with a
per-thread setter that interrupts the bind part-way, as a signal or a racing thread would.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from gpunuma.adapters.process import ProcessBinder
from gpunuma.adapters.syscall import SyscallMemory
from gpunuma.adapters.threads import bind_threads
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import MemoryPolicy
from gpunuma.errors import BindError

ALLOWED = frozenset(os.sched_getaffinity(0))
OLD, NEW = max(ALLOWED), min(ALLOWED)
pytestmark = pytest.mark.skipif(len(ALLOWED) < 2, reason="a change of affinity shows only with 2+ CPUs")


def in_child(function: Callable[..., Any], *args: Any) -> Any:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result(timeout=120)


def plan(cpu: int) -> BindingPlan:
    return BindingPlan(
        gpus=(0,), nodes=(0,), cpus=CpuSet.of([cpu]), memory_policy=MemoryPolicy.NONE, memory_nodes=(), reasons=(),
    )


def affinities() -> set[frozenset[int]]:
    """The distinct affinities of this process's threads, read from the kernel."""
    return set(by_thread().values())


def by_thread() -> dict[int, frozenset[int]]:
    """Every thread of this process -> its affinity, read from the kernel."""
    return {int(tid): frozenset(os.sched_getaffinity(int(tid))) for tid in os.listdir("/proc/self/task")}


class Workers:
    """``count`` idle threads started on the old CPU (they inherit it), stopped on exit."""

    def __init__(self, count: int) -> None:
        os.sched_setaffinity(0, {OLD})
        self.release = threading.Event()
        self.threads = [threading.Thread(target=self.release.wait) for _ in range(count)]

    def __enter__(self) -> Workers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        for thread in self.threads:
            thread.join()


class InterruptAt:
    """A per-thread setter that sets affinity for real and, after its ``at``-th call, does ``interrupt()``."""

    def __init__(self, at: int, interrupt: Callable[[], None]) -> None:
        self.at = at
        self.interrupt = interrupt
        self.calls = 0

    def __call__(self, tid: int, cpus: Iterable[int]) -> None:
        os.sched_setaffinity(tid, cpus)
        self.calls += 1
        if self.calls == self.at:
            self.interrupt()


# -- signals -------------------------------------------------------------------------------------
def _interrupted_by(signum: int) -> dict[str, Any]:
    if signum == signal.SIGTERM:
        # What servers do: turn SIGTERM into SystemExit, raised in the main thread mid-bind.
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(143)))
    setter = InterruptAt(2, lambda: signal.raise_signal(signum))
    with Workers(4):
        raised = None
        try:
            ProcessBinder(SyscallMemory(), setaffinity=setter).apply(plan(NEW))
        except BaseException as err:  # noqa: BLE001 - the point is which one, and when
            raised = type(err).__name__
        return {"raised": raised, "affinities": affinities(), "calls": setter.calls}


@pytest.mark.parametrize(("signum", "expected"), [(signal.SIGINT, "KeyboardInterrupt"), (signal.SIGTERM, "SystemExit")])
def test_a_signal_mid_bind_is_handled_after_it_and_no_thread_is_left_behind(signum, expected):
    result = in_child(_interrupted_by, signum)

    assert result["raised"] == expected  # the handler still ran, with its exception...
    assert result["affinities"] == {frozenset({NEW})}  # ...once every thread was on the new CPU
    assert result["calls"] >= 5  # the main thread and the 4 workers


def _failing_mid_bind() -> dict[str, Any]:
    def boom() -> None:
        raise RuntimeError("a bug in the middle of a bind")

    with Workers(4):
        before = by_thread()
        try:
            ProcessBinder(SyscallMemory(), setaffinity=InterruptAt(3, boom)).apply(plan(NEW))
            raised = None
        except RuntimeError as err:
            raised = str(err)
        return {"raised": raised, "before": before, "after": by_thread()}


def test_any_exception_mid_bind_puts_every_thread_back():
    result = in_child(_failing_mid_bind)

    assert result["raised"] == "a bug in the middle of a bind"
    assert result["after"] == result["before"]


def _interrupted_off_the_main_thread() -> dict[str, Any]:
    # Off the main thread no handler can be deferred (and none runs there): an exception from the
    # setter still restores every thread.
    outcome: dict[str, Any] = {}

    def bind() -> None:
        def interrupt() -> None:
            raise KeyboardInterrupt

        try:
            ProcessBinder(SyscallMemory(), setaffinity=InterruptAt(2, interrupt)).apply(plan(NEW))
        except KeyboardInterrupt:
            outcome["raised"] = "KeyboardInterrupt"

    with Workers(3):
        before = by_thread()
        binder = threading.Thread(target=bind)
        binder.start()
        binder.join()
        outcome["before"] = before
        outcome["after"] = by_thread()
    return outcome


def test_an_interrupt_in_a_binding_thread_that_is_not_the_main_one_restores_every_thread():
    result = in_child(_interrupted_off_the_main_thread)

    assert result["raised"] == "KeyboardInterrupt"
    # The binding thread itself may still be listed for a moment after join(): compare the others.
    assert {tid: cpus for tid, cpus in result["after"].items() if tid in result["before"]} == result["before"]


# -- threads born during a bind ---------------------------------------------------------------
class Spawner:
    """A thread that, asked to, starts a child Spawner (which inherits its affinity at that moment)."""

    def __init__(self, everyone: list[Spawner]) -> None:
        self.everyone = everyone
        self.asked = threading.Event()
        self.done = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.tid: int | None = None
        self.started = threading.Event()
        everyone.append(self)

    def start(self) -> Spawner:
        self.thread.start()
        self.started.wait()
        return self

    def _run(self) -> None:
        self.tid = threading.get_native_id()
        self.started.set()
        while not self.stop.is_set():
            if self.asked.wait(0.01):
                self.asked.clear()
                Spawner(self.everyone).start()
                self.done.set()


class SpawnBeforeBinding:
    """A setter that, before binding a Spawner still on the old CPU, has it start a child: a thread
    born during the bind from a thread not yet bound, which inherits the old CPU."""

    def __init__(self, everyone: list[Spawner], generations: int) -> None:
        self.everyone = everyone
        self.left = generations

    def __call__(self, tid: int, cpus: Iterable[int]) -> None:
        spawner = next((s for s in self.everyone if s.tid == tid), None)
        if spawner is not None and self.left > 0:
            self.left -= 1
            spawner.asked.set()
            spawner.done.wait(10)
        os.sched_setaffinity(tid, cpus)


def _threads_born_mid_bind(generations: int, max_passes: int) -> dict[str, Any]:
    os.sched_setaffinity(0, {OLD})
    everyone: list[Spawner] = []
    Spawner(everyone).start()
    outcome: dict[str, Any] = {}
    try:
        bind_threads(CpuSet.of([NEW]), setaffinity=SpawnBeforeBinding(everyone, generations), max_passes=max_passes)
        outcome["raised"] = None
    except BindError as err:
        outcome["raised"] = str(err)
    outcome["affinities"] = affinities()
    outcome["spawned"] = len(everyone)
    for spawner in everyone:
        spawner.stop.set()
    return outcome


def test_threads_born_mid_bind_are_bound_too_whatever_generation():
    # Each generation appears only after its parent was listed: five need six passes over the task list.
    result = in_child(_threads_born_mid_bind, 5, 64)

    assert result["raised"] is None
    assert result["spawned"] == 6
    assert result["affinities"] == {frozenset({NEW})}


def test_threads_that_never_stop_appearing_fail_the_bind_and_restore_every_thread():
    result = in_child(_threads_born_mid_bind, 50, 4)

    assert result["raised"].startswith("threads kept appearing through 4 passes")
    assert result["affinities"] == {frozenset({OLD})}


# -- two binds at once -----------------------------------------------------------------------------
def _two_binds_at_once() -> dict[str, Any]:
    second_inside = threading.Event()
    overlapped: list[bool] = []
    second: list[threading.Thread] = []

    def second_setter(tid: int, cpus: Iterable[int]) -> None:
        second_inside.set()
        os.sched_setaffinity(tid, cpus)

    def start_second() -> None:
        # The first bind, part-way, starts a second one from another thread and gives it time to
        # enter: it must not, until the first is over.
        thread = threading.Thread(
            target=lambda: ProcessBinder(SyscallMemory(), setaffinity=second_setter).apply(plan(OLD))
        )
        second.append(thread)
        thread.start()
        overlapped.append(second_inside.wait(0.5))

    with Workers(3):
        ProcessBinder(SyscallMemory(), setaffinity=InterruptAt(2, start_second)).apply(plan(NEW))
        second[0].join()
        return {"overlapped": overlapped, "affinities": affinities()}


def test_two_binds_at_once_run_one_after_the_other():
    result = in_child(_two_binds_at_once)

    assert result["overlapped"] == [False]
    assert result["affinities"] == {frozenset({OLD})}  # the second bind, complete, after the first
