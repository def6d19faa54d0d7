"""How a plan's :class:`MemoryPolicy` becomes the kernel's memory policy (pure: no I/O).

The one mapping from the user's choice (``preferred``/``bind``) to a uapi ``MPOL_*`` mode and node
mask, used by every binder, the numactl launcher, the simulated kernel and the read-back comparison;
and the words reports, ``get_mempolicy`` and ``/proc/<pid>/numa_maps`` give each mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from gpunuma.core.cpuset import node_list
from gpunuma.core.policy import MemoryPolicy
from gpunuma.core.reasons import Reason


class Mode(IntEnum):
    """A memory policy mode (uapi ``MPOL_*``)."""

    DEFAULT = 0
    PREFERRED = 1
    BIND = 2
    INTERLEAVE = 3
    LOCAL = 4
    PREFERRED_MANY = 5
    WEIGHTED_INTERLEAVE = 6

    @property
    def word(self) -> str:
        """The lower-case name reports use: ``bind``, ``preferred_many``."""
        return self.name.lower()


#: numa_maps field 2 names each mode its own way ("prefer (many)", "weighted interleave").
NUMA_MAPS_MODES: dict[str, Mode] = {
    "default": Mode.DEFAULT,
    "local": Mode.LOCAL,
    "bind": Mode.BIND,
    "prefer": Mode.PREFERRED,
    "prefer (many)": Mode.PREFERRED_MANY,
    "interleave": Mode.INTERLEAVE,
    "weighted interleave": Mode.WEIGHTED_INTERLEAVE,
}


@dataclass(frozen=True, slots=True)
class Mempolicy:
    """One thread's memory policy: mode, its flag bits and the nodes in its mask."""

    mode: Mode
    nodes: tuple[int, ...] = ()
    flags: int = 0

    @property
    def word(self) -> str:
        return self.mode.word

    def __str__(self) -> str:
        nodes = node_list(self.nodes)
        return f"{self.word} {nodes}" if nodes else self.word


#: MPOL_PREFERRED_MANY arrived in Linux 5.15 (numactl's --preferred-many in 2.0.15).
PREFERRED_MANY_SINCE = (5, 15)


def release_at_least(release: str, version: tuple[int, int]) -> bool:
    """Whether a kernel release (``uname -r``: ``5.15.0-91-generic``) is at least ``version``."""
    parts = []
    for piece in release.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch in "0123456789") or "0"
        parts.append(int(digits))
    return tuple(parts) >= version


def kernel_policy(memory: MemoryPolicy, nodes: Sequence[int], *, preferred_many: bool = True) -> Mempolicy | None:
    """The kernel policy that carries out ``memory`` on ``nodes``; None leaves the policy alone.

    ``bind`` is MPOL_BIND; ``preferred`` on one node is MPOL_PREFERRED, on several MPOL_PREFERRED_MANY,
    or, where the kernel lacks it (``preferred_many=False``, Linux before 5.15), MPOL_PREFERRED on
    the first planned node.
    """
    if memory is MemoryPolicy.NONE or not nodes:
        return None
    ordered = tuple(sorted(nodes))
    if memory is MemoryPolicy.BIND:
        return Mempolicy(Mode.BIND, ordered)
    if len(ordered) == 1:
        return Mempolicy(Mode.PREFERRED, ordered)
    if preferred_many:
        return Mempolicy(Mode.PREFERRED_MANY, ordered)
    return Mempolicy(Mode.PREFERRED, (nodes[0],))


def planned_policy(
    memory: MemoryPolicy, nodes: Sequence[int], *, preferred_many: Callable[[], bool]
) -> tuple[Mempolicy | None, Reason | None]:
    """The kernel policy that carries out ``memory`` on ``nodes`` here, and the reason when it had to be narrowed.

    ``preferred_many`` says whether this host takes MPOL_PREFERRED_MANY (the kernel for a binder, numactl too for
    a launcher); it is asked only for a "preferred" plan over several nodes. Where it is False, the first
    planned node alone is preferred (:func:`kernel_policy`), with a ``no_preferred_many`` reason.
    """
    many = memory is MemoryPolicy.PREFERRED and len(nodes) > 1
    wanted = kernel_policy(memory, nodes, preferred_many=not many or preferred_many())
    if wanted is None or not many or wanted.mode is Mode.PREFERRED_MANY:
        return wanted, None

    return wanted, Reason.of("no_preferred_many", node=node_list(wanted.nodes), nodes=node_list(nodes))


def modes_for(memory: MemoryPolicy) -> frozenset[Mode]:
    """Every mode :func:`kernel_policy` may choose for ``memory`` (what a read-back accepts)."""
    if memory is MemoryPolicy.BIND:
        return frozenset({Mode.BIND})
    if memory is MemoryPolicy.PREFERRED:
        return frozenset({Mode.PREFERRED, Mode.PREFERRED_MANY})
    return frozenset()
