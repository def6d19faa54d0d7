"""The runnable examples do what the README says, on this CPU-only machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.ray
@pytest.mark.slow
def test_ray_scheduler_example_starts_eight_bound_actors_on_a_simulated_dgx():
    pytest.importorskip("ray")
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "ray_scheduler.py"), "--simulate", "dgx-h100"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    lines = re.findall(r"^actor (\d): GPU (\d) -> NUMA node (\d), CPUs (\S+)$", out, flags=re.M)
    assert [(int(a), int(g)) for a, g, _, _ in lines] == [(i, i) for i in range(8)]
    assert {int(g): (int(n), cpus) for _, g, n, cpus in lines} == {
        g: (0, "0-55,112-167") if g < 4 else (1, "56-111,168-223") for g in range(8)
    }


@pytest.mark.ray
@pytest.mark.slow
def test_sglang_style_launcher_binds_one_scheduler_actor_per_gpu_of_a_simulated_gb200():
    pytest.importorskip("ray")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "sglang_style_launcher.py"), "--simulate", "gb200"],
        capture_output=True, text=True, check=True, timeout=300, env={**os.environ, "RAY_DEDUP_LOGS": "0"},
    )
    lines = re.findall(r"^TP(\d): GPU (\d) -> NUMA node (\d), CPUs (\S+) \((\w+)\)$", done.stdout, flags=re.M)

    # GPU0,1 hang off Grace node 0, GPU2,3 off node 1 (their HBM nodes are 2, 10, 18, 26).
    assert sorted((int(g), int(n), cpus, how) for _, g, n, cpus, how in lines) == [
        (0, 0, "0-71", "simulated"), (1, 0, "0-71", "simulated"),
        (2, 1, "72-143", "simulated"), (3, 1, "72-143", "simulated"),
    ]
    # Each actor's own INFO line reaches this console through Ray's default log forwarding.
    assert re.search(r"gpunuma: \[TP\d\] bound to NUMA node \d", done.stderr), done.stderr[-2000:]


DOWNSTREAM = EXAMPLES / "downstream_ci"


def test_the_downstream_project_uses_gpunumas_public_api_and_the_plugin_only():
    sources = [*DOWNSTREAM.glob("tinyserve/*.py"), *DOWNSTREAM.glob("tests/*.py")]
    internal = re.compile(r"^\s*(from|import) gpunuma(\.|_fakes)", flags=re.M)
    assert sources and [p.name for p in sources if internal.search(p.read_text())] == []


@pytest.mark.ray
@pytest.mark.slow
def test_the_downstream_project_passes_its_own_tests_on_simulated_machines():
    pytest.importorskip("ray")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GPUNUMA_", "RAY_"))},
        "PYTHONPATH": os.pathsep.join([str(DOWNSTREAM), *sys.path]),  # as `pip install -e .` would
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    done = subprocess.run(
        # The plugin is an installed entry point; -p names it too, for a checkout whose install predates it.
        [sys.executable, "-m", "pytest", "-q", "-p", "gpunuma_fakes.pytest_plugin", "-p", "no:cacheprovider"],
        cwd=DOWNSTREAM, env=env, capture_output=True, text=True, timeout=600,
    )

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(r"\b5 passed\b", done.stdout), done.stdout[-2000:]
