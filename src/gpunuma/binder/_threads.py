"""CPU affinity of every thread of this process: list, set all, restore.

Affinity is per thread (``sched_setaffinity(0)`` changes only the caller), so binding a
whole process means setting each TID listed in ``/proc/self/task``. Shared by the binders.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from gpunuma.cpuset import CpuSet


def list_tids(proc_root: str | Path = "/proc") -> tuple[int, ...]:
    """The thread ids of this process, ascending (``/proc/self/task``)."""
    return tuple(sorted(int(entry.name) for entry in (Path(proc_root) / "self" / "task").iterdir()))


def thread_affinities(proc_root: str | Path = "/proc") -> dict[int, frozenset[int]]:
    """Every live thread's CPU affinity, by TID; threads that exit while listed are left out."""
    result: dict[int, frozenset[int]] = {}
    for tid in list_tids(proc_root):
        try:
            result[tid] = frozenset(os.sched_getaffinity(tid))
        except ProcessLookupError:
            continue
    return result


class ThreadBindError(OSError):
    """Setting one thread's affinity failed; carries the TID. Every changed thread was restored."""

    def __init__(self, tid: int, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.tid = tid


def bind_threads(cpus: CpuSet, proc_root: str | Path = "/proc") -> dict[int, frozenset[int]]:
    """Set the affinity of every thread to ``cpus``; returns each changed thread's previous affinity.

    Threads that exit meanwhile are skipped; the task list is read again once to catch threads
    born during the loop (a thread inherits its creator's affinity). On a failure every thread
    already changed is restored and :class:`ThreadBindError` is raised.
    """
    target = set(cpus)
    previous: dict[int, frozenset[int]] = {}
    for _ in range(2):
        for tid in list_tids(proc_root):
            if tid in previous:
                continue
            try:
                before = frozenset(os.sched_getaffinity(tid))
                os.sched_setaffinity(tid, target)
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
