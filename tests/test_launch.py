"""Launch helpers start real children already bound: exec after binding, spawned workers, run_bound."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpunuma.adapters.numactl import NumactlLauncher
from gpunuma.adapters.syscall import SyscallBinder
from gpunuma.api import apply_plan
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import MemoryPolicy
from gpunuma.errors import UnknownSourceError
from gpunuma.launch import bound_command, exec_argv, run_bound, start_bound_process
from gpunuma.tools.cli import ExitCode
from gpunuma_fakes import machine

ALLOWED = frozenset(os.sched_getaffinity(0))
CPU = min(ALLOWED)
pytestmark = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs 2+ CPUs to prove a change")

#: A child that prints its own CPU affinity and memory policy.
REPORT_SELF = [sys.executable, "-c",
               "import os; from gpunuma.adapters.mempolicy import MempolicySyscalls as M; "
               "print(sorted(os.sched_getaffinity(0)), M().get())"]


def plan(memory: MemoryPolicy = MemoryPolicy.BIND) -> BindingPlan:
    return BindingPlan(gpus=(0,), nodes=(0,), cpus=CpuSet.of({CPU}), memory_policy=memory, memory_nodes=(0,),
                       reasons=("GPU 0 is local to node 0",))


def test_exec_bound_binds_then_execs_and_the_new_program_inherits_both() -> None:
    done = subprocess.run(exec_argv(plan(), REPORT_SELF), capture_output=True, text=True, check=True)

    assert done.stdout.strip() == f"[{CPU}] bind 0"


def test_exec_argv_carries_the_plan_without_a_shell_or_script() -> None:
    argv = exec_argv(plan(MemoryPolicy.PREFERRED), ["python", "app.py", "--flag"])

    assert argv == [sys.executable, "-m", "gpunuma.tools.launch", f"--cpus={CPU}", "--nodes=0", "--memory=preferred",
                    "--memory-nodes=0", "--", "python", "app.py", "--flag"]


def test_run_bound_in_process_and_through_numactl_give_the_same_binding() -> None:
    in_process = run_bound(plan(), REPORT_SELF, capture_output=True, text=True, check=True)
    assert in_process.stdout.strip() == f"[{CPU}] bind 0"
    if shutil.which("numactl") is None:
        pytest.skip("numactl is not installed")
    through_numactl = run_bound(plan(), REPORT_SELF, launcher=NumactlLauncher(), capture_output=True, text=True,
                                check=True)
    assert through_numactl.stdout == in_process.stdout


def test_a_plan_that_does_not_bind_runs_the_command_as_given() -> None:
    empty = BindingPlan(gpus=(0,), nodes=(), cpus=CpuSet(), memory_policy=MemoryPolicy.BIND, memory_nodes=(),
                        reasons=())

    assert bound_command(empty, ["a", "b"]) == ["a", "b"]


def write_own_binding(path: str, greeting: str) -> None:
    """The spawned worker's target: writes its own binding to ``path``."""
    from gpunuma.adapters.mempolicy import MempolicySyscalls

    Path(path).write_text(f"{greeting} {sorted(os.sched_getaffinity(0))} {MempolicySyscalls().get()}")


@pytest.mark.parametrize("binder", [None, SyscallBinder()], ids=["default", "syscall"])
def test_start_bound_process_binds_the_child_before_its_target_runs(tmp_path: Path, binder: object) -> None:
    out = tmp_path / "binding.txt"

    process = start_bound_process(plan(), write_own_binding, args=(str(out),), kwargs={"greeting": "hi"},
                                  binder=binder)  # type: ignore[arg-type]
    process.join(timeout=60)

    assert isinstance(process, multiprocessing.process.BaseProcess) and process.exitcode == 0
    assert out.read_text() == f"hi [{CPU}] bind 0"
    assert os.sched_getaffinity(0) == ALLOWED  # the parent is untouched


def failing_plan() -> BindingPlan:
    """CPU 999 does not exist: sched_setaffinity fails with EINVAL on every thread."""
    return BindingPlan(gpus=(0,), nodes=(0,), cpus=CpuSet.of({999}), memory_policy=MemoryPolicy.BIND,
                       memory_nodes=(0,), reasons=("GPU 0 is local to node 0",))


def child_env(**switches: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUNUMA_")}
    env.update(switches)
    return env


def test_gpunuma_bind_0_makes_the_launched_program_run_unbound() -> None:
    done = subprocess.run(exec_argv(plan(), REPORT_SELF), capture_output=True, text=True, check=True,
                          env=child_env(GPUNUMA_BIND="0"))

    assert done.stdout.strip() == f"{sorted(ALLOWED)} default"


def test_gpunuma_strict_1_stops_the_launch_when_binding_fails() -> None:
    strict = subprocess.run(exec_argv(failing_plan(), REPORT_SELF), capture_output=True, text=True,
                            env=child_env(GPUNUMA_STRICT="1"))
    best_effort = subprocess.run(exec_argv(failing_plan(), REPORT_SELF), capture_output=True, text=True,
                                 env=child_env())

    assert strict.returncode == ExitCode.ERROR and strict.stdout == ""
    assert strict.stderr.count("\n") == 1 and "999" in strict.stderr and "Traceback" not in strict.stderr
    assert best_effort.returncode == 0 and best_effort.stdout.strip() == f"{sorted(ALLOWED)} default"
    assert "not bound" in best_effort.stderr


def test_start_bound_process_obeys_gpunuma_bind_0_even_with_a_binder_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUNUMA_BIND", "0")  # the spawned child inherits it
    out = tmp_path / "binding.txt"

    process = start_bound_process(plan(), write_own_binding, args=(str(out), "hi"), binder=SyscallBinder())
    process.join(timeout=60)

    assert process.exitcode == 0
    assert out.read_text() == f"hi {sorted(ALLOWED)} default"


def test_a_binder_that_cannot_be_built_runs_unbound_or_raises_when_strict(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gpunuma"):
        report = apply_plan(plan(), "no-such-binder", strict=False, env={})

    assert not report.bound and report.method == "no-such-binder"
    assert report.reason_codes[-1] == "binder_unavailable"
    assert report.reasons[-1].values["method"] == "no-such-binder"
    assert "not bound" in caplog.text
    assert os.sched_getaffinity(0) == ALLOWED
    with pytest.raises(UnknownSourceError, match="no-such-binder"):
        apply_plan(plan(), "no-such-binder", env={"GPUNUMA_STRICT": "1"})


def test_the_apply_path_takes_gpunuma_bind_0_over_a_binder_passed_in_code() -> None:
    kernel = machine("dgx-h100").kernel()
    wanted = BindingPlan(gpus=(0,), nodes=(0,), cpus=CpuSet.parse_list("0-55,112-167"),
                         memory_policy=MemoryPolicy.PREFERRED, memory_nodes=(0,), reasons=("GPU 0 is on node 0",))

    dry = apply_plan(wanted, kernel, env={"GPUNUMA_BIND": "0"})
    bound = apply_plan(wanted, kernel, env={})

    assert not dry.bound and dry.method == "noop" and dry.plan == wanted
    assert bound.bound and kernel.applied == [wanted]  # only the second call reached the binder


def put_report(queue: multiprocessing.Queue, numa: object) -> None:  # type: ignore[type-arg]
    """A spawned worker's target that asked for its binding report."""
    from gpunuma.api import last_report

    queue.put((numa, last_report() == numa))


def test_start_bound_process_hands_the_report_to_a_target_that_asks() -> None:
    dgx = machine("dgx-h100")
    wanted = BindingPlan(gpus=(5,), nodes=(1,), cpus=CpuSet.parse_list("56-111,168-223"),
                         memory_policy=MemoryPolicy.PREFERRED, memory_nodes=(1,), reasons=("GPU 5 is on node 1",))
    queue = multiprocessing.get_context("spawn").Queue()

    process = start_bound_process(wanted, put_report, args=(queue,), binder=dgx.kernel(), report_kwarg="numa")
    report, kept = queue.get(timeout=120)
    process.join(timeout=60)

    assert process.exitcode == 0 and kept, "the child's gpunuma.last_report() is the report it was handed"
    assert report.bound and report.method == "simulated" and report.plan == wanted
    assert report.kernel.pid == process.pid, "the simulated kernel bound the child's own threads"
