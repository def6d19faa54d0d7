"""Rule 1: which CPU node each GPU of a machine belongs to, with the reasons in plain words.

All GPUs are resolved together because GPUs without a single known node are spread by
their rank among the GPUs that report the same candidate nodes.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum

from gpunuma.core.cpuset import node_list
from gpunuma.core.model import Gpu, NumaNode, Topology
from gpunuma.core.planner.distance import nearest_node
from gpunuma.core.policy import Policy
from gpunuma.core.reasons import Reason


class Locality(str, Enum):
    """How a GPU's CPU node was found."""

    REPORTED = "reported"
    """The platform's ``numa_node`` is a node with CPUs."""
    NEAREST = "nearest"
    """The reported node (or NVML's GPU-memory node) has no CPUs; the nearest CPU node was taken."""
    SINGLE = "single"
    """``numa_node`` is unknown, but the local CPUs or NVML memory affinity name exactly one node."""
    SPREAD = "spread"
    """Several candidate nodes: GPUs sharing them are split over them by rank."""
    UNKNOWN = "unknown"
    """No usable locality: the GPU is not bound."""


@dataclass(frozen=True, slots=True)
class NodeChoice:
    """The CPU node one GPU resolves to (None when unknown) and why."""

    gpu: int
    label: str
    node: int | None
    locality: Locality
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Candidates:
    """Rule 1c input: the CPU nodes a GPU of unknown ``numa_node`` may belong to."""

    nodes: tuple[int, ...]
    #: How the candidates were found, completing "numa_node -1 and ...".
    source: Reason | None
    #: The same evidence, worded for when it names every node.
    every: Reason
    #: What the GPU's numa_node said: -1, or a node that does not exist or has no CPUs.
    said: Reason


def gpu_nodes(
    topology: Topology, policy: Policy = Policy(), gpus: Collection[int] | None = None
) -> dict[int, NodeChoice]:
    """Resolve every GPU of ``topology`` (or only those indexed ``gpus``) to its CPU node (rule 1), keyed by index.

    Spreading (rule 1c) still ranks every GPU of unknown node, so a subset gets the same answers.
    """
    wanted = None if gpus is None else frozenset(gpus)
    choices: dict[int, NodeChoice] = {}
    pending: dict[int, tuple[_Candidates, tuple[str, ...]]] = {}
    for gpu in sorted(topology.gpus, key=lambda g: g.index):
        if wanted is not None and gpu.index not in wanted and _resolves_directly(topology, gpu):
            continue  # settled by rules 1a/1b alone and not asked for: skip building its reasons
        choice, notes = _direct(topology, gpu)
        if choice is not None:
            choices[gpu.index] = choice
        else:
            pending[gpu.index] = (_candidates(topology, gpu), notes)

    every_node = tuple(node.id for node in topology.cpu_nodes)
    # Key: (nodes to spread over, whether the GPUs reported no usable locality).
    groups: dict[tuple[tuple[int, ...], bool], list[int]] = {}
    for index, (candidates, notes) in pending.items():
        gpu = _gpu(topology, index)
        spread_over, unknown = _spread_set(candidates, every_node, policy)
        if len(candidates.nodes) == 1:
            node = candidates.nodes[0]
            reason = Reason.of("gpu_single_candidate", gpu=gpu.label, said=candidates.said, evidence=candidates.source,
                               node=node)
            choices[index] = NodeChoice(index, gpu.label, node, Locality.SINGLE, (*notes, reason))
        elif spread_over:
            groups.setdefault((spread_over, unknown), []).append(index)
        else:
            reason = Reason.of("gpu_locality_unknown", gpu=gpu.label, said=candidates.said, evidence=candidates.every)
            choices[index] = NodeChoice(index, gpu.label, None, Locality.UNKNOWN, (*notes, reason))

    for (nodes, unknown), members in groups.items():
        count = len(members)
        for rank, index in enumerate(sorted(members)):
            gpu = _gpu(topology, index)
            candidates, notes = pending[index]
            node = nodes[rank * len(nodes) // count]
            if not unknown:
                reason = Reason.of("gpu_spread", gpu=gpu.label, said=candidates.said, evidence=candidates.source,
                                   nodes=node_list(nodes), count=count, rank=rank, node=node)
            else:
                reason = Reason.of("gpu_spread_unknown", gpu=gpu.label, said=candidates.said,
                                   evidence=candidates.every, count=count, rank=rank, node=node)
            choices[index] = NodeChoice(index, gpu.label, node, Locality.SPREAD, (*notes, reason))
    return {index: choice for index, choice in sorted(choices.items()) if wanted is None or index in wanted}


def _gpu(topology: Topology, index: int) -> Gpu:
    gpu = topology.gpu(index)
    assert gpu is not None  # indices come from topology.gpus
    return gpu


def _resolves_directly(topology: Topology, gpu: Gpu) -> bool:
    """Whether :func:`_direct` settles ``gpu``, without building its reasons."""
    origin = gpu.numa_node if gpu.numa_node is not None else gpu.memory_node
    node = topology.node(origin) if origin is not None else None
    # A CPU-less node resolves to the nearest node with CPUs, which exists when any node has CPUs.
    return node is not None and (node.has_cpus or bool(topology.cpu_nodes))


def _direct(topology: Topology, gpu: Gpu) -> tuple[NodeChoice | None, tuple[str, ...]]:
    """Rules 1a and 1b: a reported node, or the CPU node nearest a CPU-less or GPU-memory node."""
    notes: list[str] = []
    if gpu.numa_node is not None:
        node = topology.node(gpu.numa_node)
        if node is None:
            notes.append(Reason.of("gpu_node_not_listed", gpu=gpu.label, reported=gpu.numa_node))
        elif node.has_cpus:
            reason = Reason.of("gpu_on_node", gpu=gpu.label, node=node.id)
            return NodeChoice(gpu.index, gpu.label, node.id, Locality.REPORTED, (reason,)), ()
        else:
            choice = _nearest_with_cpus(topology, gpu, node, "gpu_node_cpuless_nearest", notes, reported=node.id)
            if choice is not None:
                return choice, ()
            if not notes:
                notes.append(Reason.of("gpu_node_cpuless_no_cpus", gpu=gpu.label, reported=node.id))
    elif gpu.memory_node is not None:
        node = topology.node(gpu.memory_node)
        if node is None:
            notes.append(Reason.of("gpu_memory_node_not_listed", gpu=gpu.label, memory_node=gpu.memory_node))
        else:
            choice = _nearest_with_cpus(topology, gpu, node, "gpu_memory_node_nearest", notes, memory_node=node.id)
            if choice is not None:
                return choice, ()
    return None, tuple(notes)


def _nearest_with_cpus(
    topology: Topology, gpu: Gpu, node: NumaNode, code: str, notes: list[str], **why: int
) -> NodeChoice | None:
    """Rule 1b: the CPU node nearest ``node`` by its distance row; reason ``code`` says from where.

    Several CPU nodes at that same distance make the choice a guess: none is made (a note says why),
    and the other evidence (local CPUs, NVML's affinity) decides.
    """
    found = nearest_node(topology, node, lambda n: n.has_cpus)
    if found is None:
        return None
    tied = [n.id for n in topology.cpu_nodes if n.id != found.node and node.distance_to(n.id) == found.distance]
    if tied and found.distance is not None:
        nodes = ", ".join(str(n) for n in sorted((found.node, *tied)))
        notes.append(Reason.of("gpu_nearest_tie", gpu=gpu.label, node=node.id, nodes=nodes, distance=found.distance))
        return None
    reason = Reason.of(code, gpu=gpu.label, node=found.node, distance=found.phrase(), **why)
    return NodeChoice(gpu.index, gpu.label, found.node, Locality.NEAREST, (reason,))


def _candidates(topology: Topology, gpu: Gpu) -> _Candidates:
    """Rule 1c: CPU nodes meeting the GPU's local CPUs, or else named by NVML's memory affinity."""
    cpu_nodes = topology.cpu_nodes
    said = _said(topology, gpu)
    if gpu.local_cpus:
        nodes = tuple(node.id for node in cpu_nodes if not node.cpus.isdisjoint(gpu.local_cpus))
        if nodes:
            # With numa_node -1 the kernel shows every CPU as local: that says nothing.
            every = (
                Reason.of("evidence_local_cpus_all")
                if topology.all_cpus <= gpu.local_cpus
                else Reason.of("evidence_local_cpus_span", cpus=gpu.local_cpus.to_list())
            )
            return _Candidates(nodes, Reason.of("evidence_local_cpus", cpus=gpu.local_cpus.to_list()), every, said)
    cpu_ids = {node.id for node in cpu_nodes}
    affinity = tuple(sorted(set(gpu.affinity_nodes) & cpu_ids))
    if affinity:
        return _Candidates(affinity, Reason.of("evidence_nvml_affinity"), Reason.of("evidence_nvml_affinity_all"), said)
    return _Candidates((), None, Reason.of("evidence_none"), said)


def _said(topology: Topology, gpu: Gpu) -> Reason:
    """What ``gpu``'s numa_node said, for rule 1c's reasons: -1, or a node that does not exist or has no CPUs."""
    if gpu.numa_node is None:
        # The sysfs reader notes a numa_node file that is missing or empty (a captured tree, an odd kernel).
        if any(getattr(note, "code", None) == "sysfs_gpu_node_unknown" for note in gpu.notes):
            return Reason.of("said_no_node_file")
        return Reason.of("said_no_node")
    if topology.node(gpu.numa_node) is None:
        return Reason.of("said_node_not_listed", reported=gpu.numa_node)
    return Reason.of("said_node_cpuless", reported=gpu.numa_node)


def _spread_set(
    candidates: _Candidates, every_node: tuple[int, ...], policy: Policy
) -> tuple[tuple[int, ...], bool]:
    """The nodes to spread over (rule 1c), () when the GPU stays unknown; and whether it reported nothing usable."""
    if 1 < len(candidates.nodes) < len(every_node):
        return candidates.nodes, False
    if len(candidates.nodes) != 1 and policy.spread_unknown and every_node:
        return every_node, True
    return (), True
