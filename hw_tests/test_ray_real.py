"""Ray on a real GPU host: one scheduler actor per GPU, real adapters, report read back in the actor."""

from __future__ import annotations

import sys

import pytest


def _heavy_object() -> dict:
    """Stands in for weights, tokenizer and NCCL: built only after the actor is bound."""
    import os

    return {"affinity": sorted(os.sched_getaffinity(0))}


def test_one_bound_scheduler_actor_per_gpu(nvml_topology, results_dir):
    ray = pytest.importorskip("ray", reason="Ray is not installed on this host")
    from gpunuma.core.cpuset import CpuSet
    from gpunuma.integrations.ray import start_bound_actor

    # Ray workers cannot import this test module: send its functions by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

    count = len(nvml_topology.gpus)
    ray.init(num_cpus=2, num_gpus=count, include_dashboard=False, configure_logging=False)
    try:
        # num_cpus=0: an actor otherwise needs a whole CPU to be scheduled, and the cluster has 2.
        actors = [
            start_bound_actor(_heavy_object, num_gpus=1, actor_options={"num_cpus": 0}, label=f"TP{rank}")
            for rank in range(count)
        ]
        reports = ray.get([actor.binding_report.remote() for actor in actors])
        views = ray.get([actor.call.remote("__getitem__", "affinity") for actor in actors])
    finally:
        ray.shutdown()
    rows = []
    for rank, (report, affinity) in enumerate(zip(reports, views, strict=True)):
        assert len(report.plan.gpus) == 1, report
        gpu = nvml_topology.gpu(report.plan.gpus[0])
        if report.plan.binds:
            assert report.bound and not report.mismatches, report.to_dict()
            assert CpuSet.of(affinity) == report.cpus
            assert report.kernel is not None and len(report.kernel.threads) > 1
            assert {t.cpus for t in report.kernel.threads} == {report.cpus}
        else:
            assert not report.bound and report.reasons, report.to_dict()
        rows.append({"rank": rank, "gpu": gpu.index, "uuid": gpu.uuid, "report": report.to_dict()})
    assert sorted(r["gpu"] for r in rows) == list(range(count))
    if results_dir is not None:
        import json

        (results_dir / "ray-actors.json").write_text(json.dumps(rows, indent=2))
