"""Fractional-GPU Ray actors on one simulated GPU take disjoint shares of its node without anyone counting.

One local Ray cluster whose only node simulates a two-socket machine with one GPU (on node 0, eight
SMT cores); actors ask for ``num_gpus=0.25``, so Ray packs four of them onto that GPU.
"""

from __future__ import annotations

import sys

import pytest

ray = pytest.importorskip("ray")

from gpunuma.core.cpuset import CpuSet  # noqa: E402
from gpunuma.core.policy import CpuScope, Policy, Share  # noqa: E402
from gpunuma.core.reasons import Reason, codes  # noqa: E402
from gpunuma.integrations.ray import start_bound_actor  # noqa: E402
from gpunuma_fakes.builder import build, gpu  # noqa: E402

ONE_GPU = build(
    name="one-gpu", sockets=2, cores_per_node=8, smt=2, gpus=[gpu("0000:1b:00.0", 0, chassis="one-gpu")],
    expected_nodes={0: 0},
)

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.simulated_ray_cluster(ONE_GPU)]

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Worker:
    """A tokenizer or DP-attention rank: nothing to do but exist."""


def start(cluster, count: int, **bind_options: object) -> list[object]:
    actors = [
        start_bound_actor(Worker, num_gpus=0.25, actor_options=cluster.on("one-gpu"), source=cluster.source,
                          binder=cluster.binder, label=f"rank{rank}", **bind_options)
        for rank in range(count)
    ]
    ray.get([actor.ping.remote() for actor in actors])
    return actors


@pytest.fixture
def actors():
    started: list[object] = []
    yield started
    for actor in started:
        ray.kill(actor)


def test_four_quarter_gpu_actors_take_the_four_parts_of_the_gpus_node(simulated_ray_cluster, actors):
    actors.extend(start(simulated_ray_cluster, 4))
    reports = ray.get([actor.binding_report.remote() for actor in actors])

    assert all(report.bound and report.plan.gpus == (0,) for report in reports)
    assert sorted(report.plan.policy.share.index for report in reports) == [0, 1, 2, 3]
    assert {report.plan.policy.share.count for report in reports} == {4}
    parts = [report.cpus for report in reports]
    for i, part in enumerate(parts):  # node 0 = cores 0-7 with siblings 16-23; two whole cores each
        assert len(part) == 4 and all(part.isdisjoint(other) for other in parts[i + 1 :])
    assert CpuSet.of(cpu for part in parts for cpu in part) == CpuSet.parse_list("0-7,16-23")
    for report in reports:
        first = Reason.coerce(report.plan.reasons[0])
        assert first.code == "share_from_ray"
        assert first.values == {"index": report.plan.policy.share.index, "count": 4, "fraction": 0.25, "gpu": "0"}


def test_shares_compose_with_the_exclusive_scope(simulated_ray_cluster, actors):
    actors.extend(start(simulated_ray_cluster, 4, policy=Policy(cpu_scope=CpuScope.EXCLUSIVE)))
    reports = ray.get([actor.binding_report.remote() for actor in actors])

    parts = [report.cpus for report in reports]
    assert all(report.bound for report in reports)
    assert len({part for part in parts}) == 4 and sum(len(part) for part in parts) == 16


def test_an_explicit_share_wins_over_the_derived_one(simulated_ray_cluster, actors):
    actors.extend(start(simulated_ray_cluster, 1, policy=Policy(share=Share(3, 4))))
    (report,) = ray.get([actor.binding_report.remote() for actor in actors])

    assert report.plan.policy.share == Share(3, 4) and report.cpus == CpuSet.parse_list("6-7,22-23")
    assert "share_from_ray" not in codes(report.plan.reasons)
