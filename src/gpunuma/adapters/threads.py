"""CPU affinity of every thread of this process: set all, restore.

Affinity is per thread (``sched_setaffinity(0)`` changes only the caller), so binding a
whole process means setting each TID listed in ``/proc/self/task``. Shared by the binders.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from gpunuma.adapters.procfs import list_tids
from gpunuma.core.cpuset import CpuSet
from gpunuma.errors import BindError

#: ``os.sched_setaffinity``'s shape: (tid, cpus) -> None, raising ``OSError`` with the kernel's errno.
AffinitySetter = Callable[[int, Iterable[int]], None]


class ThreadBindError(BindError):
    """Setting one thread's affinity failed; carries the TID. Every changed thread was restored."""

    def __init__(self, tid: int, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.tid = tid


#: Passes over the task list before a process whose threads keep multiplying is given up on.
MAX_PASSES = 64


def bind_threads(
    cpus: CpuSet,
    proc_root: str | Path = "/proc",
    *,
    setaffinity: AffinitySetter = os.sched_setaffinity,
    max_passes: int = MAX_PASSES,
) -> dict[int, frozenset[int]]:
    """Set the affinity of every thread to ``cpus``; returns each changed thread's previous affinity.

    The task list is read again until a whole pass finds no thread left to bind: a thread born
    during the loop from a thread not yet bound inherits the old affinity, and is caught by the next
    pass. Threads that exit meanwhile are skipped. On any exit that is not a return (a thread
    refuses, the task list is unreadable, threads still appear after ``max_passes`` passes, or an
    exception from anywhere, ``KeyboardInterrupt`` included) every thread already changed is restored
    before the error propagates: :class:`ThreadBindError` (a thread refused) or :class:`BindError`.
    ``setaffinity`` sets one thread's affinity; tests inject a failing or interrupting one.
    """
    target = set(cpus)
    task_dir = f"{proc_root}/self/task"
    previous: dict[int, frozenset[int]] = {}
    gone: set[int] = set()
    try:
        for _ in range(max_passes):
            try:
                tids = list_tids(task_dir)
            except OSError as err:
                raise BindError(
                    f"cannot list the threads of this process ({task_dir}): {err}; every thread was restored"
                ) from err
            new = [tid for tid in tids if tid not in previous and tid not in gone]
            if not new:
                return previous
            for tid in new:
                try:
                    # Recorded before the change, so an interruption right after it still restores it.
                    previous[tid] = frozenset(os.sched_getaffinity(tid))
                    setaffinity(tid, target)
                except ProcessLookupError:
                    previous.pop(tid, None)
                    gone.add(tid)
                except OSError as err:
                    raise ThreadBindError(tid, err) from err
        raise BindError(
            f"threads kept appearing through {max_passes} passes over {task_dir}; every thread was restored"
        )
    except BaseException:
        restore_threads(previous)
        raise


def restore_threads(previous: Mapping[int, frozenset[int]]) -> None:
    """Give each thread back its saved affinity; threads that have exited are skipped."""
    for tid, cpus in previous.items():
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            # The thread exited (ESRCH) or its cgroup shrank; restoring is best effort and
            # must not hide the error that made the caller restore.
            continue
