"""`gpunuma fleet` on a two-node Ray cluster of simulated machines (a DGX H100 and a GB200 tray).

Every worker is a plain Ray actor holding one GPU, started under the ``GPUNUMA_SIMULATE`` its node gives it:
most bind with ``bind_this_process()``; one never binds; one binds, then a library moves its process to the other
node. The fleet view checks each on its own node, as ``gpunuma check --pid`` does there, and must flag exactly the
two. One cluster and one set of actors serve the whole module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

ray = pytest.importorskip("ray")
prometheus_parser = pytest.importorskip("prometheus_client.parser")

from gpunuma.core.cpuset import CpuSet  # noqa: E402
from gpunuma.core.kernel_policy import Mempolicy, Mode  # noqa: E402
from gpunuma.integrations.ray import bind_this_process, start_bound_actor  # noqa: E402
from gpunuma.metrics import WORKER_LABELS  # noqa: E402
from gpunuma.tools.check import Verdict  # noqa: E402
from gpunuma.tools.cli import ExitCode, main  # noqa: E402
from gpunuma.tools.fleet import check_fleet  # noqa: E402
from gpunuma_fakes import machine  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.simulated_ray_cluster("dgx-h100", "gb200")]

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


#: Pages each worker touches once started, and the drifted one's library thread again from the other node.
PAGES = 256


def _kernel():
    """This worker's simulated kernel: the one its argument-free bind went through (``GPUNUMA_SIMULATE``)."""
    from gpunuma_fakes.source import SimulatedTopology

    return SimulatedTopology(os.environ["GPUNUMA_SIMULATE"]).kernel()


class Worker:
    """A GPU worker as a serving project writes it: binds first (or, here, on purpose not), then allocates."""

    def __init__(self, bind: bool) -> None:
        if bind:
            bind_this_process()
        _kernel().touch(PAGES)

    def where(self) -> tuple[int, str, list[int], str]:
        return os.getpid(), ray.get_runtime_context().get_node_id(), ray.get_gpu_ids(), os.environ["GPUNUMA_SIMULATE"]

    def drift(self, cpus: str) -> int:
        """A library starts a thread, pins it to ``cpus`` (another node), switches it to local allocation
        (``numa_set_localalloc``) and lets it allocate there; the thread's id."""
        kernel, pinned, allocated = _kernel(), threading.Event(), threading.Event()
        self.stop = threading.Event()

        def library() -> None:
            pinned.wait()
            kernel.set_mempolicy(Mempolicy(Mode.LOCAL))
            kernel.touch(PAGES)
            allocated.set()
            self.stop.wait()

        self.library = threading.Thread(target=library, name="library", daemon=True)
        self.library.start()
        assert self.library.native_id is not None
        kernel.sched_setaffinity(self.library.native_id, CpuSet.parse_list(cpus))
        pinned.set()
        allocated.wait()
        return self.library.native_id


@pytest.fixture(scope="module")
def workers(simulated_ray_cluster):
    """pid -> (machine, Ray GPU id, what it is, Ray node id): three bound on the DGX, one unbound there, two bound
    on the GB200, one of which then has a thread a library moved to the other Grace node."""
    cluster = simulated_ray_cluster
    wanted = [("dgx-h100", True), ("dgx-h100", True), ("dgx-h100", True), ("dgx-h100", False),
              ("gb200", True), ("gb200", True)]
    actors = [ray.remote(Worker).options(num_gpus=1, **cluster.on(name)).remote(bind) for name, bind in wanted]
    try:
        places = ray.get([actor.where.remote() for actor in actors])
        (gpu,) = places[-1][2]
        elsewhere = GRACE[1 - machine("gb200").expected_nodes[int(gpu)]]
        moved = ray.get(actors[-1].drift.remote(elsewhere))
        roles = ["bound", "bound", "bound", "unbound", "bound", ("drifted", moved)]
        yield {pid: (name, int(gpus[0]), role, node_id)
               for (pid, node_id, gpus, name), role in zip(places, roles, strict=True)}
    finally:
        for actor in actors:
            ray.kill(actor)


#: The GB200 tray's two Grace nodes.
GRACE = {0: "0-71", 1: "72-143"}


def test_fleet_checks_each_worker_on_its_node_and_flags_the_unbound_and_the_drifted(workers, capsys):
    status = main(["fleet", "--json"])
    report = json.loads(capsys.readouterr().out)

    assert status == ExitCode.NOT_AS_EXPECTED and report["verdict"] == "not_as_expected"
    found = {w["pid"]: (node, w) for node in report["nodes"] for w in node["workers"]}
    assert set(found) == set(workers)
    for pid, (name, gpu, role, node_id) in workers.items():
        node, worker = found[pid]
        assert (node["node_id"], node["simulated"], node["answered"]) == (node_id, name, True)
        assert worker["actor_class"] == "Worker" and worker["ray_gpus"] == [gpu]
        check = worker["check"]
        assert check["gpus"] == [gpu] and check["plan"]["numa_nodes"] == [machine(name).expected_nodes[gpu]]
        drifts = {t["tid"]: t["drift"] for t in check["threads"]}
        if role == "bound":
            assert worker["verdict"] == "as_expected" and set(drifts.values()) == {None}
            assert check["local_fraction"] == 1.0
        elif role == "unbound":
            assert worker["verdict"] == "not_as_expected" and set(drifts.values()) == {"widened"}
        else:
            _, moved = role
            assert worker["verdict"] == "not_as_expected"
            assert {tid: d for tid, d in drifts.items() if d is not None} == {moved: "moved"}
            assert check["local_fraction"] == 0.5, "half its pages were touched from the other node"


def test_fleet_prometheus_gives_each_worker_its_figures(workers, capsys):
    status = main(["fleet", "--prometheus"])
    families = {f.name: f for f in prometheus_parser.text_string_to_metric_families(capsys.readouterr().out)}

    def by_pid(name: str, **labels: str) -> dict[int, float]:
        return {int(s.labels["pid"]): s.value for s in families[name].samples
                if all(s.labels[key] == value for key, value in labels.items())}

    assert status == ExitCode.NOT_AS_EXPECTED
    roles = {pid: role if isinstance(role, str) else role[0] for pid, (_, _, role, _) in workers.items()}
    assert by_pid("gpunuma_worker_bound") == {pid: 1.0 if role == "bound" else 0.0 for pid, role in roles.items()}
    gpus = {int(s.labels["pid"]): s.labels["gpu"] for s in families["gpunuma_worker_bound"].samples}
    assert gpus == {pid: str(gpu) for pid, (_, gpu, _, _) in workers.items()}
    threads, off = by_pid("gpunuma_worker_threads"), by_pid("gpunuma_worker_threads_off_plan")
    moved, widened = by_pid("gpunuma_worker_drifted_threads", drift="moved"), by_pid(
        "gpunuma_worker_drifted_threads", drift="widened")
    expected_off = {"bound": 0, "drifted": 1}
    for pid, role in roles.items():
        assert off[pid] == expected_off.get(role, threads[pid]) and threads[pid] >= 2
        assert (moved[pid], widened[pid]) == {"bound": (0, 0), "drifted": (1, 0)}.get(role, (0, threads[pid]))
    local = by_pid("gpunuma_worker_local_memory_ratio")
    assert {local[pid] for pid, role in roles.items() if role == "bound"} == {1.0}
    assert [local[pid] for pid, role in roles.items() if role == "drifted"] == [0.5]
    answered = {s.labels["node_id"]: s.value for s in families["gpunuma_node_answered"].samples}
    assert answered == {node_id: 1.0 for (_, _, _, node_id) in workers.values()}


def test_a_node_that_does_not_answer_in_time_is_listed_and_cannot_tell(workers, capsys):
    report = check_fleet(timeout=0)  # no node can answer before the driver stops waiting
    assert report.verdict is Verdict.CANNOT_TELL and report.nodes
    assert [node.answered for node in report.nodes] == [False] * len(report.nodes)
    assert {w.pid for node in report.nodes for w in node.workers} == set(workers)

    assert main(["fleet", "--timeout", "0", "--json"]) == ExitCode.CANNOT_TELL
    listed = json.loads(capsys.readouterr().out)
    assert {w["verdict"] for node in listed["nodes"] for w in node["workers"]} == {"cannot_tell"}


def test_the_command_joins_the_cluster_by_address_and_leaves_it(workers, simulated_ray_cluster):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-m", "gpunuma", "fleet", "--address", simulated_ray_cluster.address, "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == ExitCode.NOT_AS_EXPECTED, done.stderr
    verdicts = {w["pid"]: w["verdict"] for node in json.loads(done.stdout)["nodes"] for w in node["workers"]}
    assert {pid for pid, verdict in verdicts.items() if verdict != "as_expected"} == {
        pid for pid, (_, _, role, _) in workers.items() if role != "bound"
    }


class Gauges:
    """The heavy object of a bound actor that exports its metrics: shows the Ray gauges of its process."""

    def gauges(self) -> dict[str, tuple[str, ...]]:
        from gpunuma.integrations import ray as integration

        return {name: tuple(gauge.info["tag_keys"]) for name, gauge in integration._GAUGES.items()}


def test_a_bound_actor_exports_its_figures_as_ray_gauges(simulated_ray_cluster):
    actor = start_bound_actor(Gauges, actor_options=simulated_ray_cluster.on("dgx-h100"), export_metrics=True)
    try:
        result = ray.get(actor.export_metrics.remote())
        gauges = ray.get(actor.call.remote("gauges"))
    finally:
        ray.kill(actor)
    assert result.verdict is Verdict.AS_EXPECTED and len(result.gpus) == 1
    assert gauges == {
        **{name: WORKER_LABELS for name in ("gpunuma_worker_checked", "gpunuma_worker_bound", "gpunuma_worker_threads",
                                            "gpunuma_worker_threads_off_plan")},
        "gpunuma_worker_drifted_threads": (*WORKER_LABELS, "drift"),
    }
