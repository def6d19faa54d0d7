"""What a user may choose about binding: CPU scope, memory policy and fallbacks."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from gpunuma.core.numbers import decimal
from gpunuma.errors import PolicyError, quoted

_C = TypeVar("_C", bound=Enum)

#: More parts (and reserved cores) than any node has CPUs: the bound of a share's count and of ``reserve``.
MAX_PARTS = 1 << 16


class CpuScope(str, Enum):
    """Which CPUs a bound process may run on."""

    NODE = "node"
    """Every allowed CPU of the GPU's NUMA node (the default)."""
    SOCKET = "socket"
    """Every allowed CPU of all nodes on the GPU's socket (SNC and NPS4 machines)."""
    EXCLUSIVE = "exclusive"
    """A disjoint share of the node's whole cores, by the GPU's rank among the node's GPUs."""
    CACHE = "cache"
    """One last-level cache domain of the node (an EPYC CCD), by the GPU's rank among the node's GPUs."""


class MemoryPolicy(str, Enum):
    """Which memory policy a bound process gets."""

    PREFERRED = "preferred"
    """Allocate on the node, spill elsewhere when it is full (the safe default)."""
    BIND = "bind"
    """Allocate only on the node; allocations fail rather than spill (MPOL_BIND)."""
    NONE = "none"
    """Leave the memory policy alone; bind CPUs only."""


class Fallback(str, Enum):
    """What to do when the GPU's node has no CPU this process is allowed to use."""

    NEAREST = "nearest"
    """Bind to the nearest node (by the distance table) that has allowed CPUs."""
    NONE = "none"
    """Do not bind; say why."""


@dataclass(frozen=True, slots=True)
class Share:
    """Part ``index`` (counted from 0) of ``count`` equal, disjoint parts of the planned CPUs.

    For processes that share a GPU (DP-attention ranks, fractional-GPU Ray actors, data loaders):
    each takes its own part of whole cores, SMT siblings together.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        for name in ("index", "count"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise PolicyError(f"share {name} {quoted(value)} is not an int")
        if not 1 <= self.count <= MAX_PARTS or not 0 <= self.index < self.count:
            raise PolicyError(
                f"share {quoted(self.index)}/{quoted(self.count)}: expected 0 <= index < count <= {MAX_PARTS}"
            )

    @classmethod
    def parse(cls, text: str) -> Share:
        """``"1/4"`` -> ``Share(1, 4)``; :class:`~gpunuma.errors.PolicyError` for anything else."""
        if not isinstance(text, str):
            raise PolicyError(f"share {quoted(text)}: expected text INDEX/COUNT such as '1/4'")
        index, slash, count = text.strip().partition("/")
        number, parts = decimal(index.strip()), decimal(count.strip())
        if not slash or number is None or parts is None:
            raise PolicyError(f"share {quoted(text)}: expected INDEX/COUNT, e.g. 1/4 (index counts from 0)")
        return cls(number, parts)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def coerce(cls, given: object) -> Share | None:
        """A share as callers give one: a :class:`Share`, ``"1/4"``, ``(1, 4)``, or None (all the CPUs).

        Anything else is a :class:`~gpunuma.errors.PolicyError` naming ``share``.
        """
        if given is None or isinstance(given, Share):
            return given
        if isinstance(given, str):
            return cls.parse(given)
        if isinstance(given, (tuple, list)) and len(given) == 2:
            return cls(*given)
        raise PolicyError(f"share={quoted(given)}: expected Share(i, n), (i, n) or 'i/n'")


@dataclass(frozen=True, slots=True)
class Policy:
    """A binding policy. The defaults (``node`` + ``preferred``) are the safe choice."""

    cpu_scope: CpuScope = CpuScope.NODE
    memory: MemoryPolicy = MemoryPolicy.PREFERRED
    on_disallowed: Fallback = Fallback.NEAREST
    #: Rebind even when the affinity was already narrowed (numactl, taskset, a batch scheduler).
    override_affinity: bool = False
    #: When a GPU reports no locality at all, spread GPUs over every node by rank instead of not binding.
    spread_unknown: bool = False
    #: This process's part of the planned CPUs (``(1, 4)`` or ``Share(1, 4)``); None: all of them.
    share: Share | None = None
    #: Keep the first ``reserve`` cores of every node out of every plan (for the OS, IRQs, loaders).
    reserve: int = 0

    def __post_init__(self) -> None:
        # A wrong value or type in any field is a PolicyError naming it, whatever the mode: a programming error.
        object.__setattr__(self, "cpu_scope", _member(CpuScope, "cpu_scope", self.cpu_scope))
        object.__setattr__(self, "memory", _member(MemoryPolicy, "memory", self.memory))
        object.__setattr__(self, "on_disallowed", _member(Fallback, "on_disallowed", self.on_disallowed))
        for name in ("override_affinity", "spread_unknown"):
            if not isinstance(getattr(self, name), bool):
                raise PolicyError(f"{name}={quoted(getattr(self, name))}: expected True or False")
        object.__setattr__(self, "share", Share.coerce(self.share))
        reserve: object = self.reserve
        if not isinstance(reserve, int) or isinstance(reserve, bool) or not 0 <= reserve <= MAX_PARTS:
            raise PolicyError(f"reserve={quoted(reserve)}: expected a whole number of cores, 0 to {MAX_PARTS}")


def _member(choice: type[_C], name: str, value: object) -> _C:
    """``value`` as a member of ``choice`` (the member itself or its value), else a PolicyError naming ``name``."""
    try:
        return choice(value)
    except (ValueError, TypeError):  # TypeError: an unhashable value
        allowed = ", ".join(repr(member.value) for member in choice)
        raise PolicyError(f"{name}={quoted(value)}: expected one of {allowed}") from None
