"""A two-node Ray cluster whose nodes simulate two different machines: a DGX H100 and a GB200 tray.

Each Ray node carries a custom resource naming its machine, so actors can be placed on purpose;
inside the actor, :class:`RayNodeTopology` / :class:`RayNodeBinder` pick the machine from the
Ray node id the actor landed on. Each actor must bind by the machine it landed on.
"""

from __future__ import annotations

import os
import sys

import pytest

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

from gpunuma.adapters.auto import AutoTopology  # noqa: E402
from gpunuma.core.cpuset import CpuSet  # noqa: E402
from gpunuma.integrations.ray import RayNodeBinder, RayNodeTopology, start_bound_actor  # noqa: E402
from gpunuma_fakes.catalogue import machine  # noqa: E402
from gpunuma_fakes.kernel import SimulatedKernel  # noqa: E402
from gpunuma_fakes.nvml import FakeNvml  # noqa: E402
from gpunuma_fakes.render import render_sysfs  # noqa: E402

pytestmark = pytest.mark.ray

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Placement:
    """The heavy object: says which Ray node and GPU the actor ended on."""

    def __init__(self) -> None:
        self.node_id = ray.get_runtime_context().get_node_id()
        self.visible = os.environ.get("CUDA_VISIBLE_DEVICES")

    def where(self) -> tuple[str, str | None]:
        return self.node_id, self.visible


@pytest.fixture(scope="module")
def two_machines(tmp_path_factory: pytest.TempPathFactory):
    """Head node = dgx-h100 (8 GPUs), worker node = gb200 (4 GPUs); yields node id -> machine name."""
    cluster = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "num_gpus": 8, "resources": {"dgx-h100": 8}, "include_dashboard": False},
    )
    try:
        worker = cluster.add_node(num_cpus=1, num_gpus=4, resources={"gb200": 4})
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        nodes = {cluster.head_node.node_id: "dgx-h100", worker.node_id: "gb200"}
        trees = {name: render_sysfs(machine(name), tmp_path_factory.mktemp(name)) for name in nodes.values()}
        source = RayNodeTopology(
            {nid: AutoTopology(nvml=FakeNvml(machine(name)), root=str(trees[name])) for nid, name in nodes.items()}
        )
        binder = RayNodeBinder({nid: SimulatedKernel.for_machine(machine(name)) for nid, name in nodes.items()})
        yield nodes, source, binder
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_each_actor_binds_by_the_machine_its_ray_node_simulates(two_machines):
    nodes, source, binder = two_machines
    wanted = ["dgx-h100"] * 8 + ["gb200"] * 4
    actors = [
        start_bound_actor(
            Placement,
            actor_options={"num_cpus": 0, "resources": {name: 1}},
            source=source,
            binder=binder,
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
