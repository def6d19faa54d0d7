"""CPU affinity of every thread of this process: set all, and give all back.

Affinity is per thread (``sched_setaffinity(0)`` changes only the caller), so binding a whole process means
setting each TID listed in ``/proc/self/task``. Threads keep being born meanwhile, each with its creator's
affinity of that instant, so both directions read the task list again until a pass finds no thread left.
Shared by the binders.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from gpunuma.adapters.procfs import list_tids
from gpunuma.core.cpuset import CpuSet
from gpunuma.errors import BindError, HalfBoundError

#: ``os.sched_setaffinity``'s shape: (tid, cpus) -> None, raising ``OSError`` with the kernel's errno.
AffinitySetter = Callable[[int, Iterable[int]], None]

logger = logging.getLogger(__name__)

#: Passes over the task list before a process whose threads keep multiplying is given up on.
MAX_PASSES = 64


@dataclass(frozen=True, slots=True)
class Restored:
    """How far undoing a bind got: the threads that may still hold the new CPUs, and why in words."""

    #: TIDs the kernel refused to give their affinity back, or born too fast to be caught.
    unrestored: tuple[int, ...] = ()
    #: Empty when every thread has its affinity from before the bind again.
    why: str = ""

    def error(self, failure: str, *, memory: bool | None = None) -> BindError:
        """The error for a bind that failed with ``failure`` and was undone this far.

        ``memory``: whether the memory policy was restored (None: the bind had not changed it). A
        :class:`~gpunuma.errors.BindError` when everything is back, else a
        :class:`~gpunuma.errors.HalfBoundError` that names what is not.
        """
        if not self.why and memory is not False:
            restored = "every thread and the memory policy were restored" if memory else "every thread was restored"
            return BindError(f"{failure}; {restored}")
        parts = [self.why or "every thread was restored"]
        if memory is not None:
            parts.append("the memory policy was restored" if memory else "the memory policy could not be restored")
        return HalfBoundError(f"{failure}; {'; '.join(parts)}", self.unrestored, memory_restored=memory is not False)


class ThreadBindError(BindError):
    """Setting one thread's affinity failed; carries the TID, and how far the bind was undone (``restored``)."""

    def __init__(self, tid: int, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.tid = tid
        self.restored = Restored()


class ThreadChanges:
    """What binding every thread to ``cpus`` changed, and how to give it back (:meth:`restore`).

    ``before`` is the process's affinity from before the bind: what a thread born during it from a thread
    already bound goes back to. ``setaffinity`` makes every change, both ways.
    """

    def __init__(
        self, cpus: frozenset[int], before: frozenset[int], task_dir: str, setaffinity: AffinitySetter
    ) -> None:
        self.cpus = cpus
        self.before = before
        self.task_dir = task_dir
        self.setaffinity = setaffinity
        #: Each thread the bind changed -> the affinity it goes back to.
        self.previous: dict[int, frozenset[int]] = {}

    def restore(self, max_passes: int = MAX_PASSES) -> Restored:
        """Give every thread of the process its affinity from before the bind; says which could not have it.

        A thread the bind changed gets back what it held. One the bind never saw (born after its last pass, or
        during this undo, from a thread still on the new CPUs) and that shows the new CPUs gets ``before``; one
        that shows other CPUs was born from a thread already given back, and is left as it is. Threads that
        exit meanwhile are skipped.
        """
        done: set[int] = set()
        refused: dict[int, str] = {}
        for _ in range(max_passes):
            try:
                listed = list_tids(self.task_dir)
            except OSError as err:
                for tid in self.previous.keys() - done:
                    self._give_back(tid, self.previous[tid], refused)
                return self._outcome(
                    refused, f"the thread list {self.task_dir} could not be read again ({err.strerror or err}): "
                    "threads born during the bind were not looked for"
                )
            todo = [tid for tid in listed if tid not in done]
            if not todo:
                return self._outcome(refused)
            for tid in todo:
                done.add(tid)
                wanted = self.previous.get(tid)
                if wanted is None:
                    try:
                        shown = frozenset(os.sched_getaffinity(tid))
                    except OSError:
                        continue  # exited
                    if not shown <= self.cpus:
                        continue
                    wanted = self.before
                self._give_back(tid, wanted, refused)
        try:
            left = [tid for tid in list_tids(self.task_dir) if tid not in done]
        except OSError:
            left = []
        return self._outcome(
            refused, f"threads kept appearing through {max_passes} passes: {_tids(left)} may keep the new CPUs"
            if left else "", left
        )

    def _give_back(self, tid: int, cpus: frozenset[int], refused: dict[int, str]) -> None:
        try:
            self.setaffinity(tid, cpus)
        except ProcessLookupError:
            pass  # exited
        except OSError as err:
            refused[tid] = errno.errorcode.get(err.errno or 0, str(err))

    @staticmethod
    def _outcome(refused: dict[int, str], why: str = "", left: Iterable[int] = ()) -> Restored:
        parts = [f"thread {tid} could not be restored ({word})" for tid, word in sorted(refused.items())]
        if why:
            parts.append(why)
        return Restored(tuple(sorted({*refused, *left})), "; ".join(parts))


def _tids(tids: Iterable[int]) -> str:
    listed = sorted(tids)
    return f"thread{'s' if len(listed) > 1 else ''} {', '.join(map(str, listed))}"


def bind_threads(
    cpus: CpuSet,
    proc_root: str | Path = "/proc",
    *,
    before: Iterable[int] | None = None,
    setaffinity: AffinitySetter = os.sched_setaffinity,
    max_passes: int = MAX_PASSES,
) -> ThreadChanges:
    """Set the affinity of every thread to ``cpus``; returns what changed, to give it back on a later failure.

    The task list is read again until a whole pass finds no thread left to bind: a thread born during the
    loop from a thread not yet bound inherits the old affinity, and is caught by the next pass. Threads that
    exit meanwhile are skipped. ``before`` is the process's affinity from before the bind (default: the
    calling thread's now). On any exit that is not a return (a thread refuses, the task list is unreadable,
    threads still appear after ``max_passes`` passes, or an exception from anywhere, ``KeyboardInterrupt``
    included) every thread is given back its affinity (:meth:`ThreadChanges.restore`) before the error
    propagates: :class:`ThreadBindError` (a thread refused; its ``restored`` says how far the undo got),
    :class:`~gpunuma.errors.BindError`, or :class:`~gpunuma.errors.HalfBoundError` when the undo fell short.
    ``setaffinity`` sets one thread's affinity, both ways; tests inject a failing or interrupting one.
    """
    target = frozenset(cpus)
    changes = ThreadChanges(
        target,
        frozenset(before if before is not None else os.sched_getaffinity(0)),
        f"{proc_root}/self/task",
        setaffinity,
    )
    try:
        failure = _bind_every_thread(changes, max_passes)
    except ThreadBindError as err:
        err.restored = changes.restore()
        raise
    except BaseException as err:
        noted(err, changes.restore())
        raise
    if failure:
        raise changes.restore().error(failure)
    return changes


def _bind_every_thread(changes: ThreadChanges, max_passes: int) -> str:
    """Bind pass after pass; "" once a pass finds no thread left, else why it stopped (nothing undone yet)."""
    target, previous = changes.cpus, changes.previous
    gone: set[int] = set()
    for index in range(max_passes):
        try:
            tids = list_tids(changes.task_dir)
        except OSError as err:
            return f"cannot list the threads of this process ({changes.task_dir}): {err}"
        new = [tid for tid in tids if tid not in previous and tid not in gone]
        if not new:
            return ""
        for tid in new:
            try:
                shown = frozenset(os.sched_getaffinity(tid))
                # Recorded before the change, so an interruption right after it still restores it. A thread
                # first seen after the first pass was born during the bind: showing the new CPUs, it got them
                # from a thread already bound, and goes back to what the process held before.
                previous[tid] = changes.before if index and shown <= target else shown
                changes.setaffinity(tid, target)
            except ProcessLookupError:
                previous.pop(tid, None)
                gone.add(tid)
            except OSError as err:
                raise ThreadBindError(tid, err) from err
    return f"threads kept appearing through {max_passes} passes over {changes.task_dir}"


def noted(error: BaseException, restored: Restored, *, memory: bool | None = None) -> None:
    """Say on ``error`` (an exception that is not gpunuma's, re-raised as it is) what undoing the bind left behind."""
    parts = [restored.why] if restored.why else []
    if memory is False:
        parts.append("the memory policy could not be restored")
    if not parts:
        return
    text = f"a bind interrupted by {type(error).__name__} was not fully undone: {'; '.join(parts)}"
    logger.warning("%s", text)
    add_note = getattr(error, "add_note", None)  # Python 3.11+
    if add_note is not None:
        add_note(f"gpunuma: {text}")  # on someone else's exception, the note says whose it is
