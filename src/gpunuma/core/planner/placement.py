"""Rule 5's fallback: move a GPU whose CPU node has no CPU this cgroup allows, or drop it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gpunuma.core.model import NumaNode, Topology
from gpunuma.core.plan import Allowed
from gpunuma.core.planner.distance import nearest_node
from gpunuma.core.planner.locality import NodeChoice
from gpunuma.core.policy import Fallback, Policy
from gpunuma.core.reasons import Reason


@dataclass(frozen=True, slots=True)
class Placement:
    """The node a GPU's process binds to once the cgroup is taken into account (None: not bound)."""

    gpu: int
    label: str
    #: The GPU's own CPU node (rule 1), None when unknown.
    gpu_node: int | None
    node: int | None
    reasons: tuple[str, ...]


def disallowed_reason(
    node: NumaNode, allowed: Allowed, code: str = "node_disallowed", *, reserve: int = 0, **more: object
) -> Reason:
    """Why ``node`` has no CPU left to plan on, blaming what took them: the cgroup, or the reserve.

    ``none of node 1's CPUs 56-111,168-223 are allowed by this cgroup (allowed: 0-55)``, or where the cgroup
    allows some that ``reserve`` keeps out (``allowed.reserved``), ``reserve=2 keeps out every CPU of node 1
    this process may use (56-57,168-169)``; plus what ``code`` adds (``node_disallowed_nearest``...).
    """
    kept_out = node.cpus & allowed.reserved
    if kept_out:
        return Reason.of(code.replace("node_disallowed", "node_reserved", 1), node=node.id, reserve=reserve,
                         cpus=kept_out.to_list(), **more)
    return Reason.of(code, node=node.id, cpus=node.cpus.to_list(), allowed=allowed.cgroup_cpus.to_list() or "none",
                     **more)


def place_gpus(
    topology: Topology, choices: Mapping[int, NodeChoice], allowed: Allowed, policy: Policy
) -> dict[int, Placement]:
    """Apply ``policy.on_disallowed`` to every GPU whose node has no allowed CPU, keyed by GPU index."""
    placements: dict[int, Placement] = {}
    for index, choice in sorted(choices.items()):
        node = topology.node(choice.node) if choice.node is not None else None
        if node is None or not node.cpus.isdisjoint(allowed.cpus):
            placements[index] = Placement(index, choice.label, choice.node, choice.node, choice.reasons)
            continue
        target: int | None = None
        if policy.on_disallowed is Fallback.NONE:
            why = disallowed_reason(node, allowed, "node_disallowed_not_binding", reserve=policy.reserve)
        else:
            found = nearest_node(topology, node, lambda n: not n.cpus.isdisjoint(allowed.cpus))
            if found is None:
                why = disallowed_reason(node, allowed, "node_disallowed_no_allowed_node", reserve=policy.reserve)
            else:
                target = found.node
                why = disallowed_reason(node, allowed, "node_disallowed_nearest", reserve=policy.reserve,
                                        target=target, distance=found.phrase())
        placements[index] = Placement(index, choice.label, choice.node, target, (*choice.reasons, why))
    return placements
