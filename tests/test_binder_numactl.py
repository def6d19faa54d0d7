"""NumactlLauncher builds a numactl argv; the argv really starts a bound child on this machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from gpunuma.adapters.numactl import NumactlLauncher
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.model import NumaNode, Topology
from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import MemoryPolicy
from gpunuma.core.ports import Launcher
from gpunuma.errors import LibraryNotFoundError

# DGX H100 layout: node 0 holds CPUs 0-55,112-167, node 1 holds 56-111,168-223.
DGX = Topology(
    nodes=(
        NumaNode(0, CpuSet.parse_list("0-55,112-167")),
        NumaNode(1, CpuSet.parse_list("56-111,168-223")),
    ),
    source="test",
)


def plan(cpus: str, memory: MemoryPolicy, nodes: tuple[int, ...]) -> BindingPlan:
    return BindingPlan(gpus=(4,), nodes=nodes, cpus=CpuSet.parse_list(cpus), memory_policy=memory,
                       memory_nodes=nodes, reasons=())


needs_numactl = pytest.mark.skipif(shutil.which("numactl") is None, reason="numactl is not installed")


@needs_numactl
def test_physcpubind_and_membind_for_a_cpu_subset() -> None:
    argv = NumactlLauncher().command(plan("56-83,168-195", MemoryPolicy.BIND, (1,)), ["python", "app.py"])

    assert argv == ["numactl", "--physcpubind=56-83,168-195", "--membind=1", "--", "python", "app.py"]


@needs_numactl
def test_cpunodebind_when_the_cpus_are_exactly_the_nodes_cpus() -> None:
    launcher = NumactlLauncher(topology=DGX)

    argv = launcher.command(plan("56-111,168-223", MemoryPolicy.PREFERRED, (1,)), ["train"])

    assert argv == ["numactl", "--cpunodebind=1", "--preferred=1", "--", "train"]


@needs_numactl
def test_memory_none_adds_no_memory_option_and_several_preferred_nodes_use_preferred_many() -> None:
    launcher = NumactlLauncher(topology=DGX)

    assert launcher.command(plan("0-223", MemoryPolicy.NONE, (0, 1)), ["x"]) == [
        "numactl", "--cpunodebind=0-1", "--", "x"]
    assert launcher.command(plan("0-223", MemoryPolicy.PREFERRED, (0, 1)), ["x"]) == [
        "numactl", "--cpunodebind=0-1", "--preferred-many=0-1", "--", "x"]


def test_a_plan_that_does_not_bind_leaves_argv_unchanged_even_without_numactl() -> None:
    empty = BindingPlan(gpus=(0,), nodes=(), cpus=CpuSet(), memory_policy=MemoryPolicy.BIND,
                        memory_nodes=(), reasons=("no locality",))

    assert NumactlLauncher(numactl="numactl-absent").command(empty, ["a", "b c"]) == ["a", "b c"]


def test_missing_numactl_is_a_typed_error_with_the_install_hint() -> None:
    with pytest.raises(LibraryNotFoundError, match="apt-get install numactl"):
        NumactlLauncher(numactl="numactl-absent").command(plan("0", MemoryPolicy.BIND, (0,)), ["x"])


def test_is_a_launcher_port() -> None:
    assert isinstance(NumactlLauncher(), Launcher)


@needs_numactl
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2+ CPUs to prove a change")
def test_the_argv_really_runs_a_bound_child() -> None:
    cpu = min(os.sched_getaffinity(0))
    child = [sys.executable, "-c", "import os; from gpunuma.adapters.mempolicy import MempolicySyscalls as M; "
             "print(sorted(os.sched_getaffinity(0)), M().get())"]

    argv = NumactlLauncher().command(plan(str(cpu), MemoryPolicy.BIND, (0,)), child)
    done = subprocess.run(argv, capture_output=True, text=True, check=True)

    assert done.stdout.strip() == f"[{cpu}] bind 0"


# -- a "preferred" plan over several nodes: --preferred-many only where kernel and numactl take it -------------
def _numactl_printing(tmp_path, usage: str) -> str:
    """A stand-in numactl whose usage text (printed for any unknown flag, as numactl does) is ``usage``."""
    script = tmp_path / "numactl"
    script.write_text(f"#!/bin/sh\necho '{usage}' >&2\nexit 1\n")
    script.chmod(0o755)
    return str(script)


TWO_NODES = plan("0-223", MemoryPolicy.PREFERRED, (1, 0))


def test_preferred_over_two_nodes_uses_preferred_many_where_it_exists(tmp_path, mocker):
    mocker.patch("gpunuma.adapters.numactl.release_at_least", return_value=True)
    numactl = _numactl_printing(tmp_path, "[--preferred= | -p <node>] [--preferred-many= | -P <nodes>]")

    argv = NumactlLauncher(numactl).command(TWO_NODES, ["x"])

    assert argv[2] == "--preferred-many=0-1"


@pytest.mark.parametrize(
    ("kernel_has_it", "usage"),
    [(True, "[--preferred= | -p <node>]"), (False, "[--preferred= | -p <node>] [--preferred-many= | -P <nodes>]")],
    ids=["numactl before 2.0.15", "kernel before 5.15"],
)
def test_preferred_over_two_nodes_prefers_the_first_planned_node_where_many_is_missing(
    tmp_path, mocker, caplog, kernel_has_it, usage
):
    mocker.patch("gpunuma.adapters.numactl.release_at_least", return_value=kernel_has_it)
    numactl = _numactl_printing(tmp_path, usage)

    argv = NumactlLauncher(numactl).command(TWO_NODES, ["x"])

    assert argv[2] == "--preferred=1"  # the plan's first node: its GPU's own
    assert [record.levelname for record in caplog.records if record.name.startswith("gpunuma.")] == ["WARNING"]


def test_a_numactl_that_cannot_run_counts_as_one_without_preferred_many(tmp_path, mocker):
    mocker.patch("gpunuma.adapters.numactl.release_at_least", return_value=True)
    broken = tmp_path / "numactl"
    broken.write_text("not a program")
    broken.chmod(0o755)

    assert NumactlLauncher(str(broken))._many() is False
    assert NumactlLauncher(str(broken), preferred_many=True).command(TWO_NODES, ["x"])[2] == "--preferred-many=0-1"
