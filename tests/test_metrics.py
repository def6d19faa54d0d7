"""A check's figures as Prometheus metrics (`gpunuma check --prometheus`), and the fleet's verdict from its nodes'.

The worker is the rendered DGX H100's process, its environment and thread affinities written as a bound or an
unbound worker of GPU 5 (node 1) would show them in /proc.
"""

from __future__ import annotations

import json
import sys

import pytest

from gpunuma.errors import MissingDependencyError, SettingsError
from gpunuma.metrics import BOUND, CHECKED, Sample, prometheus_text
from gpunuma.tools.check import Verdict, check_process
from gpunuma.tools.cli import ExitCode, main
from gpunuma.tools.fleet import FleetReport, FleetWorker, NodeCheck, WorkerCheck, check_fleet
from gpunuma_fakes import machine, render_sysfs
from gpunuma_fakes.render import PID

parser = pytest.importorskip("prometheus_client.parser")

NODE1 = "56-111,168-223"


def _worker(render, *, cpus: str | None, numa_maps: str | None = None, **env: str):
    """The DGX H100's process as a worker started with ``env``, its threads on ``cpus`` (None: as started), its
    pages where ``numa_maps`` says."""
    root = render(machine("dgx-h100"))
    if numa_maps is not None:
        (root / "proc" / str(PID) / "numa_maps").write_text(numa_maps)
    (root / "proc" / str(PID) / "environ").write_bytes(b"".join(f"{k}={v}\0".encode() for k, v in env.items()))
    for status in (root / "proc" / str(PID)).glob("**/status") if cpus is not None else ():
        status.write_text("".join(
            f"Cpus_allowed_list:\t{cpus}\n" if line.startswith("Cpus_allowed_list:") else line + "\n"
            for line in status.read_text().splitlines()
        ))
    return root


def _figures(out: str) -> dict[str, float]:
    """Metric name (with its drift, ``gpunuma_worker_drifted_threads{moved}``) -> value, for output about one
    worker."""
    values = {}
    for family in parser.text_string_to_metric_families(out):
        for sample in family.samples:
            assert sample.labels["pid"] == str(PID)
            drift = sample.labels.get("drift")
            values[f"{family.name}{{{drift}}}" if drift else family.name] = sample.value
    return values


def _drifted(figures: dict[str, float]) -> dict[str, float]:
    return {key.partition("{")[2][:-1]: value for key, value in figures.items() if "{" in key}


#: A heap of 1000 base pages under the planned policy (preferred 1), 750 on node 1 (GPU 5's) and 250 on node 0.
NUMA_MAPS = "7f2a40000000 prefer:1 anon=1000 dirty=1000 active=0 N0=250 N1=750 kernelpagesize_kB=4\n"


def test_a_worker_bound_to_its_gpus_node_is_bound_with_no_thread_off_the_plan(render, capsys):
    root = _worker(render, cpus=NODE1, numa_maps=NUMA_MAPS, CUDA_VISIBLE_DEVICES="5")
    status = main(["check", "--pid", str(PID), "--root", str(root), "--source", "sysfs", "--prometheus"])
    figures = _figures(capsys.readouterr().out)
    threads = len(check_process(PID, source="sysfs", root=root).view.threads)

    assert status == ExitCode.OK
    assert {key: value for key, value in figures.items() if "{" not in key} == {
        "gpunuma_worker_bound": 1.0, "gpunuma_worker_checked": 1.0, "gpunuma_worker_threads": threads,
        "gpunuma_worker_threads_off_plan": 0.0, "gpunuma_worker_local_memory_ratio": 0.75,
    }
    assert _drifted(figures) == {"narrowed": 0.0, "moved": 0.0, "widened": 0.0, "policy": 0.0}


def test_an_unbound_worker_has_every_thread_off_the_plan(render, capsys):
    root = _worker(render, cpus=None, CUDA_VISIBLE_DEVICES="5")
    status = main(["check", "--pid", str(PID), "--root", str(root), "--source", "sysfs", "--prometheus"])
    figures = _figures(capsys.readouterr().out)

    assert status == ExitCode.NOT_AS_EXPECTED
    assert figures["gpunuma_worker_bound"] == 0.0
    assert figures["gpunuma_worker_threads_off_plan"] == figures["gpunuma_worker_threads"] >= 2
    assert _drifted(figures) == {"narrowed": 0.0, "moved": 0.0, "widened": figures["gpunuma_worker_threads"],
                                 "policy": 0.0}


def test_a_worker_whose_gpu_is_unknown_is_unchecked_and_has_no_bound_figure(render, capsys):
    root = _worker(render, cpus=None, RAY_RAYLET_PID="1")  # a Ray worker: its GPU is not in its environment
    status = main(["check", "--pid", str(PID), "--root", str(root), "--source", "sysfs", "--prometheus"])
    figures = _figures(capsys.readouterr().out)

    assert status == ExitCode.CANNOT_TELL
    assert figures["gpunuma_worker_checked"] == 0.0 and "gpunuma_worker_bound" not in figures


def test_the_labels_name_the_worker_and_its_gpu(render, capsys):
    root = _worker(render, cpus=NODE1, CUDA_VISIBLE_DEVICES="5")
    main(["check", "--pid", str(PID), "--root", str(root), "--source", "sysfs", "--prometheus"])
    (family, *_) = parser.text_string_to_metric_families(capsys.readouterr().out)
    labels = family.samples[0].labels
    assert (labels["pid"], labels["gpu"], labels["node_id"], labels["actor_class"]) == (str(PID), "5", "", "")


def test_without_prometheus_client_the_option_is_a_usage_error_naming_the_extra(render, capsys, monkeypatch):
    root = _worker(render, cpus=NODE1, CUDA_VISIBLE_DEVICES="5")
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import prometheus_client raises ImportError
    with pytest.raises(MissingDependencyError) as caught:
        prometheus_text(())
    assert caught.value.extra == "metrics"

    status = main(["check", "--pid", str(PID), "--root", str(root), "--source", "sysfs", "--prometheus"])
    assert status == ExitCode.USAGE and capsys.readouterr().out == ""


def test_without_ray_the_fleet_command_is_a_usage_error_naming_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["fleet", "--json"]) == ExitCode.USAGE
    error = json.loads(capsys.readouterr().out)["error"]
    assert (error["type"], error["exit_code"]) == ("MissingDependencyError", ExitCode.USAGE)


@pytest.mark.parametrize("argv", [
    ["check", "--json", "--prometheus"],
    ["fleet", "--json", "--prometheus"],
    ["fleet", "--timeout", "-1"],
    ["fleet", "--timeout", "nan"],
])
def test_misused_options_are_usage_errors(argv):
    assert main(argv) == ExitCode.USAGE


def test_a_negative_timeout_is_refused_before_ray_is_reached():
    with pytest.raises(SettingsError):
        check_fleet(timeout=-1)


def test_figures_come_out_in_one_order_whatever_order_they_came_in():
    labels = ("h", "", "1", "0", "")
    first = prometheus_text([Sample(CHECKED, labels, 1.0), Sample(BOUND, labels, 1.0)])
    assert first == prometheus_text([Sample(BOUND, labels, 1.0), Sample(CHECKED, labels, 1.0)])
    assert first.index("gpunuma_worker_bound") < first.index("gpunuma_worker_checked")


# -- the fleet's verdict from its nodes' ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """A real check of each verdict: held as planned, unbound, and a Ray worker whose GPU is unknown."""
    folder = tmp_path_factory.mktemp("judged")
    workers = {
        Verdict.AS_EXPECTED: dict(cpus=NODE1, CUDA_VISIBLE_DEVICES="5"),
        Verdict.NOT_AS_EXPECTED: dict(cpus=None, CUDA_VISIBLE_DEVICES="5"),
        Verdict.CANNOT_TELL: dict(cpus=None, RAY_RAYLET_PID="1"),
    }
    results = {}
    for verdict, how in workers.items():
        root = _worker(lambda m, v=verdict: render_sysfs(m, folder / v.value), **how)
        results[verdict] = check_process(PID, source="sysfs", root=root)
        assert results[verdict].verdict is verdict
    return results


def _node(judged, node_id: str, *verdicts: Verdict, answered: bool = True) -> NodeCheck:
    workers = tuple(FleetWorker(node_id, pid, "Worker", f"actor{pid}", (5,)) for pid in range(1, len(verdicts) + 1))
    checks = tuple(
        WorkerCheck(worker, judged[verdict])
        for worker, verdict in zip(workers, verdicts, strict=True)
    )
    return NodeCheck(node_id, "10.0.0.1", workers, checks if answered else (), answered=answered,
                     error=None if answered else "no answer within 1 s")


A, N, C = Verdict.AS_EXPECTED, Verdict.NOT_AS_EXPECTED, Verdict.CANNOT_TELL


@pytest.mark.parametrize(("nodes", "verdict"), [
    ((), A),
    ((("a", (A, A), True),), A),
    ((("a", (A,), True), ("b", (C,), True)), C),
    ((("a", (A,), True), ("b", (A, A), False)), C),
    ((("a", (C, N), True), ("b", (A,), False)), N),
])
def test_one_worker_not_as_expected_decides_then_one_that_cannot_tell_or_a_silent_node(judged, nodes, verdict):
    report = FleetReport(nodes=tuple(_node(judged, name, *verdicts, answered=answered)
                                     for name, verdicts, answered in nodes), timeout=1.0)
    assert report.verdict is verdict
    assert report.to_dict()["verdict"] == verdict.value


def test_a_worker_that_could_not_be_checked_cannot_tell():
    worker = FleetWorker("a", 1, "Worker", "actor1", (0,))
    assert WorkerCheck(worker, error="process 1: no such process").verdict is Verdict.CANNOT_TELL


def test_a_silent_node_lists_its_workers_as_unanswered(judged):
    report = FleetReport(nodes=(_node(judged, "b", A, A, answered=False),), timeout=1.0)
    (node,) = report.to_dict()["nodes"]
    assert (node["answered"], node["error"]) == (False, "no answer within 1 s")
    assert [(w["pid"], w["verdict"], w["check"]) for w in node["workers"]] == [(1, "cannot_tell", None),
                                                                               (2, "cannot_tell", None)]
    figures = {(s.metric.name, s.tags.get("pid", "")): s.value for s in report.samples()}
    assert figures == {("gpunuma_node_answered", ""): 0.0, ("gpunuma_worker_checked", "1"): 0.0,
                       ("gpunuma_worker_checked", "2"): 0.0}
