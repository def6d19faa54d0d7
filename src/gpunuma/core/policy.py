"""What a user may choose about binding: CPU scope, memory policy and fallbacks."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from gpunuma.core.numbers import decimal
from gpunuma.errors import PolicyError, quoted


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
                raise PolicyError(f"share {name} {value!r} is not an int")
        if self.count < 1 or not 0 <= self.index < self.count:
            raise PolicyError(f"share {self.index}/{self.count}: expected 0 <= index < count")

    @classmethod
    def parse(cls, text: str) -> Share:
        """``"1/4"`` -> ``Share(1, 4)``; :class:`~gpunuma.errors.PolicyError` for anything else."""
        index, slash, count = text.strip().partition("/")
        number, parts = decimal(index.strip()), decimal(count.strip())
        if not slash or number is None or parts is None:
            raise PolicyError(f"share {quoted(text)}: expected INDEX/COUNT, e.g. 1/4 (index counts from 0)")
        return cls(number, parts)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


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
        object.__setattr__(self, "cpu_scope", CpuScope(self.cpu_scope))
        object.__setattr__(self, "memory", MemoryPolicy(self.memory))
        object.__setattr__(self, "on_disallowed", Fallback(self.on_disallowed))
        share: object = self.share
        if isinstance(share, str):
            object.__setattr__(self, "share", Share.parse(share))
        elif share is not None and not isinstance(share, Share):
            object.__setattr__(self, "share", Share(*share))  # type: ignore[misc]
        if not isinstance(self.reserve, int) or isinstance(self.reserve, bool) or self.reserve < 0:
            raise PolicyError(f"reserve={self.reserve!r}: expected a whole number of cores, 0 or more")
