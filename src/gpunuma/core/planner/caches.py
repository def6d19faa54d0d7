"""Rule 2's cache scope: one last-level cache domain of the GPU's node per GPU, by rank."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.model import Gpu, NumaNode, Topology
from gpunuma.core.plan import Allowed
from gpunuma.core.planner.placement import Placement
from gpunuma.core.reasons import Reason


def cache_domains(topology: Topology, node: NumaNode, allowed: CpuSet) -> list[CpuSet]:
    """The node's allowed CPUs, grouped by last-level cache, ordered by lowest CPU.

    A domain that spans several nodes (one L3 per socket with SNC on) counts only its part on ``node``.
    """
    domains: list[CpuSet] = []
    for cache in topology.caches:
        part = cache.cpus & node.cpus & allowed
        if part and part not in domains:
            domains.append(part)
    return sorted(domains, key=lambda domain: min(domain.ids))


def cache_scope(
    topology: Topology,
    targets: Sequence[int],
    owned: Sequence[Gpu],
    placements: Mapping[int, Placement],
    allowed: Allowed,
    reasons: list[str],
) -> tuple[CpuSet, tuple[int, ...]]:
    """Each GPU of the process takes one cache domain of its node: rank ``r`` of ``n`` GPUs gets
    domain ``r * d // n`` of ``d``, so GPUs get distinct domains while there are enough of them.
    """
    cpus = CpuSet()
    for node_id in targets:
        node = topology.node(node_id)
        assert node is not None  # targets come from the topology's own nodes
        node_allowed = node.cpus & allowed.cpus
        group = sorted(index for index, placement in placements.items() if placement.node == node_id)
        mine = [gpu for gpu in owned if gpu.index in group]
        domains = cache_domains(topology, node, allowed.cpus)
        if not mine or not domains:
            code = "cache_no_gpu_on_node" if not mine else "cache_unknown"
            reasons.append(Reason.of(code, node=node_id, cpus=node_allowed.to_list()))
            cpus = cpus | node_allowed
            continue
        level = max(cache.level for cache in topology.caches)
        count, total = len(group), len(domains)
        for gpu in mine:
            rank = group.index(gpu.index)
            position = rank * total // count if count <= total else rank % total
            domain = domains[position]
            code = "cache_domain_shared" if total == 1 else "cache_domain_overlap" if count > total else "cache_domain"
            reasons.append(
                Reason.of(code, gpu=gpu.label, rank=rank, count=count, node=node_id, level=level,
                          position=position, domains=total, cpus=domain.to_list())  # fmt: skip
            )
            cpus = cpus | domain
    return cpus, tuple(targets)
