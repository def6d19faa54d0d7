"""Real hosts as ground truth: each captured host in tests/data replays to the plan recorded on it.

A host is ``HOST.tar.gz`` (``gpunuma snapshot`` or an hwloc-gather-style archive) plus one or more
``HOST.plan*.json`` (``gpunuma plan --json`` on that host); see tests/data/README.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpunuma.api import bind_to_gpu, bind_to_node, plan_for
from gpunuma.core.plan import BindingPlan
from gpunuma_fakes.snapshot import Snapshot, load_snapshot

DATA = Path(__file__).parent / "data"
ARCHIVES = sorted(DATA.glob("*.tar.gz"))
#: What a plan binds: compared exactly. Reasons are prose and may improve; they are not compared.
BINDING = ("gpus", "numa_node", "numa_nodes", "cpus", "memory_policy", "memory_nodes", "binds", "cpu_scope")


def _host(archive: Path) -> str:
    return archive.name.removesuffix(".tar.gz")


def _plans(archive: Path) -> list[Path]:
    return sorted(DATA.glob(f"{_host(archive)}.plan*.json"))


CASES = [pytest.param(archive, plan, id=plan.stem) for archive in ARCHIVES for plan in _plans(archive)]


def replay(host: Snapshot, recorded: dict[str, Any]) -> BindingPlan:
    """The plan for what the recorded plan asked: its physical GPUs, else its node, else nothing."""
    if recorded["gpus"]:
        source = host.source(kind="sysfs" if "error" in host.record else "auto")
        return plan_for(list(recorded["gpus"]), source=source, env={})
    if recorded["binds"]:
        return plan_for(node=int(recorded["numa_node"]), source=host.source(kind="sysfs"), env={})
    return plan_for(source=host.source(kind="auto"), env={})


@pytest.mark.parametrize(("archive", "recorded"), CASES)
def test_the_plan_replayed_from_a_captured_host_binds_as_the_plan_recorded_there(archive, recorded, tmp_path):
    host = load_snapshot(archive)
    expected = json.loads(recorded.read_text())

    plan = replay(host, expected).to_dict()

    assert {key: plan[key] for key in BINDING} == {key: expected[key] for key in BINDING}


def test_every_captured_host_has_a_recorded_plan_and_every_plan_a_host():
    assert ARCHIVES, "tests/data holds no captured host"
    assert all(_plans(archive) for archive in ARCHIVES)
    hosts = {_host(archive) for archive in ARCHIVES}
    assert {plan.name.split(".plan")[0] for plan in DATA.glob("*.plan*.json")} <= hosts


def test_the_two_gpu_kvm_guest_reports_no_locality_and_binds_its_one_node(tmp_path):
    """h200x2: both GPUs say numa_node -1 and NVML's NUMA id is NotSupported; one node holds every CPU."""
    host = load_snapshot(DATA / "h200x2.tar.gz")

    topology = host.source(kind="auto").read()

    assert [(g.pci_bus_id, g.numa_node, g.memory_node) for g in topology.gpus] == [
        ("0000:00:06.0", None, None),
        ("0000:00:07.0", None, None),
    ]
    assert all("nvmlDeviceGetNumaNodeId: NotSupported" in g.notes for g in topology.gpus)
    assert [(n.id, n.cpus.to_list()) for n in topology.nodes] == [(0, "0-31")]


@pytest.mark.simulated_machine(str(DATA / "h200x2.tar.gz"))
def test_a_captured_host_is_a_simulated_machine_for_the_pytest_plugin(simulated_source, simulated_kernel):
    # Its one node holds every CPU and all memory: the GPU's plan narrows nothing (planner rule 9) ...
    report = bind_to_gpu(1, source=simulated_source, binder=simulated_kernel, env={})
    assert not report.bound and report.reason_codes[-1] == "spans_everything" and simulated_kernel.applied == []

    # ... while the node asked for by name binds, through the captured host's simulated kernel.
    node = bind_to_node(0, source=simulated_source, binder=simulated_kernel, env={})
    assert node.bound and node.plan.nodes == (0,) and node.cpus.to_list() == "0-31"
    assert simulated_kernel.applied == [node.plan]
