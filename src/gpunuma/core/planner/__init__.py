"""The pure binding decision: a topology, the GPUs a process owns and what it is allowed -> a plan.

No I/O. The same inputs always give the same plan, and every plan says why in plain words.

Rules:

1. **A GPU's CPU node**, in order:
   a. ``numa_node`` known and that node has CPUs: that node.
   b. ``numa_node`` known but CPU-less, or else NVML's GPU-memory node (``memory_node``, GH200/GB200)
      known: the nearest node with CPUs by that node's distance row (several at that same distance are
      no choice: rule 1c decides).
   c. ``numa_node`` unknown (the kernel's -1): the candidates are the CPU nodes meeting the GPU's
      local CPUs, or else the nodes of NVML's memory affinity. One candidate: it. Several, but not
      every CPU node: the GPUs sharing that candidate set are ranked by index and split into
      contiguous blocks over the candidates (``rank * len(candidates) // count``). Every CPU node
      (a VM whose local CPUs are all CPUs) or no information: no binding ("not guessing"), unless
      ``policy.spread_unknown``, which spreads such GPUs over every CPU node the same way.

2. **CPU scope** (``policy.cpu_scope``): ``node`` takes the allowed CPUs of the node; ``socket`` the
   allowed CPUs of every node on the node's socket(s); ``exclusive`` splits the node's physical cores
   that have an allowed CPU (SMT siblings together, ordered by lowest CPU) into contiguous disjoint
   shares among the GPUs on that node, ranked by index (share sizes differ by at most one core).
   With more GPUs than cores, rank ``r`` gets core ``r % cores`` and the shares overlap. ``cache``
   gives each GPU one last-level cache domain of its node (an EPYC CCD; on Intel one L3 spans the node
   or socket): rank ``r`` of ``n`` GPUs takes domain ``r * d // n`` of ``d``, distinct while ``n <= d``
   (:mod:`gpunuma.core.planner.caches`); without cache domains in the topology it is ``node``.
3. **Memory** (``policy.memory``): ``bind``/``preferred`` use the chosen CPU nodes that have memory
   and are in the allowed memory nodes; if none, the nearest allowed node with memory; if none at all,
   the memory policy is left alone. ``none`` leaves memory alone. A memory policy someone already set
   (``allowed.mempolicy``: ``numactl --membind``/``--interleave`` with no CPU option) is left alone
   like a narrowed affinity (rule 7), unless ``policy.override_affinity``.
4. **Several GPUs** on different nodes: the union of their nodes (``exclusive``: of their shares).
5. **Cgroup**: planned CPUs are always allowed CPUs. A node partly allowed is bound to its allowed
   part. A node with no allowed CPU: ``on_disallowed=nearest`` moves to the nearest node with allowed
   CPUs, ``none`` does not bind.
6. **Explicit node** (``node=``): it must exist, have CPUs and have an allowed CPU, else
   :class:`~gpunuma.errors.InvalidNodeError`. It wins over the GPUs' nodes.
7. **Narrowed affinity** (taskset, numactl, a batch scheduler): no binding unless
   ``policy.override_affinity``, which rebinds within the cgroup's CPUs.
8. No GPU and no node: :class:`~gpunuma.errors.PlanError`.
9. **A plan that narrows nothing** (every CPU of the machine, and memory on every node that has memory
   or left alone: a one-node VM, all eight GPUs of a DGX) is not a binding: no binding, with the reason
   ``spans_everything``. An explicit ``node=`` is bound even then: the caller asked for exactly that.
10. **Reserve** (``policy.reserve=K``): the first ``K`` cores (by lowest CPU) of every node leave the
    allowed CPUs before anything else, so no scope, share or fallback ever plans them (``reserved_cores``).
11. **Share** (``policy.share=(i, n)``): after the scope, the planned CPUs split into ``n`` contiguous
    blocks of whole cores (SMT siblings together, sizes differing by at most one core); the plan keeps
    block ``i`` and the nodes it lies on. More parts than cores overlap, one core each (``share_overlap``).
12. **NICs**: the plan carries the RDMA NICs nearest its GPUs (:mod:`gpunuma.core.model`).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from gpunuma.core.cpuset import CpuSet, node_list
from gpunuma.core.model import Gpu, Nic, NumaNode, Topology, nearest_nics
from gpunuma.core.plan import Allowed, BindingPlan
from gpunuma.core.planner.caches import cache_scope
from gpunuma.core.planner.cores import block_of, physical_cores, reserved_cpus
from gpunuma.core.planner.locality import Locality, NodeChoice, gpu_nodes
from gpunuma.core.planner.memory import plan_memory
from gpunuma.core.planner.placement import Placement, disallowed_reason, place_gpus
from gpunuma.core.policy import CpuScope, MemoryPolicy, Policy, Share
from gpunuma.core.reasons import Reason
from gpunuma.errors import InvalidNodeError, PlanError

__all__ = [
    "Locality", "NodeChoice", "Placement", "TopologyNeeds", "explicit_node_id", "gpu_nodes", "gpu_placements",
    "plan_binding", "topology_needs",
]


@dataclass(frozen=True, slots=True)
class TopologyNeeds:
    """What the rules read of a topology, so a source reads no more (a node-scope bind of a worker reads ~10 files).

    ``layout``: each CPU's core and socket and the last-level cache domains; ``gpus``: the PCI bus (GPUs, RDMA
    NICs and their PCIe ancestry).
    """

    layout: bool = True
    gpus: bool = True


def topology_needs(policy: Policy, *, node_only: bool) -> TopologyNeeds:
    """What a plan under ``policy`` reads: everything for a GPU's plan (its NICs, and whole cores split among the
    processes of the GPUs sharing its node for their OpenMP places); for an explicit node and no GPU (rule 6) no
    PCI bus, and the layout only for the socket, exclusive and cache scopes, shares and reserved cores."""
    if not node_only:
        return TopologyNeeds()
    layout = policy.cpu_scope is not CpuScope.NODE or policy.share is not None or policy.reserve > 0
    return TopologyNeeds(layout=layout, gpus=False)


def gpu_placements(topology: Topology, allowed: Allowed, policy: Policy = Policy()) -> dict[int, Placement]:
    """Every GPU's node once the cgroup is applied (rules 1 and 5), keyed by GPU index.

    Exclusive shares rank GPUs within these nodes, so every rank of a job agrees on them.
    """
    allowed, _ = _without_reserved(topology, allowed, policy)
    return place_gpus(topology, gpu_nodes(topology, policy), allowed, policy)


def _without_reserved(topology: Topology, allowed: Allowed, policy: Policy) -> tuple[Allowed, tuple[str, ...]]:
    """``allowed`` less the reserved cores (``policy.reserve``), and the reason saying which they are."""
    if not policy.reserve:
        return allowed, ()

    reserved = reserved_cpus(topology, policy.reserve)
    reason = Reason.of("reserved_cores", reserve=policy.reserve, cpus=reserved.to_list() or "none")
    kept = replace(allowed, cpus=allowed.cpus - reserved, affinity=allowed.affinity - reserved,
                   reserved=allowed.reserved | (allowed.cpus & reserved))
    return kept, (reason,)


def _plan_nics(topology: Topology, owned: Sequence[Gpu]) -> tuple[Nic, ...]:
    """The nearest NICs of the process's GPUs, GPU by GPU, each NIC once."""
    if not topology.nics:
        return ()

    chosen: list[Nic] = []
    for gpu in owned:
        for near in nearest_nics(topology, gpu):
            if near.nic not in chosen:
                chosen.append(near.nic)
    return tuple(chosen)


def _placed(
    topology: Topology, owned: Sequence[Gpu], allowed: Allowed, policy: Policy
) -> tuple[Mapping[int, NodeChoice], Mapping[int, Placement]]:
    """Rules 1 and 5 for the GPUs the plan ranks: none without a GPU of its own (an explicit node only)."""
    if not owned:
        return {}, {}

    # Exclusive and cache scopes rank every GPU on a node; the others need only this process's GPUs.
    every_gpu = policy.cpu_scope in (CpuScope.EXCLUSIVE, CpuScope.CACHE)
    choices = gpu_nodes(topology, policy, None if every_gpu else [gpu.index for gpu in owned])
    return choices, place_gpus(topology, choices, allowed, policy)


def _share(
    topology: Topology, cpus: CpuSet, nodes: tuple[int, ...], share: Share, reasons: list[str]
) -> tuple[CpuSet, tuple[int, ...]]:
    """This process's part of the planned CPUs: whole cores, SMT siblings together, by lowest CPU."""
    cores = physical_cores(topology, cpus, cpus)
    block = block_of(cores, share.index, share.count, cpus)
    values = {"index": share.index, "count": share.count, "cores": block.cores, "first": block.first,
              "cpus": block.cpus.to_list()}  # fmt: skip
    if block.overlapping:
        reasons.append(Reason.of("share_overlap", **values))
    else:
        reasons.append(Reason.of("share_part", **values, last=block.last))
    kept = tuple(node_id for node_id in nodes if not _node(topology, node_id).cpus.isdisjoint(block.cpus))
    return block.cpus, kept


def plan_binding(
    topology: Topology,
    gpus: Sequence[int],
    allowed: Allowed,
    policy: Policy = Policy(),
    *,
    node: int | None = None,
) -> BindingPlan:
    """Plan where a process owning physical GPUs ``gpus`` (or pinned to ``node``) should run.

    Raises :class:`PlanError` for a GPU index not in the topology or an empty request, and
    :class:`InvalidNodeError` for an explicit node that does not exist, has no CPUs or is not allowed.
    """
    owned = _owned_gpus(topology, gpus)
    if not owned and node is None:
        raise PlanError("nothing to bind to: no GPU and no node given")
    narrowed_affinity = allowed.affinity_narrowed  # judged before reserved cores leave the sets
    allowed, reserve_reasons = _without_reserved(topology, allowed, policy)
    explicit = _explicit_node(topology, node, allowed, policy) if node is not None else None

    choices, placements = _placed(topology, owned, allowed, policy)
    reasons: list[str] = list(reserve_reasons)
    nics = _plan_nics(topology, owned)
    for gpu in owned:
        source = choices[gpu.index] if explicit is not None else placements[gpu.index]
        reasons.extend(source.reasons)

    def no_binding(why: Reason | None = None) -> BindingPlan:
        return BindingPlan(
            gpus=tuple(gpu.index for gpu in owned),
            nodes=(),
            cpus=CpuSet(),
            memory_policy=MemoryPolicy.NONE,
            memory_nodes=(),
            reasons=(*reasons, why) if why else tuple(reasons),
            policy=policy,
            gpu_labels=tuple(gpu.label for gpu in owned),
            nics=nics,
        )

    if narrowed_affinity:
        affinity = allowed.affinity.to_list()
        if not policy.override_affinity:
            return no_binding(Reason.of("affinity_narrowed", affinity=affinity))
        reasons.append(Reason.of("affinity_overridden", affinity=affinity, cpus=allowed.cpus.to_list()))

    if explicit is not None:
        reasons.append(Reason.of("explicit_node_over_gpus" if owned else "explicit_node", node=explicit.id))
        targets: tuple[int, ...] = (explicit.id,)
    else:
        targets = _gpu_targets(owned, placements, reasons, policy)
        if not targets:
            return no_binding(None if len(owned) == 1 else Reason.of("no_gpu_placeable", gpus=_indices(owned)))

    if policy.cpu_scope is CpuScope.SOCKET:
        cpus, nodes = _socket_scope(topology, targets, allowed, reasons)
    elif policy.cpu_scope is CpuScope.EXCLUSIVE:
        cpus, nodes = _exclusive_scope(topology, targets, owned, placements, allowed, reasons)
    elif policy.cpu_scope is CpuScope.CACHE:
        cpus, nodes = cache_scope(topology, targets, owned, placements, allowed, reasons)
    else:
        cpus, nodes = _node_scope(topology, targets, allowed, reasons)
    if policy.share is not None and cpus:
        cpus, nodes = _share(topology, cpus, nodes, policy.share, reasons)

    memory = plan_memory(topology, nodes, allowed, policy.memory, override=policy.override_affinity)
    if explicit is None and _changes_nothing(topology, cpus, memory.policy, memory.nodes):
        return no_binding(Reason.of("spans_everything", nodes=node_list(nodes), cpus=str(cpus)))
    if explicit is None:
        threads, places = _threads(topology, owned, nodes, cpus, allowed, placements, reasons, policy)
    else:  # who else runs on a node named by hand is unknown: children get no places of their own
        threads, places = None, CpuSet()
    elsewhere = _not_on_their_node(owned, placements, nodes, explicit, reasons)
    return BindingPlan(
        gpus=tuple(gpu.index for gpu in owned),
        nodes=nodes,
        cpus=cpus,
        memory_policy=memory.policy,
        memory_nodes=memory.nodes,
        reasons=(*reasons, *memory.reasons),
        policy=policy,
        gpu_labels=tuple(gpu.label for gpu in owned),
        nics=nics,
        threads=threads,
        places=places,
        elsewhere=elsewhere,
    )


def _not_on_their_node(
    owned: Sequence[Gpu],
    placements: Mapping[int, Placement],
    nodes: tuple[int, ...],
    explicit: NumaNode | None,
    reasons: list[str],
) -> tuple[int, ...]:
    """The GPUs whose own CPU node (rule 1) is not among the planned ``nodes``, with a reason saying why.

    The cgroup or the reserve moved the binding to the nearest node (rule 5), or a node was named explicitly:
    the process is bound, but not local to its GPU.
    """
    away = [gpu for gpu in owned if (own := placements[gpu.index].gpu_node) is not None and own not in nodes]
    for gpu in away:
        placement = placements[gpu.index]
        if explicit is not None:
            why: str = Reason.of("explicit_node", node=explicit.id)
        else:
            why = placement.reasons[-1] if placement.reasons else Reason.of("note", text="its node was not planned")
        reasons.append(Reason.of("not_on_gpu_node", gpu=gpu.label, own=placement.gpu_node, nodes=node_list(nodes),
                                 why=why))
    return tuple(gpu.index for gpu in away)


def _threads(
    topology: Topology,
    owned: Sequence[Gpu],
    nodes: tuple[int, ...],
    cpus: CpuSet,
    allowed: Allowed,
    placements: Mapping[int, Placement],
    reasons: list[str],
    policy: Policy,
) -> tuple[int | None, CpuSet | None]:
    """This process's part of CPUs that other GPUs' processes are planned on too (node and socket scopes).

    One process per GPU: every GPU placed on the planned nodes (rule 5's fallback included) gets the same
    number of threads, so four processes on a 112-CPU node run 28 each, not 112 each, and its own block of
    whole cores for OpenMP places (rank by GPU index among them, as the exclusive scope ranks), so no two
    of them stack their threads on the same CPUs. Scopes that split the CPUs already (exclusive, cache, a
    share) and a process alone on its CPUs give None for both: one thread and one place per planned CPU.
    """
    if policy.share is not None or policy.cpu_scope not in (CpuScope.NODE, CpuScope.SOCKET) or not owned:
        return None, None
    planned = set(nodes)
    every = _placed_nodes(topology, allowed, placements, policy)
    sharing = sorted(index for index, node in every.items() if node in planned)
    owned_indices = {gpu.index for gpu in owned}
    ranks = [rank for rank, index in enumerate(sharing) if index in owned_indices]
    mine = len(ranks) or 1
    if len(sharing) <= mine:
        return None, None

    threads = max(1, len(cpus) * mine // len(sharing))
    cores = physical_cores(topology, cpus, cpus)
    places = CpuSet()
    for rank in ranks:
        places = places | block_of(cores, rank, len(sharing), cpus).cpus
    reasons.append(Reason.of("threads_shared", threads=threads, cpus=len(cpus), gpus=len(sharing), mine=mine,
                             places=places.to_list() or "none"))
    return threads, places


def _placed_nodes(
    topology: Topology, allowed: Allowed, placements: Mapping[int, Placement], policy: Policy
) -> dict[int, int | None]:
    """The node every GPU's process is planned on: ``placements`` where made, else rules 1 and 5 for the rest.

    A GPU on its own allowed node with CPUs (the common case) is settled directly; only the others (unknown,
    CPU-less or disallowed nodes) go through the full rules, whose reasons this plan does not keep.
    """
    found: dict[int, int | None] = {index: place.node for index, place in placements.items()}
    rest = []
    for gpu in topology.gpus:
        if gpu.index in found:
            continue
        node = topology.node(gpu.numa_node) if gpu.numa_node is not None else None
        if node is not None and node.has_cpus and not node.cpus.isdisjoint(allowed.cpus):
            found[gpu.index] = node.id
        else:
            rest.append(gpu.index)
    if rest:
        choices = gpu_nodes(topology, policy, rest)
        found.update({index: place.node for index, place in place_gpus(topology, choices, allowed, policy).items()})
    return found


def _changes_nothing(
    topology: Topology, cpus: CpuSet, memory: MemoryPolicy, memory_nodes: tuple[int, ...]
) -> bool:
    """Rule 9: every CPU of the machine and every node with memory (or memory left alone) binds nothing."""
    every_memory_node = {node.id for node in topology.nodes if node.has_memory}
    covers_memory = memory is MemoryPolicy.NONE or set(memory_nodes) >= every_memory_node
    return cpus >= topology.all_cpus and covers_memory


def _indices(gpus: Sequence[Gpu]) -> str:
    return ", ".join(str(gpu.index) for gpu in gpus)


def _owned_gpus(topology: Topology, gpus: Sequence[int]) -> tuple[Gpu, ...]:
    """The process's GPUs, by ascending index; rule 8's companion check of unknown indices."""
    owned: list[Gpu] = []
    for index in sorted(set(gpus)):
        gpu = topology.gpu(index)
        if gpu is None:
            known = node_list(g.index for g in topology.gpus) or "none"
            raise PlanError(f"GPU {index} is not in the topology (GPUs: {known})")
        owned.append(gpu)
    return tuple(owned)


def explicit_node_id(node: object) -> int:
    """A node id as a caller passes it (an int, or an integer type such as numpy's), else InvalidNodeError.

    ``None``, ``"1"``, ``1.0`` and ``True`` never name a node: say so rather than "node 1 does not exist", and
    never read ``None`` as "no node given" where a node was required (``bind_to_node``).
    """
    if isinstance(node, bool) or not hasattr(type(node), "__index__"):
        raise InvalidNodeError(node, f"a node id is an int, not {type(node).__name__}")
    return operator.index(node)  # type: ignore[arg-type]


def _explicit_node(topology: Topology, node_id: int, allowed: Allowed, policy: Policy) -> NumaNode:
    """Rule 6: the requested node, or InvalidNodeError saying what is wrong with it."""
    node_id = explicit_node_id(node_id)
    node = topology.node(node_id)
    if node is None:
        known = node_list(n.id for n in topology.nodes) or "none"
        raise InvalidNodeError(node_id, f"node {node_id} does not exist; nodes are {known}")
    if not node.has_cpus:
        if any(gpu.memory_node == node_id for gpu in topology.gpus):
            kind = " (GPU memory)"
        elif node.has_memory:
            kind = " (memory only)"
        else:
            kind = ""
        raise InvalidNodeError(node_id, f"node {node_id} has no CPUs{kind}")
    if node.cpus.isdisjoint(allowed.cpus):
        if policy.reserve and len(physical_cores(topology, node.cpus, node.cpus)) <= policy.reserve:
            raise InvalidNodeError(node_id, f"reserve={policy.reserve} keeps every core of node {node_id}")

        raise InvalidNodeError(node_id, disallowed_reason(node, allowed, reserve=policy.reserve))
    return node


def _gpu_targets(
    owned: Sequence[Gpu], placements: Mapping[int, Placement], reasons: list[str], policy: Policy
) -> tuple[int, ...]:
    """The nodes the process's GPUs were placed on (rule 4), noting GPUs left out."""
    placed = [gpu for gpu in owned if placements[gpu.index].node is not None]
    targets = tuple(sorted({node for gpu in placed if (node := placements[gpu.index].node) is not None}))
    if placed and len(placed) < len(owned):
        for gpu in owned:
            if placements[gpu.index].node is None:
                reasons.append(Reason.of("gpu_left_out", gpu=gpu.label, placed=_indices(placed)))
    if len(targets) > 1:
        what = "shares" if policy.cpu_scope is CpuScope.EXCLUSIVE else "nodes"
        reasons.append(Reason.of("gpus_union", gpus=_indices(placed), nodes=node_list(targets), what=what))
    return targets


def _partial(node: NumaNode, allowed: Allowed, reasons: list[str]) -> CpuSet:
    """The allowed CPUs of ``node``, noting when the cgroup allows only part of it (rule 5).

    CPUs the reserve took are the reserve's doing (reason ``reserved_cores``), not the cgroup's.
    """
    part = node.cpus & allowed.cpus
    by_cgroup = node.cpus & allowed.cgroup_cpus
    if part and by_cgroup != node.cpus:
        reason = Reason.of("node_partly_allowed", allowed_count=len(by_cgroup), node=node.id, total=len(node.cpus))
        if reason not in reasons:
            reasons.append(reason)
    return part


def _node(topology: Topology, node_id: int) -> NumaNode:
    node = topology.node(node_id)
    assert node is not None  # targets come from the topology's own nodes
    return node


def _node_scope(
    topology: Topology, targets: Sequence[int], allowed: Allowed, reasons: list[str]
) -> tuple[CpuSet, tuple[int, ...]]:
    cpus = CpuSet()
    for node_id in targets:
        cpus = cpus | _partial(_node(topology, node_id), allowed, reasons)
    return cpus, tuple(targets)


def _socket_scope(
    topology: Topology, targets: Sequence[int], allowed: Allowed, reasons: list[str]
) -> tuple[CpuSet, tuple[int, ...]]:
    cpus = CpuSet()
    nodes: set[int] = set()
    for node_id in targets:
        node = _node(topology, node_id)
        packages = sorted({cpu.package for cpu_id in node.cpus if (cpu := topology.cpu(cpu_id)) is not None})
        if not packages:
            reasons.append(Reason.of("socket_unknown", node=node_id))
            members = [node]
        else:
            members = [
                other
                for other in topology.cpu_nodes
                if any((cpu := topology.cpu(cpu_id)) is not None and cpu.package in packages for cpu_id in other.cpus)
            ]
            sockets = ",".join(str(p) for p in packages)
            reasons.append(
                Reason.of("socket_scope", node=node_id, sockets=sockets, members=node_list(m.id for m in members))
            )
        for member in members:
            part = _partial(member, allowed, reasons)
            if part:
                cpus = cpus | part
                nodes.add(member.id)
    return cpus, tuple(sorted(nodes))


def _exclusive_scope(
    topology: Topology,
    targets: Sequence[int],
    owned: Sequence[Gpu],
    placements: Mapping[int, Placement],
    allowed: Allowed,
    reasons: list[str],
) -> tuple[CpuSet, tuple[int, ...]]:
    # Only this scope and shares split cores: importing here spares the other scopes a dataclass build.

    cpus = CpuSet()
    for node_id in targets:
        node = _node(topology, node_id)
        group = sorted(index for index, placement in placements.items() if placement.node == node_id)
        mine = [gpu for gpu in owned if gpu.index in group]
        if not mine:
            reasons.append(Reason.of("exclusive_no_gpu_on_node", node=node_id))
            cpus = cpus | _partial(node, allowed, reasons)
            continue
        _partial(node, allowed, reasons)
        cores = physical_cores(topology, node.cpus, allowed.cpus)
        for gpu in mine:
            rank = group.index(gpu.index)
            share = block_of(cores, rank, len(group), allowed.cpus)
            share_of_gpu = {"gpu": gpu.label, "rank": rank, "count": len(group), "node": node_id,
                            "first": share.first, "cores": share.cores}
            if share.overlapping:
                reasons.append(Reason.of("exclusive_overlap", **share_of_gpu))
            else:
                reasons.append(
                    Reason.of("exclusive_share", **share_of_gpu, last=share.last, cpus=share.cpus.to_list())
                )
            cpus = cpus | share.cpus
    return cpus, tuple(targets)
