"""The one in-process binder: every thread's CPUs, the calling thread's memory policy, read-back, undo on
failure; and, after a binding, putting it back on threads that drifted and moving pages to its nodes.

:class:`ProcessBinder` takes the way to set a memory policy as a :class:`MemorySetter`: libnuma
(``LibnumaBinder``) or the raw syscall (``SyscallBinder``) are the same binder with another setter.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from gpunuma.adapters import guard, own_binding
from gpunuma.adapters.kernel_view import read_kernel_view, read_pages
from gpunuma.adapters.mempolicy import MempolicySyscalls, known_nodes
from gpunuma.adapters.procfs import parse_cpulist, read_value
from gpunuma.adapters.threads import AffinitySetter, Restored, ThreadBindError, ThreadChanges, bind_threads, noted
from gpunuma.core.cpuset import CpuSet, node_list
from gpunuma.core.kernel_policy import PREFERRED_MANY_SINCE, Mempolicy, Mode, planned_policy, release_at_least
from gpunuma.core.pages import Pages
from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import MemoryPolicy
from gpunuma.core.readback import compare
from gpunuma.core.reasons import Reason
from gpunuma.core.report import BindingReport, KernelView
from gpunuma.errors import BindError, GpunumaError

logger = logging.getLogger(__name__)


class MemorySetter(Protocol):
    """Sets the calling thread's memory policy; raises ``OSError`` with the kernel's errno.

    ``name`` is the binder's method in reports (``libnuma``, ``syscall``); ``syscalls`` reads the
    policy back, restores it and migrates pages. A setter pickles by reloading its library.
    """

    name: str
    syscalls: MempolicySyscalls

    def set(self, mode: Mode, nodes: tuple[int, ...]) -> None:
        ...

    def migrate(self, old: tuple[int, ...], new: tuple[int, ...]) -> int:
        """Move this process's pages on nodes ``old`` to nodes ``new`` (``migrate_pages(2)``); the pages that
        could not be moved."""
        ...


def errno_word(code: int | None) -> str:
    """``EPERM`` for 1: the name the kernel headers give an errno value."""
    return errno.errorcode.get(code or 0, f"errno {code}")


def kernel_at_least(version: tuple[int, int], release: str | None = None) -> bool:
    """Whether the running kernel (``uname -r``) is at least ``version``."""
    return release_at_least(release if release is not None else os.uname().release, version)


def _planned_policy(plan: BindingPlan) -> tuple[Mempolicy | None, str | None]:
    """The kernel policy to set for ``plan``, and a note when this kernel made it narrower."""
    if not plan.memory_nodes:
        return None, None
    return planned_policy(
        plan.memory_policy, plan.memory_nodes, preferred_many=lambda: kernel_at_least(PREFERRED_MANY_SINCE)
    )


def _set_memory(wanted: Mempolicy, setter: MemorySetter, saved: Mempolicy) -> str | None:
    """Set and confirm the policy; on refusal restore ``saved`` and return why (None: in force)."""
    syscalls = setter.syscalls
    try:
        setter.set(wanted.mode, wanted.nodes)
        held = syscalls.get()
    except OSError as err:
        _restore_memory(syscalls, saved)
        return Reason.of("memory_policy_refused", errno=errno_word(err.errno))
    if held.mode != wanted.mode or held.nodes != wanted.nodes:
        _restore_memory(syscalls, saved)
        return Reason.of("memory_policy_not_in_force", held=str(held))
    return None


def _missing_nodes(nodes: tuple[int, ...], sys_root: str | Path) -> str | None:
    """Why the plan is wrong when its memory nodes include ones the kernel does not know (not online under
    ``sys_root``); None when they all exist, or when the node list is unreadable (the node may exist, so it
    counts as refused).
    """
    known = known_nodes(sys_root)
    if known is None:
        return None
    unknown = sorted(set(nodes) - known)
    if unknown:
        return f"memory node {node_list(unknown)} does not exist on this machine (nodes {node_list(known)})"
    return None


def _check_cpus_online(cpus: CpuSet, sys_root: str | Path) -> None:
    """Raise BindError, before anything changes, when the plan names CPUs that are not online.

    ``sched_setaffinity`` takes any mask that holds one usable CPU and drops the rest, so a plan for
    CPUs the machine lacks would bind "successfully" to a part of it. Unreadable: nothing is raised.
    """
    path = f"{sys_root}/devices/system/cpu/online"
    try:
        text = read_value(path)
        online = parse_cpulist(path, text) if text is not None else None
    except (OSError, GpunumaError):
        return
    if online is None:
        return
    missing = cpus - online
    if missing:
        raise BindError(
            f"CPUs {missing.to_list()} are not online on this machine (online: {online.to_list() or 'none'}); "
            "nothing was changed"
        )


def _restore_memory(syscalls: MempolicySyscalls, saved: Mempolicy) -> bool:
    """Put ``saved`` back as the calling thread's policy; whether it is in force."""
    try:
        if syscalls.get() != saved:
            syscalls.set(saved)
            return syscalls.get() == saved
    except OSError as err:
        # Nothing more can be done: the kernel refuses to say or to set it.
        logger.debug("restoring the memory policy failed: %s", err)
        return False
    return True


def _undo(
    changes: ThreadChanges, syscalls: MempolicySyscalls, saved_memory: Mempolicy | None
) -> tuple[Restored, bool | None]:
    """Give every thread and the memory policy back; how far that got (memory None: it was never read)."""
    restored = changes.restore()
    return restored, _restore_memory(syscalls, saved_memory) if saved_memory is not None else None


def _process_affinity() -> CpuSet:
    """The process's CPUs: its main thread's (``/proc/<pid>/status`` shows them), the caller's if it has exited."""
    try:
        return CpuSet.of(os.sched_getaffinity(os.getpid()))
    except OSError:
        return CpuSet.of(os.sched_getaffinity(0))


class ProcessBinder:
    """Binds the whole calling process: every thread's CPUs; the calling thread's memory policy through ``memory``.

    Memory policy is per thread: threads created afterwards and exec'd children inherit it, threads
    that already existed keep theirs, and pages already touched stay where they are until
    :meth:`migrate` moves them. ``notes`` are added to every report; ``proc_root``/``sys_root`` are where
    threads are listed and existing nodes read; ``setaffinity`` sets one thread's CPUs (tests inject
    one that interrupts). It pickles (its setter reloads its library in the child).

    A bind is atomic from the caller's view: one at a time per process, no Python signal handler in
    the middle of it (:mod:`gpunuma.adapters.guard`), threads born during it bound too, and every exit
    that is not a report gives every thread and the memory policy back what the process held before.
    """

    def __init__(
        self,
        memory: MemorySetter,
        *,
        proc_root: str = "/proc",
        sys_root: str = "/sys",
        notes: tuple[str, ...] = (),
        setaffinity: AffinitySetter = os.sched_setaffinity,
    ) -> None:
        self.memory = memory
        self.name = memory.name
        self.proc_root = proc_root
        self.sys_root = sys_root
        self.notes = tuple(notes)
        self.setaffinity = setaffinity

    def apply(self, plan: BindingPlan) -> BindingReport:
        """Bind every thread's CPUs and the calling thread's memory policy per ``plan``, then read back.

        A CPU failure, or a planned memory node the kernel does not know (not in ``node/online`` under
        ``sys_root``), restores every thread's affinity and the memory policy and raises
        :class:`~gpunuma.errors.BindError` (:class:`~gpunuma.errors.HalfBoundError`, naming them, when some
        thread or the policy could not be given back). A policy the kernel refuses for nodes that exist
        (EPERM/EACCES under seccomp without CAP_SYS_NICE, EINVAL when ``cpuset.mems`` excludes the node)
        keeps the CPUs bound and says so. A signal that comes meanwhile is handled when the bind is over.
        """
        if not plan.binds:
            return BindingReport.not_bound(plan, self.name, self.notes)
        with guard.lock(), guard.DeferredSignals():
            return self._apply(plan)

    def _apply(self, plan: BindingPlan) -> BindingReport:
        notes = self.notes
        syscalls = self.memory.syscalls
        try:
            saved_memory = syscalls.get()
        except OSError as err:
            saved_memory = None
            notes = (*notes, Reason.of("get_mempolicy_refused", errno=errno_word(err.errno)))
        before = _process_affinity()
        _check_cpus_online(plan.cpus, self.sys_root)
        own_binding.begin(before, saved_memory, plan.cpus)
        try:
            return self._bind(plan, before, saved_memory, notes)
        finally:
            own_binding.end()

    def _bind(
        self, plan: BindingPlan, before: CpuSet, saved_memory: Mempolicy | None, notes: tuple[str, ...]
    ) -> BindingReport:
        syscalls = self.memory.syscalls
        try:
            changes = bind_threads(plan.cpus, self.proc_root, before=before, setaffinity=self.setaffinity)
        except ThreadBindError as err:
            raise err.restored.error(
                f"cannot bind thread {err.tid} to CPUs {plan.cpus.to_list()}: {err.strerror} ({errno_word(err.errno)})"
            ) from err
        except BindError:
            raise
        except OSError as err:
            raise BindError(f"cannot bind to CPUs {plan.cpus.to_list()}: {err}") from err

        effective = plan
        reasons = list(notes)
        memory_word: str | None = None
        memory_nodes: tuple[int, ...] = ()
        held: Mempolicy | None = None
        wrong_plan: str | None = None
        try:
            wanted, narrowed = _planned_policy(plan) if saved_memory is not None else (None, None)
            if narrowed:
                reasons.append(narrowed)
            if wanted is None:
                effective = replace(plan, memory_policy=MemoryPolicy.NONE)
            else:
                assert saved_memory is not None
                refused = _set_memory(wanted, self.memory, saved_memory)
                # The kernel answers EINVAL for a node that does not exist and for one the cpuset excludes:
                # only the first is a wrong plan, which must leave the process as it was (below).
                wrong_plan = _missing_nodes(plan.memory_nodes, self.sys_root) if refused else None
                if refused:
                    reasons.append(refused)
                    effective = replace(plan, memory_policy=MemoryPolicy.NONE)
                else:
                    held = wanted
                    memory_word, memory_nodes = wanted.word, wanted.nodes
                    effective = replace(plan, memory_nodes=wanted.nodes)
            if wrong_plan is None:
                after = read_kernel_view(proc_root=self.proc_root, syscalls=syscalls)
        except BaseException as err:
            restored, memory_back = _undo(changes, syscalls, saved_memory)
            noted(err, restored, memory=memory_back)
            raise
        if wrong_plan is not None:
            restored, memory_back = _undo(changes, syscalls, saved_memory)
            raise restored.error(wrong_plan, memory=memory_back)
        bound_cpus = CpuSet.of(os.sched_getaffinity(0))
        own_binding.remember(before, saved_memory, bound_cpus, held)
        return BindingReport(
            plan=plan,
            bound=True,
            method=self.name,
            cpus=bound_cpus,
            memory_policy=memory_word,
            memory_nodes=memory_nodes,
            reasons=(*plan.reasons, *reasons),
            kernel=after,
            mismatches=compare(effective, after),
        )

    # -- after the binding: read back, put back, move pages ------------------------------------
    def read_back(self) -> KernelView:
        """What the kernel holds for this process now: every thread's CPUs and the calling thread's policy."""
        return read_kernel_view(proc_root=self.proc_root, syscalls=self.memory.syscalls)

    def pages(self) -> Pages | None:
        """Where this process's pages are (``/proc/self/numa_maps``, bounded), None when unreadable."""
        return read_pages("self", self.proc_root)

    def repair(self, tids: Collection[int], cpus: CpuSet, mempolicy: Mempolicy | None = None) -> tuple[int, ...]:
        """Set threads ``tids`` back to ``cpus`` and, when given, the calling thread's memory policy to ``mempolicy``.

        Returns the threads whose CPUs were set; a thread that exited or refused (its cpuset no longer holds the
        CPUs) is left out and keeps what it holds. A memory policy the kernel refuses is a
        :class:`~gpunuma.errors.BindError`, raised after the CPUs were set. Under the bind lock, as a binding is.
        """
        done: list[int] = []
        with guard.lock(), guard.DeferredSignals():
            for tid in tids:
                try:
                    self.setaffinity(tid, set(cpus))
                except OSError as err:  # ESRCH: exited; EINVAL: no longer allowed there
                    logger.debug("thread %s keeps its CPUs: %s", tid, err)
                    continue
                done.append(tid)
            if mempolicy is not None:
                try:
                    self.memory.set(mempolicy.mode, mempolicy.nodes)
                except OSError as err:
                    raise BindError(
                        f"memory policy {mempolicy} refused ({errno_word(err.errno)}): only the CPUs were put back"
                    ) from err
        return tuple(done)

    def migrate(self, nodes: Sequence[int]) -> int:
        """Move this process's pages from every node it may use (``Mems_allowed``) to ``nodes`` (``migrate_pages``).

        Returns the pages the kernel could not move (shared with another process, pinned, no room); a refusal
        (EPERM under a seccomp profile that forbids ``migrate_pages``) is an ``OSError`` with the kernel's errno.
        Only pages mapped by this process alone move without ``CAP_SYS_NICE``.
        """
        target = tuple(sorted(set(nodes)))
        old = tuple(sorted(self.read_back().mems_allowed))
        return self.memory.migrate(old, target)
