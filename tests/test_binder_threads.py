"""bind_threads on the real kernel: a failure part-way through, or a task list that vanishes,
gives every thread its affinity back and raises BindError.

Every binding runs in a spawned child with 3 extra threads, so the test runner itself is never changed.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gpunuma.adapters.threads import ThreadBindError, bind_threads
from gpunuma.core.cpuset import CpuSet
from gpunuma.errors import BindError

ALLOWED = frozenset(os.sched_getaffinity(0))
pytestmark = pytest.mark.skipif(len(ALLOWED) < 2, reason="a change of affinity shows only with 2+ CPUs")


def in_child(function: Any, *args: Any) -> Any:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result(timeout=120)


def affinities() -> dict[int, frozenset[int]]:
    """Every thread of this process -> its affinity, from the kernel (sched_getaffinity per TID)."""
    return {int(tid): frozenset(os.sched_getaffinity(int(tid))) for tid in os.listdir("/proc/self/task")}


class FailsOnCall:
    """A per-thread setter that sets affinity for real, and fails with EPERM on call number ``fail_at``;
    ``changed`` lists the changes before it (the undo that follows goes through it too, unrecorded)."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.calls = 0
        self.changed: list[tuple[int, frozenset[int]]] = []

    def __call__(self, tid: int, cpus: Iterable[int]) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise OSError(errno.EPERM, "Operation not permitted")
        os.sched_setaffinity(tid, cpus)
        if self.calls < self.fail_at:
            self.changed.append((tid, frozenset(os.sched_getaffinity(tid))))


class VanishingTaskList:
    """A per-thread setter that, after the last thread of the first pass, removes the task list it was listed from."""

    def __init__(self, task_dir: Path, threads: int) -> None:
        self.task_dir = task_dir
        self.threads = threads
        self.changed: list[tuple[int, frozenset[int]]] = []

    def __call__(self, tid: int, cpus: Iterable[int]) -> None:
        os.sched_setaffinity(tid, cpus)
        if len(self.changed) < self.threads:
            self.changed.append((tid, frozenset(os.sched_getaffinity(tid))))
            if len(self.changed) == self.threads:
                shutil.rmtree(self.task_dir)


def with_three_threads(bind: Any) -> dict[str, Any]:
    """Start 3 threads in a non-default affinity, call ``bind(target_cpus, setter)``, report before/after.

    ``setter`` is built by ``bind``; what it changed and the error raised are returned as plain values.
    """
    os.sched_setaffinity(0, {max(ALLOWED)})  # threads started now inherit it; the bind asks for min()
    release = threading.Event()
    workers = [threading.Thread(target=release.wait) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        before = affinities()
        setter, error = bind(CpuSet.of({min(ALLOWED)}))
        return {
            "before": before,
            "after": affinities(),
            "changed": setter.changed,
            "error_type": type(error).__name__,
            "message": str(error),
            "tid": getattr(error, "tid", None),
            "unrestored": getattr(error, "unrestored", None),
        }
    finally:
        release.set()
        for worker in workers:
            worker.join()


def _fail_on_third_thread() -> dict[str, Any]:
    def bind(cpus: CpuSet) -> tuple[FailsOnCall, BaseException | None]:
        setter = FailsOnCall(3)
        try:
            bind_threads(cpus, setaffinity=setter)
        except BindError as err:
            return setter, err
        return setter, None

    return with_three_threads(bind)


def test_a_failure_on_the_third_thread_restores_the_two_already_changed() -> None:
    result = in_child(_fail_on_third_thread)

    assert len(result["before"]) == 4  # the main thread and the 3 started ones
    # The first two threads really were moved to min(ALLOWED) before the third refused.
    assert [cpus for _, cpus in result["changed"]] == [frozenset({min(ALLOWED)})] * 2
    assert result["error_type"] == ThreadBindError.__name__ and result["tid"] is not None
    assert "Operation not permitted" in result["message"]
    assert result["after"] == result["before"]


def _task_list_vanishes_on_the_second_pass() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as root:
        task_dir = Path(root) / "self" / "task"

        def bind(cpus: CpuSet) -> tuple[VanishingTaskList, BaseException | None]:
            # A copy of /proc/self/task (all 4 threads) that the setter removes after the first pass.
            for tid in os.listdir("/proc/self/task"):
                (task_dir / tid).mkdir(parents=True)
            setter = VanishingTaskList(task_dir, len(os.listdir(task_dir)))
            try:
                bind_threads(cpus, root, setaffinity=setter)
            except BindError as err:
                return setter, err
            return setter, None

        return with_three_threads(bind)


def test_a_task_list_unreadable_on_the_second_pass_restores_every_thread_it_saw_and_says_it_saw_no_more() -> None:
    result = in_child(_task_list_vanishes_on_the_second_pass)

    assert len(result["changed"]) == 4 and {cpus for _, cpus in result["changed"]} == {frozenset({min(ALLOWED)})}
    # Threads born during the bind could not be looked for: no claim that every thread was restored.
    assert result["error_type"] == "HalfBoundError" and result["unrestored"] == ()
    assert "cannot list the threads of this process" in result["message"]
    assert "threads born during the bind were not looked for" in result["message"]
    assert result["after"] == result["before"]
