"""The command line as a serving engineer scripts it: physical ids, LOCAL_RANK, check's exit codes, pipes."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from gpunuma.tools.cli import ExitCode, main
from gpunuma_fakes import machine, render_sysfs
from gpunuma_fakes.render import PID


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("GPUNUMA_")] + ["CUDA_VISIBLE_DEVICES", "LOCAL_RANK"]:
        monkeypatch.delenv(name, raising=False)


def test_plan_physical_gpu_ignores_a_permuted_visible_list(capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7,6,5,4,3,2,1,0")

    _, physical, _ = run(capsys, "plan", "--simulate", "dgx-h100", "--physical-gpu", "7", "--json")
    _, local, _ = run(capsys, "plan", "--simulate", "dgx-h100", "--gpu", "7", "--json")

    assert (json.loads(physical)["gpus"], json.loads(physical)["numa_nodes"]) == ([7], [1])
    assert (json.loads(local)["gpus"], json.loads(local)["numa_nodes"]) == ([0], [0])


def test_local_rank_5_plans_gpu_5_on_node_1(capsys, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "5")

    code, out, _ = run(capsys, "plan", "--simulate", "dgx-h100", "--json")

    plan = json.loads(out)
    assert code == ExitCode.OK and (plan["gpus"], plan["numa_nodes"]) == ([5], [1])
    assert plan["reason_details"][0]["code"] == "gpu_from_local_rank"


def test_gpunuma_simulate_in_the_environment_is_the_simulate_flag(capsys, monkeypatch):
    monkeypatch.setenv("GPUNUMA_SIMULATE", "gb200")

    _, out, _ = run(capsys, "plan", "--physical-gpu", "3", "--json")

    assert json.loads(out)["numa_nodes"] == [1]


def test_exec_under_gpunuma_simulate_runs_nothing_and_says_so(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("GPUNUMA_SIMULATE", "dgx-h100")
    marker = tmp_path / "ran"

    code, _, err = run(capsys, "exec", "--physical-gpu", "2", "--", "touch", str(marker))

    assert code == ExitCode.NOT_RUN and "NOT run" in err and not marker.exists()


def test_gpu_and_physical_gpu_together_are_an_error_in_one_line(capsys):
    code, out, err = run(capsys, "plan", "--simulate", "dgx-h100", "--gpu", "1", "--physical-gpu", "1")
    assert code == ExitCode.USAGE and out == "" and len(err.splitlines()) == 1


# -- check: what is expected, and the exit codes ---------------------------------------------------------
@pytest.fixture
def bound_to_node_1(tmp_path):
    """A captured DGX whose process 4242 runs on node 1's CPUs (its environment is not in the tree)."""
    dgx = dataclasses.replace(machine("dgx-h100"), affinity="56-111,168-223")
    return str(render_sysfs(dgx, tmp_path / "tree"))


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--physical-gpu", "5"], ExitCode.OK),  # GPU 5 is on node 1: as expected
        (["--physical-gpu", "0"], ExitCode.NOT_AS_EXPECTED),  # GPU 0 is on node 0
        ([], ExitCode.CANNOT_TELL),  # no GPU named and no environment to read it from
        (["--physical-gpu", "9"], ExitCode.ERROR),  # a GPU the machine does not have: the caller's mistake
    ],
    ids=["as-expected", "not-as-expected", "cannot-tell", "no-such-gpu"],
)
def test_check_pid_with_a_gpu_states_the_expectation_and_exits_by_verdict(capsys, bound_to_node_1, flags, expected):
    code, out, err = run(capsys, "check", "--pid", str(PID), "--root", bound_to_node_1, "--source", "sysfs", *flags)

    assert code == expected
    if expected is ExitCode.ERROR:
        assert out == "" and len(err.splitlines()) == 1
    else:
        assert "expected: " in out


def test_check_json_carries_the_verdict(capsys, bound_to_node_1):
    _, out, _ = run(capsys, "check", "--pid", str(PID), "--root", bound_to_node_1, "--source", "sysfs",
                    "--physical-gpu", "0", "--json")
    result = json.loads(out)
    assert result["verdict"] == "not_as_expected" and result["plan"]["numa_nodes"] == [0]


def gpunuma(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUNUMA_")}
    return subprocess.run(
        [sys.executable, "-m", "gpunuma", *argv], capture_output=True, text=True, env=env, timeout=120, **kwargs
    )


def test_check_of_a_missing_process_is_one_line_and_no_traceback():
    done = gpunuma("check", "--pid", "999999999")

    assert done.returncode == ExitCode.ERROR
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("gpunuma: error: process 999999999: no such process")


def test_topo_into_a_pipe_closed_early_ends_quietly():
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUNUMA_")}
    # The reader is gone before gpunuma writes a byte, as `gpunuma topo | head -0` would be.
    child = subprocess.Popen(
        [sys.executable, "-m", "gpunuma", "topo", "--simulate", "dgx-a100"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()
    stderr = child.stderr.read().decode()
    child.wait(timeout=120)

    assert child.returncode == ExitCode.OK and stderr == ""
