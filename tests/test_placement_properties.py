"""Properties of shares, reserved cores and the cache scope on random machines."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from test_planner_properties import SETTINGS, allowances, policies, topologies

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.model import CacheDomain, Topology
from gpunuma.core.plan import Allowed
from gpunuma.core.planner import gpu_placements, plan_binding
from gpunuma.core.planner.cores import physical_cores, reserved_cpus
from gpunuma.core.policy import CpuScope, Policy, Share
from gpunuma.core.reasons import codes


@st.composite
def with_caches(draw: st.DrawFn, topology: Topology) -> Topology:
    """The topology with last-level caches: one per socket, or contiguous runs of each node's cores."""
    if draw(st.booleans()):
        packages: dict[int, set[int]] = {}
        for cpu in topology.cpus:
            packages.setdefault(cpu.package, set()).add(cpu.id)
        domains = [CpuSet.of(ids) for _, ids in sorted(packages.items())]
    else:
        domains = []
        for node in topology.cpu_nodes:
            cores = physical_cores(topology, node.cpus, node.cpus)
            cuts = sorted(draw(st.sets(st.integers(1, len(cores) - 1)))) if len(cores) > 1 else []
            for first, end in zip([0, *cuts], [*cuts, len(cores)], strict=True):
                domain = CpuSet()
                for core in cores[first:end]:
                    domain = domain | core
                domains.append(domain)
    caches = tuple(CacheDomain(3, domain) for domain in sorted(domains, key=lambda d: min(d.ids)))
    return replace(topology, caches=caches)


@st.composite
def bound_requests(draw: st.DrawFn) -> tuple[Topology, Allowed, int, Policy]:
    """A machine with caches, an unnarrowed cgroup, one GPU and a policy of any scope, no share."""
    topology = draw(topologies().filter(lambda t: bool(t.gpus)).flatmap(with_caches))
    allowed = draw(allowances(topology))
    allowed = Allowed(cpus=allowed.cpus, mems=allowed.mems, affinity=allowed.cpus)
    gpu = draw(st.sampled_from([g.index for g in topology.gpus]))
    return topology, allowed, gpu, draw(policies)


def _cores_touched(topology: Topology, whole: CpuSet, part: CpuSet) -> int:
    return sum(1 for core in physical_cores(topology, whole, whole) if not core.isdisjoint(part))


@SETTINGS
@given(bound_requests(), st.data())
def test_shares_are_disjoint_equal_cover_the_plan_and_keep_siblings_together(request, data: st.DataObject) -> None:
    topology, allowed, gpu, policy = request
    whole = plan_binding(topology, [gpu], allowed, policy)
    if not whole.binds:
        return
    cores = len(physical_cores(topology, whole.cpus, whole.cpus))
    count = data.draw(st.integers(1, cores))
    parts = [plan_binding(topology, [gpu], allowed, replace(policy, share=Share(i, count))).cpus for i in range(count)]

    union = CpuSet()
    for i, part in enumerate(parts):
        assert part and part <= whole.cpus
        for other in parts[i + 1 :]:
            assert part.isdisjoint(other)
        for cpu_id in part:  # SMT siblings within the plan stay in the same part
            cpu = topology.cpu(cpu_id)
            assert cpu is not None and cpu.siblings & whole.cpus <= part
        union = union | part
    assert union == whole.cpus
    sizes = [_cores_touched(topology, whole.cpus, part) for part in parts]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == cores


@SETTINGS
@given(bound_requests(), st.integers(1, 4))
def test_a_share_binds_only_the_nodes_and_memory_its_cpus_lie_on(request, count: int) -> None:
    topology, allowed, gpu, policy = request
    for index in range(count):
        plan = plan_binding(topology, [gpu], allowed, replace(policy, share=Share(index, count)))
        if plan.binds:
            touched = {node.id for node in topology.cpu_nodes if not node.cpus.isdisjoint(plan.cpus)}
            assert set(plan.nodes) == touched


@SETTINGS
@given(bound_requests(), st.integers(0, 7))
def test_reserved_cores_never_appear_in_a_plan(request, reserve: int) -> None:
    topology, allowed, gpu, policy = request
    reserved = reserved_cpus(topology, reserve)
    for node in topology.cpu_nodes:  # the first cores of each node, whole, at most `reserve` of them
        kept = physical_cores(topology, node.cpus & reserved, node.cpus & reserved)
        assert len(kept) == min(reserve, len(physical_cores(topology, node.cpus, node.cpus)))
    plan = plan_binding(topology, [gpu], allowed, replace(policy, reserve=reserve))
    assert plan.cpus.isdisjoint(reserved)
    if reserve:
        assert codes(plan.reasons)[0] == "reserved_cores"
    else:
        assert plan == plan_binding(topology, [gpu], allowed, policy)


@SETTINGS
@given(bound_requests())
def test_cache_scope_gives_each_gpu_one_domain_distinct_while_there_are_enough(request) -> None:
    topology, allowed, _, policy = request
    policy = replace(policy, cpu_scope=CpuScope.CACHE, override_affinity=False)
    placements = gpu_placements(topology, allowed, policy)
    for node in topology.cpu_nodes:
        group = sorted(index for index, placement in placements.items() if placement.node == node.id)
        domains = {cache.cpus & node.cpus & allowed.cpus for cache in topology.caches} - {CpuSet()}
        if not group or not domains:
            continue
        plans = [plan_binding(topology, [index], allowed, policy) for index in group]
        if any(not plan.binds for plan in plans):  # rule 9: one domain that is the whole machine binds nothing
            assert {codes(plan.reasons)[-1] for plan in plans if not plan.binds} == {"spans_everything"}
            continue
        got = [plan.cpus for plan in plans]
        for cpus in got:
            assert cpus in domains  # exactly one whole domain, within the node and the cgroup
        if len(group) <= len(domains):
            assert len(set(got)) == len(group)
