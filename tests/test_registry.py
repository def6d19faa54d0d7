"""One table of adapter names: the CLI, the settings and the composition root agree on it."""

from __future__ import annotations

import pytest

from gpunuma.compose import make_source
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import MemoryPolicy
from gpunuma.core.report import BindingReport
from gpunuma.errors import UnknownSourceError
from gpunuma.registry import BINDER_NAMES, SOURCE_NAMES, binder_class, topology_source_class
from gpunuma.settings import SettingsError, Simulated, configure
from gpunuma.tools.cli import build_parser
from gpunuma_fakes import machine
from gpunuma_fakes.source import SimulatedTopology


def _source_choices(command: str) -> tuple[str, ...]:
    sub = next(a for a in build_parser()._actions if a.dest == "command_name").choices[command]  # type: ignore[index]
    return tuple(next(a for a in sub._actions if a.dest == "source").choices)


@pytest.mark.parametrize("command", ["topo", "plan", "exec", "check"])
def test_every_command_offers_exactly_the_registered_sources(command):
    assert _source_choices(command) == SOURCE_NAMES == ("auto", "nvml", "sysfs")


def test_gpunuma_source_accepts_every_source_that_reads_a_machine_and_nothing_else():
    assert [configure({"GPUNUMA_SOURCE": name}).source for name in SOURCE_NAMES] == list(SOURCE_NAMES)
    with pytest.raises(SettingsError, match="expected one of auto, nvml, sysfs"):
        configure({"GPUNUMA_SOURCE": "simulated"}, strict=True)  # a simulated machine is named by GPUNUMA_SIMULATE


def test_every_registered_name_builds_its_adapter():
    assert [topology_source_class(name).__name__ for name in (*SOURCE_NAMES, "simulated")] == [
        "AutoTopology", "NvmlTopology", "SysfsTopology", "SimulatedTopology"]
    assert [binder_class(name)().name for name in BINDER_NAMES] == ["libnuma", "syscall", "noop"]
    with pytest.raises(UnknownSourceError, match="known: libnuma, syscall, noop"):
        binder_class("numactl")  # a launcher, not a binder


@pytest.mark.parametrize("kind", SOURCE_NAMES)
def test_a_simulated_machine_is_reached_by_name_through_every_source(kind):
    source = make_source(kind, machine=Simulated("dgx-h100"))
    assert isinstance(source, SimulatedTopology)
    topology = source.read()
    assert topology.source.startswith(kind)  # auto says what it combined: "auto(nvml+sysfs)"
    assert {g.index: g.numa_node for g in topology.gpus} == machine("dgx-h100").expected_nodes
    assert source.allowed().cpus == machine("dgx-h100").allowed().cpus


def test_a_simulated_source_rejects_an_unknown_kind_at_once():
    with pytest.raises(UnknownSourceError, match="dcgm"):
        make_source("dcgm", machine=Simulated("dgx-h100"))


def test_not_bound_is_a_constructor_of_the_report():
    plan = BindingPlan(gpus=(3,), nodes=(0,), cpus=CpuSet.parse_list("0-3"), memory_policy=MemoryPolicy.BIND,
                       memory_nodes=(0,), reasons=("GPU 3 is on node 0",))
    report = BindingReport.not_bound(plan, "syscall", ("binding failed", "GPU 3 is on node 0"))
    assert (report.bound, report.method, report.cpus, report.memory_policy) == (False, "syscall", CpuSet(), None)
    assert report.reasons == ("GPU 3 is on node 0", "binding failed")  # the plan's reasons are not repeated
    empty = BindingReport.not_bound(None, "plan", ("nothing to bind",))
    assert not empty.plan.binds and empty.plan.reasons == empty.reasons == ("nothing to bind",)
