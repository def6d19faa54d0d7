"""tinyserve's workers bind next to their GPU: checked on simulated machines, as an operator checks a host."""

from __future__ import annotations

import json
import subprocess
import sys

import gpunuma
import pytest

from tinyserve.launcher import launch
from tinyserve.worker import Worker

DGX_NODE_1 = "56-111,168-223"  # DGX H100: GPUs 4-7 hang off NUMA node 1


@pytest.fixture
def worker(gpunuma_simulate, monkeypatch):
    """A worker started in this test process for GPU 1."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    started = Worker()
    yield started
    started.stop()


@pytest.mark.parametrize("gpunuma_simulate", ["dgx-h100", "dgx-a100", "gb200"], indirect=True)
def test_a_worker_and_its_scheduler_thread_are_bound_as_planned(worker):
    check = gpunuma.check_process(physical=1)  # this process started without CUDA_VISIBLE_DEVICES: name the GPU

    assert worker.binding.bound and check.ok, check.render()
    scheduler = next(t for t in check.view.threads if t.tid == worker.scheduler.native_id)
    assert scheduler.cpus == worker.binding.cpus


@pytest.mark.simulated_machine("dgx-h100")
def test_launched_workers_check_ok_from_outside(gpunuma_simulate):
    with launch(gpus=[0, 5]) as workers:
        checks = {
            gpu: subprocess.run(
                [sys.executable, "-m", "gpunuma", "check", "--pid", str(pid), "--json"],
                capture_output=True, text=True,
            )
            for gpu, pid in workers.items()
        }

    for gpu, done in checks.items():
        result = json.loads(done.stdout)
        assert done.returncode == 0 and result["verdict"] == "as_expected", done.stdout
        assert result["gpus"] == [gpu] and len(result["threads"]) >= 2  # the main thread and the scheduler
    assert {t["cpus"] for t in json.loads(checks[5].stdout)["threads"]} == {DGX_NODE_1}
