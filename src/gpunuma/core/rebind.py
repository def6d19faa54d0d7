"""gpunuma's own earlier binding, told apart from a user's or a scheduler's narrowing (pure: no I/O).

A process that gpunuma bound reads back a narrowed affinity and a memory policy: without knowing its
own work, gpunuma would take them for a ``taskset``/``numactl`` choice and leave the process alone, or,
with no cgroup cpuset file to read, take its own CPUs for the cgroup's limit. A Ray worker reused for
another GPU would then stay on the old node. The binder records what it set and what was there before
(:class:`OwnBinding`); while the process still holds exactly what gpunuma set, planning sees the
process as it was before gpunuma's first binding. Anything else (a narrower ``taskset`` run since,
another policy) is someone else's choice and is left alone as usual.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.kernel_policy import Mempolicy, Mode
from gpunuma.core.numbers import decimal
from gpunuma.core.plan import Allowed
from gpunuma.errors import CpuSetParseError


@dataclass(frozen=True, slots=True)
class OwnBinding:
    """What gpunuma set in this process and what the process held before gpunuma's first binding."""

    #: The main thread's CPU affinity before gpunuma first bound the process.
    affinity_before: CpuSet
    #: The memory policy before gpunuma first set one (None: the default).
    mempolicy_before: Mempolicy | None
    #: The CPUs gpunuma set on every thread last time.
    cpus: CpuSet
    #: The memory policy gpunuma set last time (None: it left the policy alone).
    mempolicy: Mempolicy | None


def holds_own(allowed: Allowed, own: OwnBinding | None) -> bool:
    """Whether the process still holds what gpunuma set, CPUs and memory policy both (so nobody narrowed it since).

    The policy matters as much as the CPUs: a child a bound process starts under ``numactl --membind`` on the
    same CPUs inherits the record, but its CPUs are the user's choice now, made together with that policy.
    """
    if own is None or allowed.affinity != own.cpus:
        return False
    held = own.mempolicy if own.mempolicy is not None else own.mempolicy_before
    return allowed.mempolicy == held


def as_before(allowed: Allowed, own: OwnBinding | None, *, cpuset_from_affinity: bool) -> Allowed:
    """``allowed`` as it read before gpunuma's own binding, where the process still holds that binding.

    ``cpuset_from_affinity`` says the reader found no cgroup cpuset and took the affinity as the limit:
    gpunuma's own CPUs must not become that limit.
    """
    if own is None:
        return allowed
    changes: dict[str, Any] = {}
    if holds_own(allowed, own):
        changes["affinity"] = own.affinity_before
        if cpuset_from_affinity:
            changes["cpus"] = own.affinity_before
    if own.mempolicy is not None and allowed.mempolicy == own.mempolicy:
        changes["mempolicy"] = own.mempolicy_before
    return replace(allowed, **changes) if changes else allowed


def next_record(
    own: OwnBinding | None,
    affinity_before: CpuSet,
    mempolicy_before: Mempolicy | None,
    cpus: CpuSet,
    mempolicy: Mempolicy | None,
) -> OwnBinding:
    """The record after a binding that set ``cpus``/``mempolicy`` over ``*_before``.

    When what was there before is gpunuma's own earlier binding, the original state is kept: a
    third binding still sees the process as it was before the first. A binding that left the memory
    policy alone (``mempolicy`` None) keeps what the record said of it.
    """
    if own is not None and affinity_before == own.cpus:
        affinity_before = own.affinity_before
    if own is not None and mempolicy is None:
        mempolicy_before, mempolicy = own.mempolicy_before, own.mempolicy
    elif own is not None and own.mempolicy is not None and mempolicy_before == own.mempolicy:
        mempolicy_before = own.mempolicy_before
    return OwnBinding(affinity_before, mempolicy_before, cpus, mempolicy)


def format_record(own: OwnBinding) -> str:
    """The record as one line an exec'd program reads back (``GPUNUMA_OWN``).

    ``cpus=0-13;before=0-223;mem=preferred:1;mem_before=-`` (``-``: the default policy).
    """

    def policy(value: Mempolicy | None) -> str:
        return "-" if value is None else f"{value.mode.word}:{','.join(map(str, value.nodes))}"

    return (f"cpus={own.cpus.to_list()};before={own.affinity_before.to_list()};"
            f"mem={policy(own.mempolicy)};mem_before={policy(own.mempolicy_before)}")


def parse_record(text: str) -> OwnBinding | None:
    """:func:`format_record`'s line back as a record; None for anything else (it is then ignored)."""
    if len(text) > 4096:
        return None
    fields = dict(part.partition("=")[::2] for part in text.split(";"))
    if set(fields) != {"cpus", "before", "mem", "mem_before"}:
        return None

    def policy(word: str) -> Mempolicy | None:
        if word == "-":
            return None
        name, _, nodes = word.partition(":")
        numbers = [decimal(n) for n in nodes.split(",")] if nodes else []
        mode = next((mode for mode in Mode if mode.word == name), None)
        if mode is None or any(n is None for n in numbers):
            raise ValueError(word)
        return Mempolicy(mode, tuple(n for n in numbers if n is not None))

    try:
        cpus, before = CpuSet.parse_list(fields["cpus"]), CpuSet.parse_list(fields["before"])
        record = OwnBinding(before, policy(fields["mem_before"]), cpus, policy(fields["mem"]))
    except (CpuSetParseError, ValueError):
        return None
    return record if cpus else None
