"""This process's record of the binding gpunuma itself applied (the decision is in :mod:`gpunuma.core.rebind`).

Process state by nature: one record per process, written by the in-process binder after a binding
that held, read when planning for this same process. A forked child inherits it with the affinity it
describes; an exec'd program starts without it (its inherited affinity then reads as narrowed).
"""

from __future__ import annotations

from gpunuma.core.kernel_policy import Mempolicy, Mode
from gpunuma.core.rebind import OwnBinding, next_record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from gpunuma.core.cpuset import CpuSet

_record: OwnBinding | None = None


def current() -> OwnBinding | None:
    """What gpunuma last bound this process to, and what the process held before (None: never bound)."""
    return _record


def remember(
    affinity_before: CpuSet, mempolicy_before: Mempolicy | None, cpus: CpuSet, mempolicy: Mempolicy | None
) -> OwnBinding:
    """Record a binding that set ``cpus`` and ``mempolicy`` over what the process held before."""
    global _record
    _record = next_record(_record, affinity_before, user_set(mempolicy_before), cpus, user_set(mempolicy))
    return _record


def forget() -> None:
    """Drop the record (a test that restores the process's affinity by hand)."""
    global _record
    _record = None


def user_set(policy: Mempolicy | None) -> Mempolicy | None:
    """``policy`` unless it is the default one (MPOL_DEFAULT: nobody set anything)."""
    return None if policy is None or policy.mode is Mode.DEFAULT else policy
