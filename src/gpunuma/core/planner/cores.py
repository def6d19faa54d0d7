"""Whole cores: split into contiguous disjoint blocks (exclusive scope, shares) or kept back (reserve)."""

from __future__ import annotations

from dataclasses import dataclass

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.model import Topology


@dataclass(frozen=True, slots=True)
class CoreBlock:
    """One rank's cores: the CPUs of cores ``first``..``last`` (by position), and whether blocks overlap."""

    cpus: CpuSet
    first: int
    last: int
    cores: int
    overlapping: bool


def physical_cores(topology: Topology, cpus: CpuSet, allowed: CpuSet) -> list[CpuSet]:
    """The cores among ``cpus`` with at least one allowed CPU, each its sorted sibling set, by lowest CPU.

    A CPU the topology does not describe counts as a core of its own.
    """
    wanted, usable = cpus.ids, allowed.ids
    memo = topology.core_lists
    known = memo.get((wanted, usable))
    if known is not None:
        return list(known)
    core_ids = topology.core_ids
    seen: set[int] = set()
    cores: list[CpuSet] = []
    # Ascending ids: a core is met first at its lowest CPU, so the list comes out in the documented order.
    for cpu_id in sorted(wanted):
        if cpu_id in seen:
            continue
        core = core_ids.get(cpu_id, frozenset((cpu_id,))) & wanted
        seen.update(core)
        if not core.isdisjoint(usable):
            cores.append(CpuSet._trusted(frozenset(core)))
    memo[(wanted, usable)] = cores
    return list(cores)


def block_of(cores: list[CpuSet], rank: int, count: int, allowed: CpuSet) -> CoreBlock:
    """Rank ``rank`` of ``count``'s contiguous block of ``cores`` (sizes differ by at most one core).

    With more ranks than cores, rank ``r`` gets core ``r % len(cores)`` and the blocks overlap.
    """
    total = len(cores)
    if count > total:
        position = rank % total
        return CoreBlock(cores[position] & allowed, position, position, total, overlapping=True)
    first = rank * total // count
    end = (rank + 1) * total // count
    cpus = CpuSet()
    for core in cores[first:end]:
        cpus = cpus | core
    return CoreBlock(cpus & allowed, first, end - 1, total, overlapping=False)


def reserved_cpus(topology: Topology, count: int) -> CpuSet:
    """The CPUs of the first ``count`` cores (by lowest CPU) of every node with CPUs."""
    reserved = CpuSet()
    if count <= 0:
        return reserved
    for node in topology.cpu_nodes:
        for core in physical_cores(topology, node.cpus, node.cpus)[:count]:
            reserved = reserved | core
    return reserved
