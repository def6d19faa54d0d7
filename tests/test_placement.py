"""Shares, reserved cores, the cache scope, nearest NICs and the children's environment, on named machines."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpunuma import compose
from gpunuma.core.childenv import child_env, fill_in, omp_places
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.identity import GpuEnvironment
from gpunuma.core.model import PcieDistance, nearest_nics, pcie_distance, ranked_nics
from gpunuma.core.planner import plan_binding
from gpunuma.core.policy import CpuScope, Policy, Share
from gpunuma.core.reasons import Reason, codes, with_code
from gpunuma.core.report import BindingReport
from gpunuma.errors import InvalidNodeError, PolicyError
from gpunuma.settings import CapturedTree, Options
from gpunuma_fakes import machine

DGX = machine("dgx-h100")
DGX_TOPOLOGY = DGX.topology()


def plan(name: str, gpu: int, **policy: object):
    spec = machine(name)
    return plan_binding(spec.topology(), [gpu], spec.allowed(), Policy(**policy))  # type: ignore[arg-type]


class TestShares:
    def test_a_quarter_of_dgx_h100_node_1_is_fourteen_whole_cores(self) -> None:
        # Node 1: cores 56-111 (56 cores) with siblings +112; part 1 of 4 = cores 14-27 of the node.
        got = plan("dgx-h100", 5, share=(1, 4))

        assert got.cpus.to_list() == "70-83,182-195"
        assert (got.nodes, got.memory_nodes) == ((1,), (1,))
        assert Reason.coerce(got.reasons[-2]).to_dict() == {
            "code": "share_part",
            "values": {"index": 1, "count": 4, "cores": 56, "first": 14, "last": 27, "cpus": "70-83,182-195"},
        }

    def test_four_parts_are_disjoint_and_cover_the_node(self) -> None:
        parts = [plan("dgx-h100", 5, share=Share(i, 4)).cpus for i in range(4)]

        assert sum(len(part) for part in parts) == 112
        assert CpuSet.of(cpu for part in parts for cpu in part) == DGX_TOPOLOGY.node(1).cpus

    def test_a_share_composes_with_the_exclusive_scope(self) -> None:
        # Exclusive: GPU 5 is rank 1 of node 1's four GPUs -> cores 14-27; half 1 of that -> cores 21-27.
        got = plan("dgx-h100", 5, cpu_scope=CpuScope.EXCLUSIVE, share=(1, 2))

        assert got.cpus.to_list() == "77-83,189-195"

    def test_a_share_of_a_multi_node_plan_keeps_only_the_nodes_it_lies_on(self) -> None:
        spec = DGX
        got = plan_binding(spec.topology(), [3, 4], spec.allowed(), Policy(share=(0, 2)))

        assert (got.nodes, got.memory_nodes, got.cpus.to_list()) == ((0,), (0,), "0-55,112-167")

    def test_more_parts_than_cores_overlap_and_say_so(self) -> None:
        got = plan("workstation", 0, share=(9, 10))  # 8 cores for 10 parts: part 9 -> core 1

        assert got.cpus.to_list() == "1,9"
        assert codes(got.reasons)[-2] == "share_overlap"

    @pytest.mark.parametrize("bad", [(4, 4), (-1, 2), (0, 0)])
    def test_an_index_outside_the_count_is_a_policy_error(self, bad: tuple[int, int]) -> None:
        with pytest.raises(PolicyError):
            Policy(share=bad)

    @pytest.mark.parametrize(("text", "share"), [("1/4", Share(1, 4)), (" 0 / 1 ", Share(0, 1))])
    def test_shares_parse_from_index_slash_count(self, text: str, share: Share) -> None:
        assert Share.parse(text) == share == Policy(share=text).share  # type: ignore[arg-type]

    @pytest.mark.parametrize("text", ["1", "1/", "a/4", "1/4/2", "1.0/4"])
    def test_other_text_is_a_policy_error(self, text: str) -> None:
        with pytest.raises(PolicyError):
            Share.parse(text)


class TestReserve:
    def test_reserve_keeps_the_first_cores_of_every_node_out(self) -> None:
        got = plan("dgx-h100", 0, reserve=2)

        assert got.cpus.to_list() == "2-55,114-167"
        assert Reason.coerce(got.reasons[0]).to_dict() == {
            "code": "reserved_cores", "values": {"reserve": 2, "cpus": "0-1,56-57,112-113,168-169"}
        }
        # No cgroup limits this machine: the reserve, not a cgroup, is what the reasons name.
        assert "node_partly_allowed" not in codes(got.reasons) and "cgroup" not in " ".join(got.reasons)

    def test_in_a_cgroup_the_reasons_count_what_the_cgroup_allows_and_the_reserve_apart(self) -> None:
        got = plan("container-dgx-h100", 0, reserve=2)  # the cgroup allows 0-47,112-159 of node 0's 112 CPUs

        assert got.cpus.to_list() == "2-47,114-159"
        assert [r.values for r in got.reasons if r.code == "node_partly_allowed"] == [
            {"allowed_count": 96, "node": 0, "total": 112}]

    def test_reserve_comes_before_exclusive_shares_and_shares(self) -> None:
        # 54 cores left on node 0 for 4 GPUs: rank 0 gets 54 // 4 = 13 (cores 2-14); part 0 of 2 gets 13 // 2 = 6.
        got = plan("dgx-h100", 0, reserve=2, cpu_scope=CpuScope.EXCLUSIVE, share=(0, 2))

        assert got.cpus.to_list() == "2-7,114-119"

    def test_reserving_every_core_leaves_nothing_to_bind(self) -> None:
        got = plan("dgx-h100", 0, reserve=56)

        assert not got.binds and codes(got.reasons)[0] == "reserved_cores"
        # The node is lost to the reserve, not to the cgroup (which allows every CPU): the reason says so.
        assert codes(got.reasons)[-1] == "node_reserved_no_allowed_node"
        assert got.reasons[-1].values == {"node": 0, "reserve": 56, "cpus": "0-55,112-167"}
        assert "cgroup" not in " ".join(got.reasons)

    def test_reserve_leaves_a_memory_policy_someone_set_alone_as_without_it(self) -> None:
        membind = replace(DGX, mempolicy="bind:0")  # numactl --membind=0 and no CPU option
        got = plan_binding(DGX_TOPOLOGY, [5], membind.allowed(), Policy(reserve=2))

        assert got.memory_policy.value == "none" and codes(got.reasons)[-1] == "memory_policy_set"

    def test_a_gpu_whose_allowed_cores_the_reserve_takes_moves_to_the_nearest_node_and_says_why(self) -> None:
        # The cgroup allows node 0's first two cores and all of node 1; reserve=2 takes node 0's.
        allowed = replace(DGX, cgroup_cpus="0-1,56-111,112-113,168-223", cgroup_mems="0-1").allowed()
        got = plan_binding(DGX_TOPOLOGY, [0], allowed, Policy(reserve=2))

        assert got.nodes == (1,) and codes(got.reasons)[2] == "node_reserved_nearest"
        assert got.reasons[2].values["cpus"] == "0-1,112-113"

    def test_an_explicit_node_whose_cores_are_all_reserved_is_refused(self) -> None:
        with pytest.raises(InvalidNodeError) as caught:
            plan_binding(DGX_TOPOLOGY, [], DGX.allowed(), Policy(reserve=56), node=1)

        assert caught.value.node == 1 and "reserve=56" in caught.value.why

    def test_a_negative_reserve_is_a_policy_error(self) -> None:
        with pytest.raises(PolicyError):
            Policy(reserve=-1)


class TestCacheScope:
    @pytest.mark.parametrize(("gpu", "cpus"), [(4, "96-103,288-295"), (5, "120-127,312-319"), (7, "168-175,360-367")])
    def test_mi300x_gpus_each_take_one_ccd_spread_over_their_socket(self, gpu: int, cpus: str) -> None:
        # Node 1 has 12 CCDs of 8 cores for 4 GPUs: rank r takes CCD 3r (cores 96 + 24r ...).
        got = plan("mi300x", gpu, cpu_scope="cache")

        assert got.cpus.to_list() == cpus and got.nodes == (1,)

    def test_dgx_a100_gpus_take_distinct_ccxs_of_their_nps4_node(self) -> None:
        # Node 3: cores 48-63 in 4 CCXs of 4; GPU 0 rank 0 -> CCX 0, GPU 1 rank 1 -> CCX 2.
        assert plan("dgx-a100", 0, cpu_scope="cache").cpus.to_list() == "48-51,176-179"
        assert plan("dgx-a100", 1, cpu_scope="cache").cpus.to_list() == "56-59,184-187"

    def test_one_l3_per_socket_is_shared_by_the_nodes_gpus(self) -> None:
        got = plan("dgx-h100", 5, cpu_scope="cache")

        assert got.cpus == DGX_TOPOLOGY.node(1).cpus
        assert Reason.coerce(got.reasons[-2]).values == {
            "gpu": "GPU 5 (0000:c3:00.0)", "rank": 1, "count": 4, "node": 1, "level": 3, "position": 0,
            "domains": 1, "cpus": "56-111,168-223",
        }
        assert codes(got.reasons)[-2] == "cache_domain_shared"

    def test_without_cache_domains_the_scope_falls_back_to_the_node(self) -> None:
        topology = replace(DGX_TOPOLOGY, caches=())
        got = plan_binding(topology, [5], DGX.allowed(), Policy(cpu_scope=CpuScope.CACHE))

        assert got.cpus == topology.node(1).cpus
        assert codes(got.reasons)[-2] == "cache_unknown"


class TestNearestNics:
    def test_every_dgx_h100_gpu_has_its_own_nearest_compute_nic_behind_its_switch(self) -> None:
        nearest = [nearest_nics(DGX_TOPOLOGY, gpu) for gpu in DGX_TOPOLOGY.gpus]

        assert [[near.nic.name for near in nics] for nics in nearest] == [
            ["mlx5_0"], ["mlx5_3"], ["mlx5_4"], ["mlx5_5"], ["mlx5_6"], ["mlx5_9"], ["mlx5_10"], ["mlx5_11"]
        ]
        assert {near.distance for nics in nearest for near in nics} == {PcieDistance.SWITCH}

    def test_the_ranking_puts_same_node_before_the_other_socket(self) -> None:
        ranked = ranked_nics(DGX_TOPOLOGY, DGX_TOPOLOGY.gpu(0))
        distances = [near.distance for near in ranked]

        assert distances == sorted(distances, key=lambda d: d.rank)
        assert {near.nic.numa_node for near in ranked if near.distance is PcieDistance.NODE} == {0}
        assert {near.nic.numa_node for near in ranked if near.distance is PcieDistance.SYSTEM} == {1}

    def test_dgx_a100_gpu_pairs_share_the_two_hcas_of_their_switch(self) -> None:
        topology = machine("dgx-a100").topology()

        for gpu, names in [(0, ["mlx5_0", "mlx5_1"]), (1, ["mlx5_0", "mlx5_1"]), (6, ["mlx5_8", "mlx5_9"])]:
            assert [near.nic.name for near in nearest_nics(topology, topology.gpu(gpu))] == names

    def test_gb200_gpus_get_their_graces_infiniband_nics_before_the_ethernet_dpu(self) -> None:
        topology = machine("gb200").topology()

        assert [n.nic.name for n in nearest_nics(topology, topology.gpu(1))] == ["mlx5_0", "mlx5_1"]
        assert [n.nic.name for n in nearest_nics(topology, topology.gpu(2))] == ["mlx5_4", "mlx5_5"]
        assert {n.distance for n in nearest_nics(topology, topology.gpu(2))} == {PcieDistance.NODE}

    @pytest.mark.parametrize(
        ("first", "second", "expected"),
        [
            (("pci0000:15", "0000:15:01.0", "a"), ("pci0000:15", "0000:15:01.0", "b"), (PcieDistance.SWITCH, 2)),
            (("pci0000:15", "0000:15:01.0", "a"), ("pci0000:15", "0000:15:02.0", "b"), (PcieDistance.HOST_BRIDGE, 4)),
            (("pci0000:15", "a"), ("pci0000:3d", "b"), (PcieDistance.NODE, None)),
            ((), ("pci0000:3d", "b"), (PcieDistance.NODE, None)),
        ],
    )
    def test_pcie_distance_classes(self, first, second, expected) -> None:
        across_sockets = expected if expected[1] is not None else (PcieDistance.SYSTEM, None)

        assert pcie_distance(first, 0, second, 0) == expected
        assert pcie_distance(first, 0, second, 1) == across_sockets  # a shared bridge is on one socket anyway

    def test_the_plan_carries_the_nearest_nics_of_its_gpus(self) -> None:
        got = plan_binding(DGX_TOPOLOGY, [0, 5], DGX.allowed())

        assert [nic.name for nic in got.nics] == ["mlx5_0", "mlx5_9"]
        assert [entry["name"] for entry in got.to_dict()["nics"]] == ["mlx5_0", "mlx5_9"]

    def test_topo_json_lists_each_gpus_nearest_nics(self) -> None:
        shape = DGX_TOPOLOGY.to_dict()

        assert shape["gpus"][5]["nics"] == [
            {"name": "mlx5_9", "pci_bus_id": "0000:c0:00.0", "numa_node": 1, "ports": [1], "netdevs": ["ibp192s0"],
             "link_layer": "InfiniBand", "distance": "switch", "hops": 4}
        ]  # fmt: skip
        assert len(shape["nics"]) == 12 and len(shape["caches"]) == 2


class TestChildEnvironment:
    def test_a_dgx_h100_gpu_5_child_gets_its_node_cpus_and_nic(self) -> None:
        assert plan("dgx-h100", 5).env() == {
            "OMP_NUM_THREADS": "28",  # 112 CPUs local to 4 GPUs: a quarter each
            "OMP_PLACES": "{70}:14,{182}:14",  # rank 1 of the node's 4 GPUs: its own 14 cores, siblings with them
            "OMP_PROC_BIND": "close",
            "GPUNUMA_NODE": "1",
            "GPUNUMA_CPUS": "56-111,168-223",
            "NCCL_IB_HCA": "=mlx5_9:1",
            "UCX_NET_DEVICES": "mlx5_9:1",
        }

    def test_a_plan_that_does_not_bind_hands_down_only_the_nics(self) -> None:
        got = plan("dgx-h100", 0, reserve=56)

        assert got.env() == {"NCCL_IB_HCA": "=mlx5_0:1", "UCX_NET_DEVICES": "mlx5_0:1"}

    def test_a_report_hands_down_what_was_bound(self) -> None:
        planned = plan("dgx-h100", 5, share=(3, 4))
        bound = BindingReport(planned, True, "simulated", planned.cpus, "preferred", (1,), ())
        refused = replace(bound, bound=False)

        assert bound.env()["GPUNUMA_CPUS"] == "98-111,210-223" and bound.env()["OMP_NUM_THREADS"] == "28"
        assert refused.env() == {"NCCL_IB_HCA": "=mlx5_9:1", "UCX_NET_DEVICES": "mlx5_9:1"}

    def test_single_cpus_are_single_places(self) -> None:
        assert omp_places(CpuSet.parse_list("3,5-6")) == "{3},{5}:2"
        assert child_env(CpuSet(), (), ()) == {}

    def test_fill_in_never_overwrites_what_the_user_set(self) -> None:
        extra = {"OMP_NUM_THREADS": "112", "NCCL_IB_HCA": "=mlx5_9:1"}

        assert fill_in({"OMP_NUM_THREADS": "8"}, extra) == {"NCCL_IB_HCA": "=mlx5_9:1"}


class TestTheRootReadsWhatThePolicyNeeds:
    """The composition root reads each CPU's core and cache only for policies that look at them."""

    @pytest.mark.parametrize(
        ("policy", "cpus"),
        [
            (Policy(share=(1, 4)), "70-83,182-195"),  # siblings together: the layout was read
            (Policy(reserve=2), "58-111,170-223"),
            (Policy(cpu_scope=CpuScope.CACHE), "56-111,168-223"),
        ],
    )
    def test_node_scope_policies_that_split_cores_read_the_cpu_layout(self, rendered, policy, cpus) -> None:
        options = Options(source="sysfs", machine=CapturedTree(str(rendered("dgx-h100"))), policy=policy)

        got = compose.plan(options, physical=[5], environment=GpuEnvironment())

        assert got.cpus.to_list() == cpus
        assert [nic.name for nic in got.nics] == ["mlx5_9"]

    def test_a_plain_node_plan_still_carries_its_nics(self, rendered) -> None:
        options = Options(source="sysfs", machine=CapturedTree(str(rendered("dgx-h100"))))

        got = compose.plan(options, physical=[5], environment=GpuEnvironment())

        assert (got.cpus.to_list(), [nic.name for nic in got.nics]) == ("56-111,168-223", ["mlx5_9"])


class TestThreadsForChildren:
    """OMP_NUM_THREADS: a process's part of CPUs the processes of several GPUs are planned on, one per GPU."""

    @pytest.mark.parametrize(
        ("name", "gpu", "policy", "threads", "sharing"),
        [
            ("dgx-h100", 5, {}, 28, 4),
            ("dgx-a100", 0, {}, 16, 2),
            ("gb200", 2, {}, 36, 2),
            # The cgroup allows node 0 only: GPUs 4-7 fall back to it too, so eight processes share 96 CPUs.
            ("container-dgx-h100", 5, {}, 12, 8),
            # GPUs report socket-wide local CPUs, but two are planned on node 0 itself.
            ("snc-socket-affinity", 0, {}, 24, 2),
            # No locality reported: spread two GPUs to a node.
            ("cloud-vm", 0, {"spread_unknown": True}, 4, 2),
            ("snc", 3, {"cpu_scope": CpuScope.SOCKET}, 24, 4),
        ],
    )
    def test_the_planned_cpus_are_divided_among_the_gpus_planned_on_them(
        self, name, gpu, policy, threads, sharing
    ) -> None:
        got = plan(name, gpu, **policy)

        assert got.threads == threads and got.env()["OMP_NUM_THREADS"] == str(threads)
        (shared,) = with_code(got.reasons, "threads_shared")
        places = got.places
        assert shared.values == {"threads": threads, "cpus": len(got.cpus), "gpus": sharing, "mine": 1,
                                 "places": places.to_list()}
        assert places < got.cpus and len(places) == threads, "its own part of them, a place per thread"

    @pytest.mark.parametrize(("name", "gpu"), [("gh200", 0), ("snc-socket-affinity", 4)])
    def test_a_process_alone_on_its_cpus_keeps_one_thread_per_cpu(self, name, gpu) -> None:
        got = plan(name, gpu)

        assert got.threads is None and not with_code(got.reasons, "threads_shared")
        assert got.env()["OMP_NUM_THREADS"] == str(len(got.cpus))

    def test_a_process_owning_every_gpu_of_its_cpus_gets_one_thread_per_cpu(self) -> None:
        got = plan_binding(DGX_TOPOLOGY, [4, 5, 6, 7], DGX.allowed())

        assert got.threads is None and got.env()["OMP_NUM_THREADS"] == "112"

    @pytest.mark.parametrize("options", [{"share": (3, 4)}, {"cpu_scope": CpuScope.EXCLUSIVE}],
                             ids=["share", "exclusive"])
    def test_scopes_that_split_the_cpus_already_give_one_thread_per_cpu(self, options) -> None:
        got = plan("dgx-h100", 5, **options)

        assert got.threads is None and got.env()["OMP_NUM_THREADS"] == str(len(got.cpus))


    def test_a_report_bound_to_fewer_cpus_never_hands_down_more_threads_than_cpus(self) -> None:
        planned = plan("dgx-h100", 5)  # 28 threads planned
        fewer = CpuSet.parse_list("56-59")
        bound = BindingReport(planned, True, "simulated", fewer, "preferred", (1,), ())

        assert planned.threads == 28 and bound.env()["OMP_NUM_THREADS"] == "4"
