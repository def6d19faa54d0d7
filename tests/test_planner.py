"""The planner's rules, as behaviour on the catalogue's simulated machines (gpunuma_fakes) and a few
synthetic shapes built with ``gpunuma_fakes.build``."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.model import Topology
from gpunuma.core.plan import Allowed, BindingPlan
from gpunuma.core.planner import Locality, gpu_nodes, gpu_placements, plan_binding
from gpunuma.core.policy import CpuScope, Fallback, MemoryPolicy, Policy
from gpunuma.core.reasons import Reason
from gpunuma.errors import InvalidNodeError, PlanError
from gpunuma_fakes import Machine, build, gpu, machine

DGX = machine("dgx-h100")
DGX_H100_BUSES = ("1b", "43", "52", "61", "9d", "c3", "d1", "df")
A100 = machine("dgx-a100")  # NPS4: GPU0,1 -> node 3, 2,3 -> 1, 4,5 -> 7, 6,7 -> 5; distances 10/12/32
GH200 = machine("gh200")  # sysfs numa_node 0, NVML's GPU-memory node 1 (CPU-less, distance 80)
GB200 = machine("gb200")  # GPU memory nodes 2, 10 near node 0 (80), 18, 26 near node 1
CLOUD = machine("cloud-vm")  # numa_node -1 and every CPU local; nodes 0-3,8-11 and 4-7,12-15
SNC = machine("snc")  # SNC2: nodes 0-3 of 24 cores; GPUs 0-2 -> node 0, 3 -> 1, 4,5 -> 2
CONTAINER = machine("container-dgx-h100")  # the DGX H100 in a cpuset 0-47,112-159


def with_gpus(simulated: Machine, *changes: dict[str, object]) -> Machine:
    """``simulated`` keeping only its first ``len(changes)`` GPUs (bus order), each with its ``changes``."""
    gpus = simulated.sorted_gpus()[: len(changes)]
    return replace(simulated, gpus=tuple(replace(g, **c) for g, c in zip(gpus, changes, strict=True)))  # type: ignore[arg-type]


def socket_affinity(per_socket: int) -> Machine:
    """The SNC machine whose firmware reports GPUs per socket (numa_node -1, local CPUs = the socket), with
    ``per_socket`` GPUs on each socket."""
    sockets = ("0-47,96-143", "48-95,144-191")
    gpus = [gpu(f"0000:{0x18 + i:02x}:00.0", -1, local_cpus=sockets[i // per_socket]) for i in range(2 * per_socket)]
    return replace(machine("snc-socket-affinity"), gpus=tuple(gpus), expected_nodes={})


def unknown_locality(topology: Topology, **fields: object) -> Topology:
    """``topology`` whose GPUs report no local CPUs (no sysfs list, no NVML affinity), with ``fields`` set."""
    gpus = tuple(replace(g, local_cpus=None, **fields) for g in topology.gpus)  # type: ignore[arg-type]
    return replace(topology, gpus=gpus)


def allow(simulated: Machine, cpus: str, mems: str, affinity: str | None = None) -> Allowed:
    """What a process may use when ``simulated`` runs it in cgroup cpuset ``cpus``/``mems``, affinity ``affinity``."""
    return replace(simulated, cgroup_cpus=cpus, cgroup_mems=mems, affinity=affinity).allowed()


EXCLUSIVE = Policy(cpu_scope=CpuScope.EXCLUSIVE)
SOCKET = Policy(cpu_scope=CpuScope.SOCKET)


def R(code: str, **values: object) -> dict[str, object]:
    """A reason as data, the shape of ``Reason.to_dict()`` (nested reasons as ``R(...)`` too)."""
    return {"code": code, "values": values}


#: What a GPU's numa_node -1 says, inside rule 1c's reasons.
_NO_NODE = R("said_no_node")


def data(reasons: tuple[str, ...]) -> list[dict[str, object]]:
    """The reasons of a plan as data, to compare with ``R(...)``."""
    return [Reason.coerce(reason).to_dict() for reason in reasons]


def assert_no_binding(plan: BindingPlan, why: dict[str, object]) -> None:
    assert not plan.binds
    assert plan.cpus == CpuSet()
    assert plan.nodes == ()
    assert plan.memory_policy is MemoryPolicy.NONE
    assert plan.memory_nodes == ()
    assert data(plan.reasons)[-1] == why


class TestReportedNode:
    """Rule 1a: a reported node with CPUs is the GPU's node."""

    @pytest.mark.parametrize(
        ("index", "node", "cpus"),
        [(0, 0, "0-55,112-167"), (3, 0, "0-55,112-167"), (4, 1, "56-111,168-223"), (7, 1, "56-111,168-223")],
    )
    def test_dgx_h100_gpus_bind_to_their_socket_node(self, index: int, node: int, cpus: str) -> None:
        plan = plan_binding(DGX.topology(), [index], DGX.allowed())
        assert plan.nodes == (node,)
        assert plan.cpus.to_list() == cpus
        assert plan.memory_policy is MemoryPolicy.PREFERRED
        assert plan.memory_nodes == (node,)
        bus = DGX_H100_BUSES[index]
        assert data(plan.reasons)[0] == R("gpu_on_node", gpu=f"GPU {index} (0000:{bus}:00.0)", node=node)
        assert plan.gpu_labels == (f"GPU {index} (0000:{bus}:00.0)",)
        assert plan.gpus == (index,)

    @pytest.mark.parametrize(
        ("index", "node", "cpus"),
        [(0, 3, "48-63,176-191"), (1, 3, "48-63,176-191"), (2, 1, "16-31,144-159"), (5, 7, "112-127,240-255"),
         (6, 5, "80-95,208-223")],
    )
    def test_dgx_a100_nps4_gpus_bind_to_their_quarter_socket(self, index: int, node: int, cpus: str) -> None:
        plan = plan_binding(A100.topology(), [index], A100.allowed())
        assert (plan.nodes, plan.cpus.to_list()) == ((node,), cpus)
        assert len(plan.cpus) == 16 * 2  # 16 cores, 2 threads each

    def test_gpu_nodes_resolves_every_gpu_of_the_machine(self) -> None:
        choices = gpu_nodes(A100.topology())
        assert {index: choice.node for index, choice in choices.items()} == {
            0: 3, 1: 3, 2: 1, 3: 1, 4: 7, 5: 7, 6: 5, 7: 5
        }
        assert all(choice.locality is Locality.REPORTED for choice in choices.values())
        assert list(choices) == sorted(choices)


class TestCpuLessAndGpuMemoryNodes:
    """Rule 1b: a CPU-less reported node, or NVML's GPU-memory node, maps to the nearest CPU node."""

    def test_gh200_gpu_reporting_its_cpu_less_memory_node_binds_to_the_grace_node(self) -> None:
        simulated = with_gpus(GH200, {"sysfs_numa_node": 1, "local_cpus": "0-71"})
        plan = plan_binding(simulated.topology(nvml=True), [0], simulated.allowed())
        assert (plan.nodes, plan.cpus.to_list()) == ((0,), "0-71")
        assert data(plan.reasons)[0] == R(
            "gpu_node_cpuless_nearest", gpu="GPU 0 (0009:01:00.0)", reported=1, node=0,
            distance=R("distance", distance=80),
        )

    def test_gh200_gpu_memory_node_from_nvml_leads_to_the_grace_node(self) -> None:
        simulated = with_gpus(GH200, {"sysfs_numa_node": -1, "local_cpus": "0-71"})
        topology = simulated.topology(nvml=True)
        plan = plan_binding(topology, [0], simulated.allowed())
        assert plan.nodes == (0,)
        assert data(plan.reasons)[0] == R(
            "gpu_memory_node_nearest", gpu=plan.gpu_labels[0], memory_node=1, node=0,
            distance=R("distance", distance=80),
        )
        assert gpu_nodes(topology)[0].locality is Locality.NEAREST

    @pytest.mark.parametrize(("index", "memory_node", "node"), [(0, 2, 0), (1, 10, 0), (2, 18, 1), (3, 26, 1)])
    def test_gb200_gpu_memory_nodes_map_to_the_grace_at_distance_80_not_120(
        self, index: int, memory_node: int, node: int
    ) -> None:
        simulated = with_gpus(GB200, *[{"sysfs_numa_node": -1}] * 4)
        plan = plan_binding(simulated.topology(nvml=True), [index], simulated.allowed())
        assert plan.nodes == (node,)
        assert plan.cpus.to_list() == ("0-71" if node == 0 else "72-143")
        assert data(plan.reasons)[0] == R(
            "gpu_memory_node_nearest", gpu=plan.gpu_labels[0], memory_node=memory_node, node=node,
            distance=R("distance", distance=80),
        )

    def test_gb200_reported_cpu_node_wins_over_the_memory_node(self) -> None:
        topology = GB200.topology(nvml=True)
        assert {i: c.locality for i, c in gpu_nodes(topology).items()} == dict.fromkeys(range(4), Locality.REPORTED)
        assert plan_binding(topology, [3], GB200.allowed()).nodes == (1,)

    def test_a_distance_tie_is_no_choice_so_nothing_is_guessed(self) -> None:
        simulated = build(
            sockets=2, cores_per_node=2, cpu_less_nodes=1, distance=lambda a, b: 20, gpus=[gpu("0000:01:00.0", 2)]
        )
        plan = plan_binding(simulated.topology(), [0], simulated.allowed())
        assert plan.nodes == () and "gpu_nearest_tie" in plan.reason_codes
        (tie,) = [r for r in plan.reasons if r.code == "gpu_nearest_tie"]
        assert (tie.values["nodes"], tie.values["distance"]) == ("0, 1", 20)

    def test_a_distance_tie_leaves_the_choice_to_the_local_cpus(self) -> None:
        simulated = build(
            sockets=2, cores_per_node=2, cpu_less_nodes=1, distance=lambda a, b: 20,
            gpus=[gpu("0000:01:00.0", 2, local_cpus="2-3")],
        )
        plan = plan_binding(simulated.topology(), [0], simulated.allowed())
        assert plan.nodes == (1,) and "gpu_nearest_tie" in plan.reason_codes


class TestUnknownNode:
    """Rule 1c: numa_node -1 uses local CPUs or NVML memory affinity, spreads, or refuses to guess."""

    def test_a_node_that_does_not_exist_is_named_not_called_minus_one(self) -> None:
        """numa_node 7 on a 4-node machine: the reason names node 7 as reported, and the local CPUs decide."""
        simulated = with_gpus(SNC, {"sysfs_numa_node": 7, "local_cpus": "48-71,144-167"})
        plan = plan_binding(simulated.topology(), [0], simulated.allowed())
        assert plan.nodes == (2,)
        assert data(plan.reasons)[:2] == [
            R("gpu_node_not_listed", gpu="GPU 0 (0000:18:00.0)", reported=7),
            R("gpu_single_candidate", said=R("said_node_not_listed", reported=7), gpu="GPU 0 (0000:18:00.0)",
              node=2, evidence=R("evidence_local_cpus", cpus="48-71,144-167")),
        ]

    def test_local_cpus_on_a_single_node_give_that_node(self) -> None:
        simulated = with_gpus(SNC, {"sysfs_numa_node": -1, "local_cpus": "48-71,144-167"})
        plan = plan_binding(simulated.topology(), [0], simulated.allowed())
        assert plan.nodes == (2,)
        assert data(plan.reasons)[0] == R(
            "gpu_single_candidate", said=_NO_NODE, gpu="GPU 0 (0000:18:00.0)", node=2,
            evidence=R("evidence_local_cpus", cpus="48-71,144-167"),
        )

    def test_nvml_memory_affinity_is_used_when_local_cpus_are_missing(self) -> None:
        topology = unknown_locality(with_gpus(CLOUD, {}).topology(), affinity_nodes=(1,))
        plan = plan_binding(topology, [0], CLOUD.allowed())
        assert plan.nodes == (1,)
        assert data(plan.reasons)[0] == R(
            "gpu_single_candidate", said=_NO_NODE, gpu=plan.gpu_labels[0], node=1, evidence=R("evidence_nvml_affinity")
        )

    @pytest.mark.parametrize(("index", "node"), [(0, 0), (1, 1), (2, 2), (3, 3)])
    def test_socket_wide_locality_spreads_two_gpus_over_the_sockets_two_nodes(self, index: int, node: int) -> None:
        topology = socket_affinity(per_socket=2).topology()
        plan = plan_binding(topology, [index], SNC.allowed())
        assert plan.nodes == (node,)
        assert plan.cpus == topology.node(node).cpus  # type: ignore[union-attr]
        socket_cpus = topology.gpus[index].local_cpus.to_list()  # type: ignore[union-attr]
        assert data(plan.reasons)[0] == R(
            "gpu_spread", said=_NO_NODE, gpu=plan.gpu_labels[0], evidence=R("evidence_local_cpus", cpus=socket_cpus),
            nodes="0-1" if index < 2 else "2-3", count=2, rank=index % 2, node=node,
        )

    def test_three_gpus_on_a_two_node_socket_split_into_contiguous_blocks(self) -> None:
        # rank * 2 // 3: ranks 0, 1 -> node 0; rank 2 -> node 1. Never all on the first node.
        choices = gpu_nodes(socket_affinity(per_socket=3).topology())
        assert {i: c.node for i, c in choices.items()} == {0: 0, 1: 0, 2: 1, 3: 2, 4: 2, 5: 3}
        assert all(c.locality is Locality.SPREAD for c in choices.values())

    def test_vm_gpu_whose_local_cpus_are_every_cpu_is_not_bound(self) -> None:
        plan = plan_binding(CLOUD.topology(), [0], CLOUD.allowed())
        assert_no_binding(
            plan,
            R("gpu_locality_unknown", said=_NO_NODE, gpu="GPU 0 (0000:00:06.0)", evidence=R("evidence_local_cpus_all")),
        )
        assert plan.summary().startswith("no binding: GPU 0 (0000:00:06.0) reports no NUMA locality")

    def test_vm_gpus_spread_over_every_node_when_asked(self) -> None:
        topology = with_gpus(CLOUD, {}, {}).topology()
        policy = Policy(spread_unknown=True)
        plans = [plan_binding(topology, [i], CLOUD.allowed(), policy) for i in (0, 1)]
        assert [p.nodes for p in plans] == [(0,), (1,)]
        assert [p.cpus.to_list() for p in plans] == ["0-3,8-11", "4-7,12-15"]
        assert data(plans[1].reasons)[0] == R(
            "gpu_spread_unknown", said=_NO_NODE, gpu=plans[1].gpu_labels[0], evidence=R("evidence_local_cpus_all"),
            count=2, rank=1,
            node=1,
        )

    def test_gpu_with_no_locality_information_at_all_is_not_bound(self) -> None:
        topology = unknown_locality(with_gpus(CLOUD, {}).topology())
        assert_no_binding(
            plan_binding(topology, [0], CLOUD.allowed()),
            R("gpu_locality_unknown", said=_NO_NODE, gpu="GPU 0 (0000:00:06.0)", evidence=R("evidence_none")),
        )

    def test_memory_affinity_naming_every_node_is_not_guessed_from(self) -> None:
        topology = unknown_locality(with_gpus(CLOUD, {}).topology(nvml=True))
        assert topology.gpus[0].affinity_nodes == (0, 1)  # NVML names every node with memory
        plan = plan_binding(topology, [0], CLOUD.allowed())
        assert not plan.binds
        assert data(plan.reasons)[-1] == R(
            "gpu_locality_unknown", said=_NO_NODE, gpu=plan.gpu_labels[0], evidence=R("evidence_nvml_affinity_all")
        )

    def test_a_reported_node_missing_from_the_topology_falls_back_to_local_cpus(self) -> None:
        simulated = build(sockets=2, cores_per_node=8, gpus=[gpu("0000:06:00.0", 4, local_cpus="8-15")])
        plan = plan_binding(simulated.topology(), [0], simulated.allowed())
        assert plan.nodes == (1,)
        assert data(plan.reasons)[0] == R("gpu_node_not_listed", gpu="GPU 0 (0000:06:00.0)", reported=4)


class TestCpuScope:
    """Rule 2: node, socket and exclusive scopes."""

    def test_socket_scope_on_snc_takes_both_nodes_of_the_socket(self) -> None:
        plan = plan_binding(SNC.topology(), [3], SNC.allowed(), SOCKET)
        assert plan.nodes == (0, 1)
        assert plan.cpus.to_list() == "0-47,96-143"
        assert R("socket_scope", node=1, sockets="0", members="0-1") in data(plan.reasons)
        assert plan.memory_nodes == (0, 1)  # preferred keeps them all (MPOL_PREFERRED_MANY)

    def test_socket_scope_on_nps4_takes_the_four_quarters(self) -> None:
        plan = plan_binding(A100.topology(), [4], A100.allowed(), SOCKET)
        assert plan.nodes == (4, 5, 6, 7)
        assert plan.cpus.to_list() == "64-127,192-255"

    def test_socket_scope_without_cpu_package_information_stays_on_the_node(self) -> None:
        topology = replace(SNC.topology(), cpus=())
        plan = plan_binding(topology, [3], SNC.allowed(), SOCKET)
        assert plan.nodes == (1,)
        assert data(plan.reasons)[1] == R("socket_unknown", node=1)

    @pytest.mark.parametrize(
        ("index", "cpus"),
        [(0, "0-13,112-125"), (1, "14-27,126-139"), (2, "28-41,140-153"), (3, "42-55,154-167"),
         (4, "56-69,168-181"), (7, "98-111,210-223")],
    )
    def test_exclusive_on_dgx_h100_gives_each_gpu_14_whole_cores(self, index: int, cpus: str) -> None:
        # 56 cores / 4 GPUs per node = 14 cores, both SMT threads of each.
        plan = plan_binding(DGX.topology(), [index], DGX.allowed(), EXCLUSIVE)
        assert plan.cpus.to_list() == cpus
        assert len(plan.cpus) == 28
        rank = index % 4
        first, last = 14 * rank, 14 * rank + 13
        assert data(plan.reasons)[1] == R(
            "exclusive_share", gpu=plan.gpu_labels[0], rank=rank, count=4, node=index // 4, first=first, last=last,
            cores=56, cpus=cpus,
        )

    def test_exclusive_shares_differ_by_at_most_one_core(self) -> None:
        # SNC node 0 has GPUs 0-2; the cgroup leaves it 10 cores (0-9 with siblings 96-105): 3, 3, 4 cores.
        allowed = allow(SNC, "0-9,24-95,96-105,120-191", "0-3")
        shares = [plan_binding(SNC.topology(), [i], allowed, EXCLUSIVE).cpus.to_list() for i in (0, 1, 2)]
        assert shares == ["0-2,96-98", "3-5,99-101", "6-9,102-105"]

    def test_exclusive_share_keeps_only_the_allowed_thread_of_a_core(self) -> None:
        plan = plan_binding(DGX.topology(), [1], allow(DGX, "0-111", "0-1"), EXCLUSIVE)
        assert plan.cpus.to_list() == "14-27"

    def test_more_gpus_than_cores_overlap_and_say_so(self) -> None:
        # Only cores 0 and 1 of node 0 are allowed; all 8 GPUs land on node 0: rank r gets core r % 2.
        allowed = allow(DGX, "0-1,112-113", "0-1")
        plans = [plan_binding(DGX.topology(), [i], allowed, EXCLUSIVE) for i in range(8)]
        assert [p.cpus.to_list() for p in plans] == ["0,112", "1,113"] * 4
        assert R(
            "exclusive_overlap", node=0, cores=2, count=8, gpu="GPU 5 (0000:c3:00.0)", rank=5, first=1
        ) in data(plans[5].reasons)

    def test_exclusive_with_an_explicit_node_no_gpu_is_on_takes_the_whole_node(self) -> None:
        plan = plan_binding(DGX.topology(), [0], DGX.allowed(), EXCLUSIVE, node=1)
        assert plan.cpus.to_list() == "56-111,168-223"
        assert R("exclusive_no_gpu_on_node", node=1) in data(plan.reasons)


class TestMemory:
    """Rule 3: memory nodes follow the CPU nodes when they have memory and are allowed."""

    @pytest.mark.parametrize("wanted", [MemoryPolicy.BIND, MemoryPolicy.PREFERRED])
    def test_bind_and_preferred_use_the_cpu_node(self, wanted: MemoryPolicy) -> None:
        plan = plan_binding(DGX.topology(), [6], DGX.allowed(), Policy(memory=wanted))
        assert (plan.memory_policy, plan.memory_nodes) == (wanted, (1,))
        assert plan.summary() == f"NUMA node 1, CPUs 56-111,168-223, memory {wanted.value} 1"

    def test_none_leaves_memory_alone_but_binds_cpus(self) -> None:
        plan = plan_binding(DGX.topology(), [6], DGX.allowed(), Policy(memory=MemoryPolicy.NONE))
        assert plan.binds
        assert (plan.memory_policy, plan.memory_nodes) == (MemoryPolicy.NONE, ())
        assert data(plan.reasons)[-1] == R("memory_left_alone")

    def test_a_node_outside_cpuset_mems_falls_back_to_the_nearest_allowed_memory(self) -> None:
        plan = plan_binding(A100.topology(), [0], allow(A100, "0-255", "0-2,4-7"))
        assert plan.nodes == (3,)
        assert plan.memory_nodes == (0,)  # nodes 0-2 are at 12 on the same socket; lowest id wins
        assert data(plan.reasons)[-1] == R(
            "memory_nearest", nodes="3", mems="0-2,4-7", policy="preferred", node=0, distance=R("distance", distance=12)
        )

    def test_no_allowed_memory_at_all_leaves_the_policy_alone(self) -> None:
        plan = plan_binding(DGX.topology(), [0], allow(DGX, "0-223", ""), Policy(memory=MemoryPolicy.BIND))
        assert plan.binds
        assert (plan.memory_policy, plan.memory_nodes) == (MemoryPolicy.NONE, ())
        assert data(plan.reasons)[-1] == R("memory_no_usable_node", nodes="0", mems="none")


class TestSeveralGpus:
    """Rule 4: a process owning GPUs on different nodes binds to the union."""

    def test_gpus_on_two_nodes_bind_to_both_nodes(self) -> None:
        topology = A100.topology()  # GPU 0 on node 3, GPU 2 on node 1 (of 8)
        plan = plan_binding(topology, [2, 0], A100.allowed())
        assert plan.gpus == (0, 2)
        assert plan.nodes == (1, 3)
        assert plan.cpus.to_list() == "16-31,48-63,144-159,176-191"
        assert plan.memory_nodes == (1, 3)
        assert R("gpus_union", gpus="0, 2", nodes="1,3", what="nodes") in data(plan.reasons)

    def test_exclusive_takes_the_union_of_the_shares(self) -> None:
        plan = plan_binding(DGX.topology(), [1, 5], DGX.allowed(), EXCLUSIVE)
        assert plan.cpus.to_list() == "14-27,70-83,126-139,182-195"
        assert R("gpus_union", gpus="1, 5", nodes="0-1", what="shares") in data(plan.reasons)

    def test_a_gpu_without_locality_is_left_out_of_a_multi_gpu_binding(self) -> None:
        simulated = build(sockets=2, cores_per_node=8, gpus=[gpu("0000:06:00.0", 1), gpu("0000:07:00.0", -1)])
        plan = plan_binding(simulated.topology(), [0, 1], simulated.allowed())
        assert plan.nodes == (1,)
        assert R("gpu_left_out", gpu="GPU 1 (0000:07:00.0)", placed="0") in data(plan.reasons)

    def test_several_gpus_without_locality_say_none_can_be_bound(self) -> None:
        plan = plan_binding(with_gpus(CLOUD, {}, {}).topology(), [0, 1], CLOUD.allowed())
        assert_no_binding(plan, R("no_gpu_placeable", gpus="0, 1"))


class TestCgroup:
    """Rule 5: planned CPUs are always allowed; disallowed nodes fall back or are not bound."""

    def test_cgroup_limited_gpu_1_gets_96_of_node_0s_112_cpus(self) -> None:
        topology, allowed = CONTAINER.topology(), CONTAINER.allowed()
        plan = plan_binding(topology, [1], allowed)
        assert plan.cpus.to_list() == "0-47,112-159"
        assert R("node_partly_allowed", allowed_count=96, node=0, total=112) in data(plan.reasons)

    def test_cgroup_limited_gpu_5_falls_back_to_the_nearest_allowed_node(self) -> None:
        topology, allowed = CONTAINER.topology(), CONTAINER.allowed()
        plan = plan_binding(topology, [5], allowed)
        assert plan.nodes == (0,)
        assert plan.cpus <= allowed.cpus
        assert data(plan.reasons)[:2] == [
            R("gpu_on_node", gpu="GPU 5 (0000:c3:00.0)", node=1),
            R("node_disallowed_nearest", node=1, cpus="56-111,168-223", allowed="0-47,112-159", target=0,
              distance=R("distance", distance=21)),
        ]
        assert gpu_placements(topology, allowed)[5].gpu_node == 1

    def test_fallback_none_does_not_bind(self) -> None:
        topology, allowed = CONTAINER.topology(), CONTAINER.allowed()
        plan = plan_binding(topology, [5], allowed, Policy(on_disallowed=Fallback.NONE))
        assert_no_binding(
            plan, R("node_disallowed_not_binding", node=1, cpus="56-111,168-223", allowed="0-47,112-159")
        )

    def test_nearest_fallback_prefers_the_same_socket_on_nps4(self) -> None:
        # GPU 0 is on node 3; the cgroup allows only nodes 2 (distance 12) and 4 (distance 32).
        plan = plan_binding(A100.topology(), [0], allow(A100, "32-47,160-175,64-79,192-207", "0-7"))
        assert plan.nodes == (2,)
        assert plan.cpus.to_list() == "32-47,160-175"


class TestExplicitNode:
    """Rule 6: an explicit node is validated and wins over the GPU's node."""

    def test_a_missing_node_is_named(self) -> None:
        with pytest.raises(InvalidNodeError) as caught:
            plan_binding(DGX.topology(), [], DGX.allowed(), node=7)
        assert caught.value.why == "node 7 does not exist; nodes are 0-1"
        assert caught.value.node == 7

    def test_a_cpu_less_gpu_memory_node_is_refused(self) -> None:
        with pytest.raises(InvalidNodeError) as caught:
            plan_binding(GH200.topology(nvml=True), [0], GH200.allowed(), node=1)
        assert caught.value.why == "node 1 has no CPUs (GPU memory)"

    def test_an_empty_mig_placeholder_node_is_refused(self) -> None:
        with pytest.raises(InvalidNodeError, match="node 5 has no CPUs$"):
            plan_binding(GH200.topology(nvml=True), [], GH200.allowed(), node=5)

    def test_a_node_the_cgroup_excludes_is_refused(self) -> None:
        with pytest.raises(InvalidNodeError) as caught:
            plan_binding(DGX.topology(), [], allow(DGX, "0-55", "0-1"), node=1)
        assert Reason.coerce(caught.value.why).to_dict() == R(
            "node_disallowed", node=1, cpus="56-111,168-223", allowed="0-55"
        )

    def test_cpu_only_helper_binds_to_the_node(self) -> None:
        plan = plan_binding(DGX.topology(), [], DGX.allowed(), node=1)
        assert (plan.gpus, plan.nodes, plan.cpus.to_list()) == ((), (1,), "56-111,168-223")
        assert data(plan.reasons)[0] == R("explicit_node", node=1)

    def test_explicit_node_wins_and_the_reasons_keep_the_gpus_own_node(self) -> None:
        plan = plan_binding(DGX.topology(), [5], DGX.allowed(), node=0)
        assert plan.nodes == (0,)
        assert data(plan.reasons)[:2] == [
            R("gpu_on_node", gpu="GPU 5 (0000:c3:00.0)", node=1),
            R("explicit_node_over_gpus", node=0),
        ]


class TestNarrowedAffinity:
    """Rule 7: an affinity narrowed by taskset/numactl/a scheduler is left alone unless overridden."""

    def test_narrowed_affinity_is_left_alone(self) -> None:
        plan = plan_binding(DGX.topology(), [0], allow(DGX, "0-223", "0-1", affinity="0-7"))
        assert_no_binding(plan, R("affinity_narrowed", affinity="0-7"))
        assert data(plan.reasons)[0] == R("gpu_on_node", gpu="GPU 0 (0000:1b:00.0)", node=0)

    def test_override_rebinds_within_the_cgroup(self) -> None:
        allowed = allow(DGX, "0-47,112-159", "0-1", affinity="0-7")
        plan = plan_binding(DGX.topology(), [0], allowed, Policy(override_affinity=True))
        assert plan.cpus.to_list() == "0-47,112-159"
        assert R("affinity_overridden", affinity="0-7", cpus="0-47,112-159") in data(plan.reasons)


class TestRequestErrors:
    """Rule 8 and unknown GPU indices."""

    def test_no_gpu_and_no_node_is_nothing_to_bind_to(self) -> None:
        with pytest.raises(PlanError, match="nothing to bind to"):
            plan_binding(DGX.topology(), [], DGX.allowed())

    def test_a_gpu_index_not_in_the_topology_is_refused(self) -> None:
        with pytest.raises(PlanError, match=r"GPU 8 is not in the topology \(GPUs: 0-7\)"):
            plan_binding(DGX.topology(), [8], DGX.allowed())


class TestDeterminism:
    def test_same_input_gives_an_equal_plan_whatever_the_gpu_order(self) -> None:
        topology, allowed = CONTAINER.topology(), CONTAINER.allowed()
        first = plan_binding(topology, [5, 1, 5], allowed, EXCLUSIVE)
        second = plan_binding(topology, [1, 5], allowed, EXCLUSIVE)
        assert first == second
        assert first.gpus == (1, 5)
