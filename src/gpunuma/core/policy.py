"""What a user may choose about binding: CPU scope, memory policy and fallbacks."""

from __future__ import annotations

from gpunuma.core.value import Choice, Value


class CpuScope(str, Choice):
    """Which CPUs a bound process may run on."""

    NODE = "node"
    """Every allowed CPU of the GPU's NUMA node (the default)."""
    SOCKET = "socket"
    """Every allowed CPU of all nodes on the GPU's socket (SNC and NPS4 machines)."""
    EXCLUSIVE = "exclusive"
    """A disjoint share of the node's whole cores, by the GPU's rank among the node's GPUs."""


class MemoryPolicy(str, Choice):
    """Which memory policy a bound process gets."""

    PREFERRED = "preferred"
    """Allocate on the node, spill elsewhere when it is full (the safe default)."""
    BIND = "bind"
    """Allocate only on the node; allocations fail rather than spill (MPOL_BIND)."""
    NONE = "none"
    """Leave the memory policy alone; bind CPUs only."""


class Fallback(str, Choice):
    """What to do when the GPU's node has no CPU this process is allowed to use."""

    NEAREST = "nearest"
    """Bind to the nearest node (by the distance table) that has allowed CPUs."""
    NONE = "none"
    """Do not bind; say why."""


class Policy(Value):
    """A binding policy. The defaults (``node`` + ``preferred``) are the safe choice."""

    cpu_scope: CpuScope = CpuScope.NODE
    memory: MemoryPolicy = MemoryPolicy.PREFERRED
    on_disallowed: Fallback = Fallback.NEAREST
    #: Rebind even when the affinity was already narrowed (numactl, taskset, a batch scheduler).
    override_affinity: bool = False
    #: When a GPU reports no locality at all, spread GPUs over every node by rank instead of not binding.
    spread_unknown: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "cpu_scope", CpuScope(self.cpu_scope))
        object.__setattr__(self, "memory", MemoryPolicy(self.memory))
        object.__setattr__(self, "on_disallowed", Fallback(self.on_disallowed))
