"""CPU affinity of every thread of this process: set all, restore.

Affinity is per thread (``sched_setaffinity(0)`` changes only the caller), so binding a
whole process means setting each TID listed in ``/proc/self/task``. Shared by the binders.
"""

from __future__ import annotations

import os

from gpunuma.adapters.procfs import list_tids
from gpunuma.core.cpuset import CpuSet
from gpunuma.errors import BindError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from pathlib import Path

    #: ``os.sched_setaffinity``'s shape: (tid, cpus) -> None, raising ``OSError`` with the kernel's errno.
    AffinitySetter = Callable[[int, Iterable[int]], None]


class ThreadBindError(BindError):
    """Setting one thread's affinity failed; carries the TID. Every changed thread was restored."""

    def __init__(self, tid: int, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.tid = tid


def bind_threads(
    cpus: CpuSet, proc_root: str | Path = "/proc", *, setaffinity: AffinitySetter = os.sched_setaffinity
) -> dict[int, frozenset[int]]:
    """Set the affinity of every thread to ``cpus``; returns each changed thread's previous affinity.

    Threads that exit meanwhile are skipped; the task list is read again once to catch threads
    born during the loop (a thread inherits its creator's affinity). On a failure every thread
    already changed is restored and :class:`ThreadBindError` (a thread refused) or
    :class:`BindError` (the task list is unreadable) is raised. ``setaffinity`` sets one
    thread's affinity; tests inject a failing one.
    """
    target = set(cpus)
    task_dir = f"{proc_root}/self/task"
    previous: dict[int, frozenset[int]] = {}
    for _ in range(2):
        try:
            tids = list_tids(task_dir)
        except OSError as err:
            restore_threads(previous)
            raise BindError(
                f"cannot list the threads of this process ({task_dir}): {err}; every thread was restored"
            ) from err
        for tid in tids:
            if tid in previous:
                continue
            try:
                before = frozenset(os.sched_getaffinity(tid))
                setaffinity(tid, target)
            except ProcessLookupError:
                continue
            except OSError as err:
                restore_threads(previous)
                raise ThreadBindError(tid, err) from err
            previous[tid] = before
    return previous


def restore_threads(previous: Mapping[int, frozenset[int]]) -> None:
    """Give each thread back its saved affinity; threads that have exited are skipped."""
    for tid, cpus in previous.items():
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            # The thread exited (ESRCH) or its cgroup shrank; restoring is best effort and
            # must not hide the error that made the caller restore.
            continue
