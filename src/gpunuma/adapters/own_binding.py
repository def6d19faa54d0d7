"""This process's record of the binding gpunuma itself applied (the decision is in :mod:`gpunuma.core.rebind`).

Process state by nature: one record per process, written by the in-process binder after a binding
that held, read when planning for this same process. A forked child inherits it with the affinity it
describes; an exec'd program gets it from the launcher that bound it (``GPUNUMA_OWN``, read once).

A binding under way is noted too (:func:`begin`, :func:`end`): a child forked by another thread in the middle
of it holds the forking thread's CPUs, the new ones when the bind had reached that thread, and records them as
gpunuma's own, so its own bind tells them from a ``taskset`` narrowing.
"""

from __future__ import annotations

import os

from gpunuma.adapters.mempolicy import MempolicySyscalls
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.kernel_policy import Mempolicy, Mode
from gpunuma.core.rebind import OwnBinding, next_record
from gpunuma.errors import GpunumaError
from gpunuma.settings import inherited_own_binding

_record: OwnBinding | None = None
_inherited_read = False
#: The binding under way: the record when it began, the affinity and policy before it, the CPUs it sets.
_in_flight: tuple[OwnBinding | None, CpuSet, Mempolicy | None, CpuSet] | None = None


def current() -> OwnBinding | None:
    """What gpunuma last bound this process to, and what the process held before (None: never bound).

    Before this process binds itself, that is what a gpunuma launcher bound it to before exec, if any.
    """
    global _record, _inherited_read
    if _record is None and not _inherited_read:
        _inherited_read = True
        _record = inherited_own_binding()
    return _record


def remember(
    affinity_before: CpuSet, mempolicy_before: Mempolicy | None, cpus: CpuSet, mempolicy: Mempolicy | None
) -> OwnBinding:
    """Record a binding that set ``cpus`` and ``mempolicy`` over what the process held before."""
    global _record
    # current(), not _record: a program a gpunuma launcher started holds the launcher's record until it first
    # asks, and its own rebinding must keep what the process held before the launcher bound it.
    _record = next_record(current(), affinity_before, user_set(mempolicy_before), cpus, user_set(mempolicy))
    return _record


def begin(affinity_before: CpuSet, mempolicy_before: Mempolicy | None, cpus: CpuSet) -> None:
    """Note a binding under way that sets ``cpus`` over ``affinity_before`` (until :func:`end`)."""
    global _in_flight
    _in_flight = (current(), affinity_before, mempolicy_before, cpus)


def end() -> None:
    """The binding under way is over: recorded by :func:`remember`, or undone."""
    global _in_flight
    _in_flight = None


def _after_fork_in_child() -> None:
    global _record, _in_flight
    flight, _in_flight = _in_flight, None
    if flight is None:
        return
    record, affinity_before, mempolicy_before, cpus = flight
    if _record is not record:
        return  # the parent recorded the binding before the fork: the record already says it
    try:
        held = CpuSet.of(os.sched_getaffinity(0))
    except OSError:
        return
    if held == cpus:
        # The forking thread was bound already; its memory policy is its own, not the binding thread's.
        _record = next_record(record, affinity_before, user_set(mempolicy_before), cpus, None)


os.register_at_fork(after_in_child=_after_fork_in_child)


def forget() -> None:
    """Drop the record (a test that restores the process's affinity by hand)."""
    global _record, _inherited_read
    _record = None
    _inherited_read = True


def user_set(policy: Mempolicy | None) -> Mempolicy | None:
    """``policy`` unless it is the default one (MPOL_DEFAULT: nobody set anything)."""
    return None if policy is None or policy.mode is Mode.DEFAULT else policy


class ThisProcess:
    """What only the calling process can tell of itself: its calling thread's memory policy (``get_mempolicy``
    through ``syscalls``, default this machine's) and gpunuma's own record of its binding.

    The composition root gives it to a source that reads this very process on this machine, so the process's
    own earlier binding is seen through; a source without it reads the policy from ``numa_maps``.
    """

    def __init__(self, syscalls: MempolicySyscalls | None = None) -> None:
        self._syscalls = syscalls

    def __repr__(self) -> str:
        return "ThisProcess()"

    def mempolicy(self) -> Mempolicy | None:
        """The calling thread's memory policy when someone set one (None: the default, or unreadable)."""
        try:
            syscalls = self._syscalls if self._syscalls is not None else MempolicySyscalls()
            return user_set(syscalls.get())
        except (OSError, GpunumaError):
            return None

    def own(self) -> OwnBinding | None:
        """gpunuma's own record of this process's binding (:func:`current`)."""
        return current()
