"""The static topology adapter: a fixed, in-memory topology and allowance (tests, replays, Ray actors)."""

from __future__ import annotations

from gpunuma.core.model import Topology
from gpunuma.core.plan import Allowed


class StaticTopology:
    """Answers with the ``topology`` and ``allowed`` it was built with; picklable, so it can cross processes."""

    name = "static"

    def __init__(self, topology: Topology, allowed: Allowed) -> None:
        self._topology = topology
        self._allowed = allowed

    def read(self) -> Topology:
        """The topology given at construction."""
        return self._topology

    def allowed(self) -> Allowed:
        """The allowance given at construction."""
        return self._allowed

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StaticTopology):
            return NotImplemented
        return (self._topology, self._allowed) == (other._topology, other._allowed)

    def __hash__(self) -> int:
        return hash((self._topology.source, len(self._topology.nodes), self._allowed))

    def __repr__(self) -> str:
        topology = self._topology
        return f"StaticTopology({len(topology.nodes)} nodes, {len(topology.gpus)} GPUs, source={topology.source!r})"
