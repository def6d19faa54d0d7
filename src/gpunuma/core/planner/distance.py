"""Nearest-node search over a node's sysfs distance row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gpunuma.core.model import NumaNode, Topology
from gpunuma.core.reasons import Reason

#: Sort key for a node missing from a distance row: after every measured one.
_UNMEASURED = 1 << 30


@dataclass(frozen=True, slots=True)
class Nearest:
    """The nearest node that passed a test, and its distance (None when the row does not list it)."""

    node: int
    distance: int | None

    def key(self) -> tuple[int, int]:
        """Sort key: measured distance first (unmeasured last), then node id."""
        return (self.distance if self.distance is not None else _UNMEASURED, self.node)

    def phrase(self) -> Reason:
        """``distance 21`` or ``distance unknown``, for reasons."""
        if self.distance is None:
            return Reason.of("distance_unknown")
        return Reason.of("distance", distance=self.distance)


def nearest_node(topology: Topology, origin: NumaNode, accept: Callable[[NumaNode], bool]) -> Nearest | None:
    """The node closest to ``origin`` by ``origin``'s distance row that ``accept`` admits (ties: lowest id)."""
    found = [Nearest(node.id, origin.distance_to(node.id)) for node in topology.nodes if accept(node)]
    return min(found, key=Nearest.key) if found else None

