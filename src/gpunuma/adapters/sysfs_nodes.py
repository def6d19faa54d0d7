"""NUMA nodes from ``/sys/devices/system/node``: ids, CPUs, memory and distances.

Read as the kernel's own readers (hwloc, libnuma) read them, so trees from old kernels and from
gathering tools work:

* ids: the ``online`` list, else the ``nodeN`` folders (an offline node has no folder);
* CPUs: ``cpulist``, else ``cpumap`` (the hex mask every kernel writes; hwloc reads only it), else the
  kernel's ``cpuN/nodeM`` links, else by elimination (every online CPU belongs to one node);
* memory: ``has_memory``, else each node's ``meminfo``;
* distances: one entry per online node in id order (``for_each_online_node``); a row of another
  length is matched against the other orders a kernel may have printed it in (every possible node,
  offline ones included; the node folders) and kept only when its own entry is the row's smallest
  (the local distance); a row that fits none leaves that node's distances unknown.

A CPU belongs to one node. Some old kernels (an SGI Altix's) list the same CPUs in several nodes that are
at the local distance of each other: those nodes are one place, read as one node (the lowest id with
memory), as hwloc keeps the first of them, with a ``sysfs_nodes_merged`` note. Lists that share only some
CPUs, or the same CPUs at different distances, are no layout at all: a
:class:`~gpunuma.errors.SysfsFormatError`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from gpunuma.adapters.files import HOST
from gpunuma.adapters.procfs import parse_cpulist, parse_cpumask, parse_idlist, parse_int, read_text, read_value
from gpunuma.adapters.sysfs_cpus import node_links, numbered
from gpunuma.core.cpuset import BLANK, CpuSet, node_list
from gpunuma.core.model import NumaNode
from gpunuma.core.numbers import decimal
from gpunuma.core.ports import KernelFiles
from gpunuma.core.reasons import Reason
from gpunuma.errors import SysfsFormatError, TopologyUnavailableError

#: The kernel's LOCAL_DISTANCE: a node's distance to itself.
LOCAL_DISTANCE = 10


def read_nodes(
    root: str | Path, online: CpuSet, notes: list[str], *, sizes: bool = True, files: KernelFiles = HOST
) -> tuple[NumaNode, ...]:
    """Every online node with its online CPUs, memory and distances; unknowns noted, never guessed.

    ``sizes=False`` leaves each node's ``memory_mb`` unknown and reads no ``meminfo`` where ``has_memory``
    says which nodes have memory (a plan never needs the sizes; each meminfo is a large kernel-made file).
    """
    node_dir = os.path.join(root, "sys/devices/system/node")
    if not files.is_dir(node_dir):
        notes.append(Reason.of("sysfs_no_numa", path=node_dir))
        memory_mb = _memtotal_mb(os.path.join(root, "proc/meminfo"), "MemTotal:", notes, files) if sizes else None
        return (NumaNode(id=0, cpus=online, has_memory=True, distances={0: LOCAL_DISTANCE}, memory_mb=memory_mb),)
    folders = numbered(node_dir, "node", files)
    ids = _online_nodes(node_dir, folders, notes, files)
    has_memory_path = os.path.join(node_dir, "has_memory")
    with_memory = _id_list(has_memory_path, files)
    if with_memory is None:
        notes.append(Reason.of("sysfs_has_memory_missing", path=has_memory_path))
    cpus_of = {node_id: _node_cpus(f"{node_dir}/node{node_id}/", online, files) for node_id in ids}
    twins = _same_cpus(node_dir, cpus_of)
    if any(cpus is None for cpus in cpus_of.values()):
        _settle_unknown_cpus(root, node_dir, cpus_of, online, notes, files)
    orders = _orders(node_dir, ids, folders, files)
    nodes = []
    for node_id in ids:
        folder = f"{node_dir}/node{node_id}/"
        cpus = cpus_of[node_id] or CpuSet()
        memory_mb = (
            _memtotal_mb(folder + "meminfo", f"Node {node_id} MemTotal:", notes, files)
            if sizes or with_memory is None
            else None
        )
        if with_memory is not None:
            has_memory = node_id in with_memory
        elif memory_mb is not None:
            has_memory = memory_mb > 0
        else:
            has_memory = bool(cpus)
            assumed = "sysfs_node_memory_assumed" if has_memory else "sysfs_node_no_memory_assumed"
            notes.append(Reason.of(assumed, node=node_id))
        distances = _distances(folder + "distance", node_id, ids, orders, notes, files)
        nodes.append(NumaNode(id=node_id, cpus=cpus, has_memory=has_memory, distances=distances, memory_mb=memory_mb))
    for group in twins:
        nodes = _merged(node_dir, nodes, group, notes)
    return tuple(nodes)


def _same_cpus(node_dir: str, cpus_of: dict[int, CpuSet | None]) -> list[tuple[int, ...]]:
    """The groups of nodes listing exactly the same CPUs (an old kernel's way); lists that share only some
    CPUs are a tree no kernel wrote (SysfsFormatError)."""
    listed = [(node_id, cpus) for node_id, cpus in cpus_of.items() if cpus]
    if sum(len(cpus.ids) for _, cpus in listed) == len(frozenset().union(*(cpus.ids for _, cpus in listed))):
        return []  # the kernel's case: each CPU counted once
    groups: dict[CpuSet, list[int]] = {}
    for index, (node_id, cpus) in enumerate(listed):
        for other, theirs in listed[:index]:
            if cpus != theirs and not cpus.isdisjoint(theirs):
                path = f"{node_dir}/node{node_id}/cpulist"
                shared = (cpus & theirs).to_list()
                raise SysfsFormatError(path, cpus.to_list(), f"CPUs {shared} are node {other}'s too")
        groups.setdefault(cpus, []).append(node_id)
    return [tuple(ids) for ids in groups.values() if len(ids) > 1]


def _merged(node_dir: str, nodes: list[NumaNode], group: tuple[int, ...], notes: list[str]) -> list[NumaNode]:
    """``nodes`` with the ``group`` listing the same CPUs read as one node, when they are one place: each at
    the local distance of the others and at the same distance from every other node."""
    members = [node for node in nodes if node.id in group]
    for node in members[1:]:
        first = members[0]
        one_place = (
            first.distances.get(node.id) == first.distances.get(first.id)
            and node.distances.get(first.id) == node.distances.get(node.id)
            and all(first.distances.get(other) == node.distances.get(other) for other in node.distances
                    if other not in group)
        )
        if not one_place:
            path = f"{node_dir}/node{node.id}/distance"
            raise SysfsFormatError(
                path, " ".join(str(d) for d in node.distances.values()),
                f"node {node.id} lists node {first.id}'s CPUs {first.cpus.to_list()} but lies at another distance",
            )
    kept = next((node for node in members if node.has_memory), members[0])
    dropped = {node.id for node in members} - {kept.id}
    notes.append(Reason.of(
        "sysfs_nodes_merged", nodes=node_list(group), cpus=kept.cpus.to_list(), kept=kept.id
    ))
    return [
        replace(n, distances={k: v for k, v in n.distances.items() if k not in dropped})
        for n in nodes
        if n.id not in dropped
    ]


def _online_nodes(node_dir: str, folders: list[int], notes: list[str], files: KernelFiles) -> tuple[int, ...]:
    path = os.path.join(node_dir, "online")
    text = read_value(path, files)
    if text is not None:
        return tuple(sorted(parse_idlist(path, text)))
    notes.append(Reason.of("sysfs_nodes_all_online", path=path))
    return tuple(folders)


def _id_list(path: str, files: KernelFiles) -> frozenset[int] | None:
    """The ids a node-state file (``has_memory``, ``has_cpu``) lists; None when it is missing or empty."""
    text = read_value(path, files)
    if text is None:
        return None
    return parse_idlist(path, text)


def _node_cpus(folder: str, online: CpuSet, files: KernelFiles) -> CpuSet | None:
    """A node's online CPUs from ``cpulist``, else ``cpumap``; None when neither is there.

    Both can be legitimately empty (a CPU-less node), so blank text is a value here. Old kernels'
    ``cpumap`` also listed offline CPUs: only online ones are kept.
    """
    for name, mask in (("cpulist", False), ("cpumap", True)):
        path = folder + name
        text = read_text(path, files)
        if text is None:
            continue
        if mask and not text.strip(BLANK):
            continue  # a mask is never empty (an empty node prints zero words): an unread copy
        return (parse_cpumask(path, text) if mask else parse_cpulist(path, text)) & online
    return None


def _settle_unknown_cpus(
    root: str | Path,
    node_dir: str,
    cpus_of: dict[int, CpuSet | None],
    online: CpuSet,
    notes: list[str],
    files: KernelFiles,
) -> None:
    """Fill in the nodes whose CPU files are missing, from ``has_cpu``, the CPU links, or elimination."""
    with_cpus = _id_list(os.path.join(node_dir, "has_cpu"), files)
    unknown = [node for node, cpus in cpus_of.items() if cpus is None]
    if with_cpus is not None:
        for node in unknown:
            if node not in with_cpus:
                cpus_of[node] = CpuSet()
        unknown = [node for node in unknown if node in with_cpus]
    known = CpuSet()
    for cpus in cpus_of.values():
        if cpus is not None:
            known = known | cpus
    orphans = online - known
    links = node_links(os.path.join(root, "sys/devices/system/cpu"), orphans, files)
    listed = node_list(unknown)
    if unknown and orphans and len(links) == len(orphans):
        for node in unknown:
            cpus_of[node] = CpuSet.of(cpu for cpu, linked in links.items() if linked == node)
        notes.append(Reason.of("sysfs_node_cpus_from_links", nodes=listed))
    elif len(unknown) == 1 or (unknown and not orphans):
        for node in unknown:
            cpus_of[node] = orphans if len(unknown) == 1 else CpuSet()
        notes.append(Reason.of("sysfs_node_cpus_unlisted", nodes=listed, cpus=orphans.to_list() or "none"))
    elif unknown:
        raise TopologyUnavailableError(
            f"{node_dir}: nodes {listed} have neither cpulist nor cpumap, and CPUs {orphans.to_list()} "
            "could belong to any of them (no cpuN/nodeM links in the tree)"
        )


def _orders(
    node_dir: str, ids: tuple[int, ...], folders: list[int], files: KernelFiles
) -> tuple[tuple[int, ...], ...]:
    """The node orders a distance row may follow, the kernel's own (online ids) first."""
    orders = [ids]
    path = os.path.join(node_dir, "possible")
    text = read_value(path, files)
    if text is not None:
        orders.append(tuple(sorted(parse_idlist(path, text))))
    orders.append(tuple(folders))
    return tuple(dict.fromkeys(orders))


def _distances(
    path: str,
    node_id: int,
    ids: tuple[int, ...],
    orders: Sequence[tuple[int, ...]],
    notes: list[str],
    files: KernelFiles,
) -> dict[int, int]:
    text = read_value(path, files)
    if text is None:
        notes.append(Reason.of("sysfs_distance_missing", path=path, node=node_id))
        return {node_id: LOCAL_DISTANCE}
    values = [parse_int(path, field) for field in text.strip(BLANK).split()]
    if any(value < 0 for value in values):
        raise SysfsFormatError(path, text, "a negative distance")
    if len(values) == len(ids):
        return dict(zip(ids, values, strict=True))
    # Another length: match the other orders a kernel may have printed the row in.
    for order in orders[1:]:
        if len(order) != len(values) or node_id not in order:
            continue
        row = dict(zip(order, values, strict=True))
        if row[node_id] != min(values):
            continue  # its own entry must be the local, smallest distance
        kept = {other: row[other] for other in ids if other in row}
        if len(kept) < len(ids):
            notes.append(Reason.of("sysfs_distance_partial", path=path, nodes=_missing(ids, kept)))
        return kept
    notes.append(Reason.of("sysfs_distance_unordered", path=path, count=len(values), online=len(ids), node=node_id))
    return {node_id: LOCAL_DISTANCE}


def _missing(ids: tuple[int, ...], kept: dict[int, int]) -> str:
    return CpuSet.of(node for node in ids if node not in kept).to_list()


def _memtotal_mb(path: str | Path, prefix: str, notes: list[str], files: KernelFiles) -> int | None:
    text = read_value(path, files)
    if text is None:
        notes.append(Reason.of("sysfs_meminfo_missing", path=str(path)))
        return None
    for line in text.strip(BLANK).splitlines():
        if line.startswith(prefix):
            value = line[len(prefix) :].split()
            if len(value) != 2 or value[1] != "kB" or decimal(value[0]) is None:
                raise SysfsFormatError(path, line, "not 'MemTotal: <n> kB'")
            return int(value[0]) // 1024
    raise SysfsFormatError(path, text, f"no {prefix!r} line")
