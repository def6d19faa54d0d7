"""tinyserve's Ray actors on a simulated DGX H100 node: each binds by the GPU Ray gives it."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

from tinyserve.ray_app import WorkerActor  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.simulated_ray_cluster("dgx-h100")]


def test_every_actor_and_its_scheduler_thread_run_on_their_gpus_node(simulated_ray_cluster):
    actors = [WorkerActor.remote() for _ in range(2)]
    try:
        health = ray.get([actor.health.remote() for actor in actors])
    finally:
        for actor in actors:
            ray.kill(actor)

    for actor in health:
        node = 0 if actor["gpu"] < 4 else 1  # DGX H100: GPUs 0-3 on node 0, 4-7 on node 1
        assert actor["ok"] and actor["nodes"] == [node]
        assert actor["scheduler_cpus"] == ("0-55,112-167" if node == 0 else "56-111,168-223")
