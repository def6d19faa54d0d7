"""Properties of the planner on random machines: allowed CPUs only, explained refusals, disjoint shares."""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.model import Topology
from gpunuma.core.plan import Allowed
from gpunuma.core.planner import gpu_placements, plan_binding
from gpunuma.core.policy import CpuScope, Fallback, MemoryPolicy, Policy
from gpunuma.core.reasons import codes
from gpunuma.errors import InvalidNodeError, PlanError
from gpunuma_fakes import Machine, NodeSpec, gpu
from gpunuma_fakes.builder import distance_rows

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Case:
    """A random machine, what the process may use, and a request."""

    topology: Topology
    allowed: Allowed
    gpus: tuple[int, ...]
    node: int | None
    policy: Policy


def _subset(draw: st.DrawFn, items: list[int]) -> CpuSet:
    return CpuSet.of(draw(st.lists(st.sampled_from(items), unique=True)) if items else [])


@st.composite
def topologies(draw: st.DrawFn) -> Topology:
    """1-8 nodes (some CPU-less), 1-2 sockets, SMT or not, 0-6 GPUs with known or unknown nodes."""
    sockets = draw(st.integers(1, 2))
    cores_per_socket = draw(st.integers(1, 6))
    threads = draw(st.integers(1, 2))
    node_count = draw(st.integers(1, 8))
    cores = sockets * cores_per_socket
    with_cpus = draw(st.integers(1, min(node_count, cores)))
    cpu_node_ids = sorted(draw(st.permutations(range(node_count)))[:with_cpus])
    # Whole cores go to nodes in contiguous runs, as firmware assigns them.
    cut_points = st.lists(st.integers(1, cores - 1), min_size=with_cpus - 1, max_size=with_cpus - 1, unique=True)
    cuts = sorted(draw(cut_points)) if with_cpus > 1 else []
    bounds = [0, *cuts, cores]
    per_thread = cores
    nodes: dict[int, str] = {node_id: "" for node_id in range(node_count)}
    for position, node_id in enumerate(cpu_node_ids):
        core_range = range(bounds[position], bounds[position + 1])
        nodes[node_id] = CpuSet.of(c + t * per_thread for c in core_range for t in range(threads)).to_list()
    memoryless = [n for n in range(node_count) if draw(st.booleans()) and draw(st.booleans())]
    far = draw(st.lists(st.integers(11, 255), min_size=node_count * node_count, max_size=node_count * node_count))

    def distance(a: int, b: int) -> int:
        return 10 if a == b else far[min(a, b) * node_count + max(a, b)]

    all_cpus = list(range(cores * threads))
    locality: list[dict[str, object]] = []
    specs = []
    for index in range(draw(st.integers(0, 6))):
        numa_node = draw(st.one_of(st.none(), st.integers(0, node_count)))
        local = draw(st.sampled_from(["none", "all", "some"]))
        # What the adapters may report besides the node: any local CPUs (or none), any NVML memory node/affinity.
        local_cpus = None if local == "none" else CpuSet.of(all_cpus) if local == "all" else _subset(draw, all_cpus)
        locality.append({
            "local_cpus": local_cpus,
            "memory_node": draw(st.one_of(st.none(), st.integers(0, node_count - 1))),
            "affinity_nodes": tuple(draw(st.lists(st.integers(0, node_count - 1), unique=True, max_size=3))),
        })
        # numa_node may name a node that does not exist: give local CPUs so the spec derives none.
        specs.append(gpu(f"0000:{index + 1:02x}:00.0", -1 if numa_node is None else numa_node, local_cpus=""))
    rows = distance_rows(range(node_count), distance)
    simulated = Machine(
        name="random",
        description="a random machine for the planner's properties",
        sources=("hypothesis",),
        sockets=sockets,
        cores_per_socket=cores_per_socket,
        threads_per_core=threads,
        nodes=tuple(NodeSpec(k, nodes[k], 0 if k in memoryless else 65_536, rows[k]) for k in range(node_count)),
        gpus=tuple(specs),
    )
    topology = simulated.topology()
    gpus = tuple(replace(g, **fields) for g, fields in zip(topology.gpus, locality, strict=True))  # type: ignore[arg-type]
    return replace(topology, gpus=gpus)


@st.composite
def allowances(draw: st.DrawFn, topology: Topology) -> Allowed:
    """A random cgroup: any CPUs (often all), any memory nodes, sometimes a narrowed affinity."""
    every = list(topology.all_cpus)
    cpus = topology.all_cpus if draw(st.booleans()) else _subset(draw, every)
    mems = frozenset(draw(st.lists(st.sampled_from([n.id for n in topology.nodes]), unique=True)))
    affinity = cpus if draw(st.booleans()) else _subset(draw, list(cpus))
    return Allowed(cpus=cpus, mems=mems, affinity=affinity)


policies = st.builds(
    Policy,
    cpu_scope=st.sampled_from(list(CpuScope)),
    memory=st.sampled_from(list(MemoryPolicy)),
    on_disallowed=st.sampled_from(list(Fallback)),
    override_affinity=st.booleans(),
    spread_unknown=st.booleans(),
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    topology = draw(topologies())
    indices = [gpu.index for gpu in topology.gpus]
    gpus = tuple(draw(st.lists(st.sampled_from(indices), unique=True, max_size=3)) if indices else [])
    node = draw(st.one_of(st.none(), st.integers(0, len(topology.nodes))))
    return Case(topology, draw(allowances(topology)), gpus, node, draw(policies))


def _explicit_node_is_valid(case: Case) -> bool:
    node = case.topology.node(case.node) if case.node is not None else None
    return node is not None and node.has_cpus and not node.cpus.isdisjoint(case.allowed.cpus)


@SETTINGS
@given(cases())
def test_a_plan_binds_to_allowed_cpus_or_says_why_not(case: Case) -> None:
    try:
        plan = plan_binding(case.topology, case.gpus, case.allowed, case.policy, node=case.node)
    except InvalidNodeError:
        assert case.node is not None and not _explicit_node_is_valid(case)
        return
    except PlanError:
        assert not case.gpus and case.node is None
        return
    assert case.node is None or _explicit_node_is_valid(case)
    if plan.binds:
        assert plan.cpus <= case.allowed.cpus
        node_cpus = CpuSet()
        for node_id in plan.nodes:
            node = case.topology.node(node_id)
            assert node is not None and node.has_cpus
            node_cpus = node_cpus | node.cpus
        assert plan.cpus <= node_cpus
        for node_id in plan.memory_nodes:
            node = case.topology.node(node_id)
            assert node is not None and node.has_memory and node_id in case.allowed.mems
        assert (plan.memory_policy is MemoryPolicy.NONE) == (not plan.memory_nodes)
    else:
        assert plan.reasons
        assert plan.nodes == () and plan.memory_nodes == ()
        assert plan.memory_policy is MemoryPolicy.NONE
    assert plan.gpus == tuple(sorted(case.gpus))


@SETTINGS
@given(cases())
def test_the_same_input_gives_the_same_plan(case: Case) -> None:
    def plan(gpus: tuple[int, ...]) -> object:
        try:
            return plan_binding(case.topology, gpus, case.allowed, case.policy, node=case.node)
        except PlanError as err:
            return str(err)

    first = plan(case.gpus)
    assert plan(case.gpus) == first
    assert plan(tuple(reversed(case.gpus))) == first


@SETTINGS
@given(st.data())
def test_exclusive_shares_are_disjoint_cover_the_node_and_keep_siblings_together(data: st.DataObject) -> None:
    topology = data.draw(topologies())
    allowed = data.draw(allowances(topology))
    allowed = Allowed(cpus=allowed.cpus, mems=allowed.mems, affinity=allowed.cpus)
    policy = data.draw(policies)
    policy = Policy(
        cpu_scope=CpuScope.EXCLUSIVE, on_disallowed=policy.on_disallowed, spread_unknown=policy.spread_unknown
    )
    placements = gpu_placements(topology, allowed, policy)
    for node in topology.cpu_nodes:
        group = sorted(index for index, placement in placements.items() if placement.node == node.id)
        if not group:
            continue
        plans = [plan_binding(topology, [index], allowed, policy) for index in group]
        if any(codes(p.reasons)[-1:] == ("spans_everything",) for p in plans):
            # Rule 9: a share that is the whole machine (a lone GPU, or overlapping shares of one core)
            # is not a binding.
            assert not any(p.binds and p.cpus >= topology.all_cpus for p in plans)
            continue
        shares = [p.cpus for p in plans]
        node_allowed = node.cpus & allowed.cpus
        cores = {(cpu.siblings & node.cpus) for cpu in topology.cpus if cpu.id in node_allowed}
        for share in shares:
            assert share and share <= node_allowed
            for cpu_id in share:
                cpu = topology.cpu(cpu_id)
                assert cpu is not None
                assert cpu.siblings & node_allowed <= share  # SMT siblings stay together
        if len(group) <= len(cores):
            for i, first in enumerate(shares):
                for second in shares[i + 1 :]:
                    assert first.isdisjoint(second)
            union = CpuSet()
            for share in shares:
                union = union | share
            assert union == node_allowed
            sizes = [sum(1 for core in cores if not core.isdisjoint(share)) for share in shares]
            assert max(sizes) - min(sizes) <= 1
        else:
            for share in shares:  # more GPUs than cores: one core each
                assert sum(1 for core in cores if not core.isdisjoint(share)) == 1
