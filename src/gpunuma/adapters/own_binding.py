"""This process's record of the binding gpunuma itself applied (the decision is in :mod:`gpunuma.core.rebind`).

Process state by nature: one record per process, written by the in-process binder after a binding
that held, read when planning for this same process. A forked child inherits it with the affinity it
describes; an exec'd program gets it from the launcher that bound it (``GPUNUMA_OWN``, read once).
"""

from __future__ import annotations

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.kernel_policy import Mempolicy, Mode
from gpunuma.core.rebind import OwnBinding, next_record
from gpunuma.settings import inherited_own_binding

_record: OwnBinding | None = None
_inherited_read = False


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


def forget() -> None:
    """Drop the record (a test that restores the process's affinity by hand)."""
    global _record, _inherited_read
    _record = None
    _inherited_read = True


def user_set(policy: Mempolicy | None) -> Mempolicy | None:
    """``policy`` unless it is the default one (MPOL_DEFAULT: nobody set anything)."""
    return None if policy is None or policy.mode is Mode.DEFAULT else policy
