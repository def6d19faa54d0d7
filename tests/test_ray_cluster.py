"""A two-node Ray cluster whose nodes simulate two different machines: a DGX H100 and a GB200 tray.

The ``simulated_ray_cluster`` fixture (the gpunuma_fakes pytest plugin) gives each Ray node a custom
resource naming its machine, so actors can be placed on purpose, and ``GPUNUMA_SIMULATE`` naming it in
every worker's environment; inside the actor, :class:`RayNodeTopology` / :class:`RayNodeBinder` pick the
machine from the Ray node id the actor landed on, and gpunuma's own argument-free calls read
``GPUNUMA_SIMULATE``. Each actor must bind by the machine it landed on.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ray = pytest.importorskip("ray")

from gpunuma.core.cpuset import CpuSet  # noqa: E402
from gpunuma.integrations.ray import start_bound_actor  # noqa: E402
from gpunuma_fakes import machine  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.simulated_ray_cluster("dgx-h100", "gb200")]

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Placement:
    """The heavy object: says which Ray node and GPU the actor ended on."""

    def __init__(self) -> None:
        self.node_id = ray.get_runtime_context().get_node_id()
        self.visible = os.environ.get("CUDA_VISIBLE_DEVICES")

    def where(self) -> tuple[str, str | None]:
        return self.node_id, self.visible


def test_each_actor_binds_by_the_machine_its_ray_node_simulates(simulated_ray_cluster):
    cluster = simulated_ray_cluster
    nodes = {node_id: simulated.name for node_id, simulated in cluster.machines.items()}
    wanted = ["dgx-h100"] * 8 + ["gb200"] * 4
    actors = [
        start_bound_actor(
            Placement,
            actor_options=cluster.on(name),
            source=cluster.source,
            binder=cluster.binder,
            label=f"{name}/{rank}",
        )
        for rank, name in enumerate(wanted)
    ]
    try:
        ray.get([a.ping.remote() for a in actors])
        reports = ray.get([a.binding_report.remote() for a in actors])
        places = ray.get([a.call.remote("where") for a in actors])
    finally:
        for actor in actors:
            ray.kill(actor)

    expected_cpus = {
        ("dgx-h100", 0): CpuSet.parse_list("0-55,112-167"),
        ("dgx-h100", 1): CpuSet.parse_list("56-111,168-223"),
        ("gb200", 0): CpuSet.parse_list("0-71"),
        ("gb200", 1): CpuSet.parse_list("72-143"),
    }
    seen: dict[str, list[int]] = {"dgx-h100": [], "gb200": []}
    for name, report, (node_id, visible) in zip(wanted, reports, places, strict=True):
        assert nodes[node_id] == name, "the custom resource placed the actor on its machine's node"
        (gpu,) = report.plan.gpus
        assert str(gpu) == visible
        node = machine(name).expected_nodes[gpu]
        assert report.bound and report.plan.nodes == (node,)
        assert report.cpus == expected_cpus[(name, node)]
        seen[name].append(gpu)
    assert sorted(seen["dgx-h100"]) == list(range(8))
    assert sorted(seen["gb200"]) == list(range(4))


@ray.remote(num_cpus=0)
class UnchangedWorker:
    """A serving worker as a downstream project writes it: gpunuma's argument-free calls, nothing simulated."""

    def start(self) -> dict[str, object]:
        import gpunuma

        report = gpunuma.bind_to_gpu()
        check = gpunuma.check_process(physical=ray.get_gpu_ids())  # what an operator names for a Ray actor
        return {
            "simulate": os.environ.get("GPUNUMA_SIMULATE"), "gpus": report.plan.gpus, "nodes": report.plan.nodes,
            "method": report.method, "verdict": check.verdict.value,
        }


@pytest.mark.parametrize("name", ["dgx-h100", "gb200"])
def test_an_unchanged_actor_binds_by_the_gpunuma_simulate_its_node_gives_it(simulated_ray_cluster, name):
    actor = UnchangedWorker.options(**simulated_ray_cluster.on(name, num_gpus=1)).remote()  # type: ignore[attr-defined]
    try:
        started = ray.get(actor.start.remote())
    finally:
        ray.kill(actor)

    (gpu,) = started["gpus"]
    assert started["simulate"] == name and started["method"] == "simulated"
    assert started["nodes"] == (machine(name).expected_nodes[gpu],) and started["verdict"] == "as_expected"


def test_a_ray_init_elsewhere_on_the_host_never_finds_the_simulated_cluster(simulated_ray_cluster):
    probe = "from ray._private.services import canonicalize_bootstrap_address as c; print(c(None))"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_TMPDIR")}

    found = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)

    assert simulated_ray_cluster.address and simulated_ray_cluster.address not in found.stdout
    assert os.path.isdir(simulated_ray_cluster.temp_dir) and "RAY_ADDRESS" not in os.environ
