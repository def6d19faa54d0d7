"""The Ray flow on simulated machines: GPU actors on a 2-core CI box, each bound in-process.

One local Ray cluster serves the module, with one Ray node per simulated machine holding exactly
that machine's GPUs, so every GPU id Ray hands out exists on the machine the actor landed on (a
single node with eight GPUs once gave a 4-GPU GB200 actor GPU 5, which it cannot bind). Each actor
gets the real sysfs+NVML adapters over its machine's rendered tree and a simulated kernel, pickled
into the actor; Ray's own GPU assignment picks the GPU. On ``split_host`` the real binder moves the
actor's real threads onto this host's real CPUs.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

import pytest

ray = pytest.importorskip("ray")

from gpunuma.adapters.procfs import read_thread_affinities  # noqa: E402
from gpunuma.adapters.static import StaticTopology  # noqa: E402
from gpunuma.adapters.sysfs import SysfsTopology  # noqa: E402
from gpunuma.core.cpuset import CpuSet  # noqa: E402
from gpunuma.core.policy import Policy  # noqa: E402
from gpunuma.core.readback import Drift  # noqa: E402
from gpunuma.errors import NotBoundError  # noqa: E402
from gpunuma.integrations.ray import GpuBoundActor, bind_this_process, start_bound_actor  # noqa: E402
from gpunuma_fakes import machine, split_host  # noqa: E402

#: This host as two nodes of two GPUs each (one node on a 1-CPU box): the real binder's machine.
HOST = split_host(min(2, len(os.sched_getaffinity(0))), gpus_per_node=2)

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.simulated_ray_cluster("dgx-h100", "gh200", "gb200", "cloud-vm", HOST),
]

# Test-module classes travel to the workers by value (the workers cannot import this module).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class TinyModel:
    """The "heavy object": remembers the devices Ray made visible when it was built."""

    def __init__(self, width: int = 4) -> None:
        self.width = width
        self.visible = os.environ.get("CUDA_VISIBLE_DEVICES")

    def forward(self, x: int) -> int:
        return x * self.width

    def visible_devices(self) -> str | None:
        return self.visible

    def thread_affinities(self) -> dict[int, CpuSet]:
        """Every real thread of this actor process and its CPUs, as the kernel reports them now."""
        return read_thread_affinities()

    def start_a_pinned_thread(self, cpus: list[int]) -> int:
        """Start a thread and pin it to ``cpus`` with ``sched_setaffinity`` on its id, as a library does its own."""
        self.stop = threading.Event()
        self.pinned = threading.Thread(target=self.stop.wait, daemon=True)
        self.pinned.start()
        assert self.pinned.native_id is not None
        os.sched_setaffinity(self.pinned.native_id, cpus)
        return self.pinned.native_id


class OwnActor:
    """A user's existing actor: binds in its first line, keeps the gpunuma log lines it emitted."""

    def __init__(self, source: object, binder: object, label: str) -> None:
        self.lines: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: self.lines.append(record.getMessage())  # type: ignore[method-assign]
        gpunuma_log = logging.getLogger("gpunuma")
        gpunuma_log.addHandler(handler)
        gpunuma_log.setLevel(logging.INFO)
        try:
            self.report = bind_this_process(source=source, binder=binder, label=label)  # type: ignore[arg-type]
        finally:
            gpunuma_log.removeHandler(handler)

    def result(self) -> tuple[object, list[str], list[int]]:
        return self.report, self.lines, [int(g) for g in ray.get_gpu_ids()]


class UnmodifiedServer:
    """A server's scheduler actor as it ships: binds with no arguments, no test hooks in its code."""

    def __init__(self) -> None:
        self.report = bind_this_process(label="TP0")

    def result(self) -> tuple[object, list[int], list[tuple[str, bool]]]:
        handlers = [(type(h).__name__, getattr(h, "stream", None) is sys.stderr)
                    for h in logging.getLogger("gpunuma").handlers]
        return self.report, sorted(read_thread_affinities()), handlers


@pytest.fixture(scope="module")
def cluster(simulated_ray_cluster):
    return simulated_ray_cluster


def adapters(simulated_trees, name: str, **kernel_options: object) -> dict[str, object]:
    """The real sysfs+NVML source over the machine's tree, and its simulated kernel."""
    simulated = machine(name)
    return {"source": simulated.source(simulated_trees(simulated)), "binder": simulated.kernel(**kernel_options)}


def start(cluster, name: str, count: int, **kwargs: object) -> list[object]:
    """``count`` bound TinyModel actors on the Ray node that simulates machine ``name``."""
    return [
        start_bound_actor(TinyModel, actor_options=cluster.on(name), label=f"TP{rank}", **kwargs)
        for rank in range(count)
    ]


def reports_of(actors: list[object]) -> list[object]:
    """Each actor's binding report, once every actor finished ``__init__``."""
    ray.get([actor.ping.remote() for actor in actors])
    return ray.get([actor.binding_report.remote() for actor in actors])


@pytest.fixture
def actors():
    """Actors a test started; killed afterwards (the next test's actors wait for their GPUs)."""
    started: list[object] = []
    yield started
    for actor in started:
        ray.kill(actor)


def test_each_ray_node_offers_exactly_its_machines_gpus(cluster):
    offered = {node["NodeID"]: node["Resources"].get("GPU", 0) for node in ray.nodes() if node["Alive"]}

    assert offered == {node_id: len(m.gpus) for node_id, m in cluster.machines.items()}


def test_dgx_h100_eight_actors_bind_to_the_node_of_the_gpu_ray_gave_them(cluster, simulated_trees, actors):
    dgx = machine("dgx-h100")
    actors.extend(start(cluster, "dgx-h100", 8, **adapters(simulated_trees, "dgx-h100")))
    reports = reports_of(actors)
    visible = ray.get([actor.call.remote("visible_devices") for actor in actors])

    # GPUs 0-3 (buses 1b,43,52,61) hang off node 0, GPUs 4-7 (9d,c3,d1,df) off node 1.
    assert sorted(r.plan.gpus for r in reports) == [(g,) for g in range(8)]
    for report, cvd in zip(reports, visible, strict=True):
        (gpu,) = report.plan.gpus
        assert str(gpu) == cvd, "the GPU bound must be the one Ray made visible"
        node = 0 if gpu < 4 else 1
        assert report.bound and report.ok
        assert report.plan.nodes == (node,)
        assert report.cpus == dgx.node_cpus(node)
        assert report.cpus == CpuSet.parse_list("0-55,112-167" if node == 0 else "56-111,168-223")
        assert report.memory_policy == "preferred" and report.memory_nodes == (node,)
        # The simulated kernel moved every thread of the actor process, not only the caller.
        assert {t.cpus for t in report.kernel.threads} == {report.cpus}
    assert ray.get([actor.call.remote("forward", 3) for actor in actors]) == [12] * 8


def test_dgx_h100_exclusive_scope_gives_eight_disjoint_cpu_sets(cluster, simulated_trees, actors):
    dgx = machine("dgx-h100")
    actors.extend(start(cluster, "dgx-h100", 8, policy=Policy(cpu_scope="exclusive"),
                        **adapters(simulated_trees, "dgx-h100")))
    reports = reports_of(actors)

    cpu_sets = [r.cpus for r in reports]
    assert all(r.bound for r in reports)
    for i, first in enumerate(cpu_sets):
        for second in cpu_sets[i + 1 :]:
            assert first.isdisjoint(second), [r.reasons for r in reports]
    for report in reports:
        (gpu,) = report.plan.gpus
        node = 0 if gpu < 4 else 1
        # Four GPUs share each node's 56 cores: 14 whole cores (28 CPUs with SMT) each.
        assert report.cpus <= dgx.node_cpus(node)
        assert len(report.cpus) == 28


def test_gh200_actor_binds_to_the_grace_node_next_to_its_gpu_memory(cluster, simulated_trees, actors):
    actors.extend(start(cluster, "gh200", 1, **adapters(simulated_trees, "gh200")))
    (report,) = reports_of(actors)

    # The GPU's memory is CPU-less node 1; the only Grace node (distance 80) is node 0.
    assert report.plan.gpus == (0,)
    assert report.bound and report.plan.nodes == (0,)
    assert report.cpus == CpuSet.parse_list("0-71")
    assert report.memory_nodes == (0,)


def test_gb200_actors_bind_to_the_grace_node_of_their_gpu(cluster, simulated_trees, actors):
    actors.extend(start(cluster, "gb200", 4, **adapters(simulated_trees, "gb200")))
    reports = reports_of(actors)

    nodes = {r.plan.gpus: r.plan.nodes for r in reports}
    # GPU0,1 (HBM nodes 2, 10) hang off Grace node 0; GPU2,3 (HBM nodes 18, 26) off node 1.
    assert nodes == {(0,): (0,), (1,): (0,), (2,): (1,), (3,): (1,)}
    for report in reports:
        assert report.bound
        assert report.cpus == CpuSet.parse_list("0-71" if report.plan.nodes == (0,) else "72-143")


def test_cloud_vm_actors_start_unbound_and_say_why(cluster, simulated_trees, actors):
    actors.extend(start(cluster, "cloud-vm", 4, **adapters(simulated_trees, "cloud-vm")))
    reports = reports_of(actors)

    for report in reports:
        assert not report.bound
        assert report.cpus == CpuSet()
        assert "gpu_locality_unknown" in report.reason_codes, report.reasons
    assert ray.get([actor.call.remote("forward", 2) for actor in actors]) == [8] * 4


def test_a_strict_actor_that_cannot_bind_fails_in_the_driver_with_the_typed_error(cluster, simulated_trees, actors):
    actors.extend(start(cluster, "dgx-h100", 1, strict=True, **adapters(simulated_trees, "dgx-h100", fail="cpu")))

    with pytest.raises(NotBoundError) as caught:  # by type, in the driver: no text to match
        ray.get(actors[0].ping.remote())
    assert caught.value.report.reason_codes[-1] == "bind_failed"
    assert "sched_setaffinity" in str(caught.value) and "every thread was restored" in str(caught.value)
    with pytest.raises(NotBoundError):
        ray.get(actors[0].call.remote("forward", 1))  # the heavy object was never built


def test_strict_from_the_environment_fails_the_actor_with_the_typed_error(cluster, simulated_trees, actors):
    actor = start_bound_actor(
        TinyModel,
        actor_options=cluster.on("cloud-vm", runtime_env={"env_vars": {"GPUNUMA_STRICT": "1"}}),
        **adapters(simulated_trees, "cloud-vm"),
    )
    actors.append(actor)

    with pytest.raises(NotBoundError) as caught:
        ray.get(actor.ping.remote())
    assert caught.value.report.reason_codes[-1] == "gpu_locality_unknown"


def test_best_effort_binding_failure_keeps_the_actor_running_unbound(cluster, simulated_trees, actors):
    actors.extend(start(cluster, "dgx-h100", 1, **adapters(simulated_trees, "dgx-h100", fail="cpu")))
    (report,) = reports_of(actors)

    assert not report.bound
    assert report.summary().startswith("not bound: binding failed and was undone")
    assert ray.get(actors[0].call.remote("forward", 5)) == 20


def test_bind_disabled_by_environment_records_the_plan_without_binding(cluster, simulated_trees, actors):
    source = adapters(simulated_trees, "dgx-h100")["source"]
    actor = start_bound_actor(
        TinyModel,
        source=source,
        actor_options=cluster.on("dgx-h100", runtime_env={"env_vars": {"GPUNUMA_BIND": "0"}}),
    )
    actors.append(actor)
    (report,) = reports_of(actors)

    assert not report.bound and report.method == "noop"
    assert report.plan.binds, "the plan is still made, only not applied"
    assert any("dry run" in reason for reason in report.reasons)


def test_existing_actor_binds_itself_and_logs_one_line(cluster, simulated_trees, actors):
    remote = ray.remote(num_gpus=1, **cluster.on("dgx-h100"))(OwnActor)
    actor = remote.remote(label="TP3", **adapters(simulated_trees, "dgx-h100"))
    actors.append(actor)
    report, lines, gpu_ids = ray.get(actor.result.remote())

    (gpu,) = gpu_ids
    node = 0 if gpu < 4 else 1
    cpus = "0-55,112-167" if node == 0 else "56-111,168-223"
    assert report.plan.gpus == (gpu,)
    assert [line for line in lines if line.startswith("[TP3] ")] == [
        f"[TP3] bound to NUMA node {node} (CPUs {cpus}), memory preferred {node} for GPU {gpu}"
    ]


def test_gpu_bound_actor_builds_the_heavy_object_only_after_binding(monkeypatch):
    """In-process: the factory runs after the binder applied the plan (the order is the point)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    dgx = machine("dgx-h100")
    kernel = dgx.kernel()
    seen: list[int] = []

    def factory() -> TinyModel:
        seen.append(len(kernel.applied))
        return TinyModel()

    actor = GpuBoundActor(
        factory, source=StaticTopology(dgx.topology(), dgx.allowed()), binder=kernel
    )
    assert seen == [1]
    assert actor.ping() and actor.call("forward", 1) == 4
    # No Ray GPU assignment in this process: CUDA_VISIBLE_DEVICES=5 names the GPU (on node 1).
    assert actor.binding_report().plan.gpus == (5,)
    assert actor.binding_report().plan.nodes == (1,)


def test_sysfs_source_alone_binds_dgx_actors_too(cluster, simulated_trees, actors):
    """No NVML at all: the kernel's PCI numa_node is enough."""
    dgx = machine("dgx-h100")
    actors.extend(start(cluster, "dgx-h100", 2, source=SysfsTopology(root=simulated_trees(dgx)), binder=dgx.kernel()))
    for report in reports_of(actors):
        (gpu,) = report.plan.gpus
        assert report.bound and report.plan.nodes == (0 if gpu < 4 else 1,)


def test_split_host_actors_bind_every_real_thread_with_the_real_binder(cluster, simulated_trees, actors):
    """The real binder (libnuma, else raw syscalls) in each actor, on this host's real CPUs."""
    actors.extend(start(cluster, HOST.name, len(HOST.gpus), source=HOST.source(simulated_trees(HOST))))
    reports = reports_of(actors)
    threads = ray.get([actor.call.remote("thread_affinities") for actor in actors])

    assert sorted(r.plan.gpus for r in reports) == [(g,) for g in range(len(HOST.gpus))]
    for report, now in zip(reports, threads, strict=True):
        (gpu,) = report.plan.gpus
        node = HOST.expected_nodes[gpu]
        planned = CpuSet.parse_list(HOST.nodes[node].cpus) & HOST.allowed().cpus
        assert report.bound and report.method in ("libnuma", "syscall"), report.reasons
        assert report.plan.nodes == (node,) and report.cpus == planned and report.mismatches == ()
        assert report.memory_nodes == (0,), "memory stays on the host's real node"
        assert len(now) > 1, "a Ray actor runs several threads"
        assert set(now.values()) == {planned}, "every real thread of the actor, read from /proc, is on its CPUs"
        assert {t.cpus for t in report.kernel.threads} == {planned}, "and every thread the binder read back"


@pytest.mark.skipif(len(HOST.nodes) < 2, reason="a thread can be moved off its node only with two nodes")
def test_a_bound_actor_verifies_and_puts_back_a_thread_a_library_moved(cluster, simulated_trees, actors):
    """The real binder in the actor, on this host's real CPUs: a thread pinned to the other node, then repaired."""
    actors.extend(start(cluster, HOST.name, 1, source=HOST.source(simulated_trees(HOST))))
    (report,) = reports_of(actors)
    (actor,) = actors
    elsewhere = sorted(HOST.allowed().cpus - report.cpus)
    tid = ray.get(actor.call.remote("start_a_pinned_thread", elsewhere))

    found = ray.get(actor.verify.remote())
    repaired = ray.get(actor.verify.remote(repair=True))
    threads = ray.get(actor.call.remote("thread_affinities"))

    assert found.drift_of(tid) is Drift.MOVED and not found.ok
    assert [(r.tid, r.drift) for r in repaired.repaired] == [(tid, Drift.MOVED)] and repaired.ok
    assert threads[tid] == report.cpus and set(threads.values()) == {report.cpus}
    assert repaired.memory is not None and repaired.local_fraction == 1.0, "one real node holds all its memory"


def test_an_actor_with_num_gpus_0_is_not_bound_and_says_it_holds_no_gpu(cluster, simulated_trees, actors):
    actors.append(
        start_bound_actor(TinyModel, num_gpus=0, actor_options=cluster.on("dgx-h100"),
                          **adapters(simulated_trees, "dgx-h100"))
    )
    (report,) = reports_of(actors)

    assert not report.bound and report.plan.gpus == ()
    assert report.reason_codes == ("ray_worker_without_gpu",)


def test_gpunuma_simulate_in_runtime_env_binds_an_unmodified_server(cluster, actors):
    options = cluster.on("dgx-h100", runtime_env={"env_vars": {"GPUNUMA_SIMULATE": "dgx-h100"}})
    actor = ray.remote(num_gpus=1, **options)(UnmodifiedServer).remote()
    actors.append(actor)
    report, threads, handlers = ray.get(actor.result.remote())

    (gpu,) = report.plan.gpus
    assert report.bound and report.method == "simulated"
    assert report.plan.nodes == (machine("dgx-h100").expected_nodes[gpu],)
    assert {t.tid for t in report.kernel.threads} <= set(threads), "the actor's own threads were simulated"
    # Nothing configured logging in the worker: gpunuma's lines go to stderr, which Ray shows in the driver.
    assert handlers == [("StreamHandler", True)]
