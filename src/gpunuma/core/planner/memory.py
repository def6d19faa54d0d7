"""Rule 3: which memory nodes a plan prefers or binds to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gpunuma.core.cpuset import node_list
from gpunuma.core.model import NumaNode, Topology
from gpunuma.core.plan import Allowed
from gpunuma.core.planner.distance import nearest_node
from gpunuma.core.policy import MemoryPolicy
from gpunuma.core.reasons import Reason


@dataclass(frozen=True, slots=True)
class MemoryChoice:
    """The memory policy and nodes of a plan, and why."""

    policy: MemoryPolicy
    nodes: tuple[int, ...]
    reasons: tuple[str, ...]


def plan_memory(
    topology: Topology, cpu_nodes: Sequence[int], allowed: Allowed, wanted: MemoryPolicy, *, override: bool = False
) -> MemoryChoice:
    """Memory on the chosen CPU nodes that have memory and are allowed, else the nearest allowed one.

    A memory policy someone already set (``allowed.mempolicy``: ``numactl --membind``...) is left
    alone like a narrowed affinity, unless ``override`` (the same switch that rebinds an affinity).
    """
    if wanted is MemoryPolicy.NONE:
        return MemoryChoice(MemoryPolicy.NONE, (), (Reason.of("memory_left_alone"),))
    if allowed.mempolicy is not None and not override:
        return MemoryChoice(MemoryPolicy.NONE, (), (Reason.of("memory_policy_set", held=str(allowed.mempolicy)),))
    choice = _plan_memory(topology, cpu_nodes, allowed, wanted)
    if allowed.mempolicy is not None and choice.policy is not MemoryPolicy.NONE:
        overridden = Reason.of("memory_policy_overridden", held=str(allowed.mempolicy))
        return MemoryChoice(choice.policy, choice.nodes, (overridden, *choice.reasons))
    return choice


def _plan_memory(topology: Topology, cpu_nodes: Sequence[int], allowed: Allowed, wanted: MemoryPolicy) -> MemoryChoice:
    def usable(node: NumaNode) -> bool:
        return node.has_memory and node.id in allowed.mems

    origins = [node for node_id in sorted(cpu_nodes) if (node := topology.node(node_id)) is not None]
    chosen = tuple(node.id for node in origins if usable(node))
    if chosen:
        reason = Reason.of("memory_on_nodes", policy=wanted.value, nodes=node_list(chosen))
        return MemoryChoice(wanted, chosen, (reason,))


    why = {"nodes": node_list(cpu_nodes), "mems": node_list(allowed.mems) or "none"}
    found = [nearest for origin in origins if (nearest := nearest_node(topology, origin, usable)) is not None]
    if not found:
        return MemoryChoice(MemoryPolicy.NONE, (), (Reason.of("memory_no_usable_node", **why),))
    best = min(found, key=lambda nearest: nearest.key())
    reason = Reason.of("memory_nearest", **why, policy=wanted.value, node=best.node, distance=best.phrase())
    return MemoryChoice(wanted, (best.node,), (reason,))
