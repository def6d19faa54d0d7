"""Shares, reserved cores, the cache scope, NICs and the children's environment from the command line,
the GPUNUMA_* settings, and the launch helpers that hand the environment down."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import Share
from gpunuma.errors import SettingsError
from gpunuma.launch import exec_argv, start_bound_process
from gpunuma.settings import configure
from gpunuma.tools.cli import ExitCode, main
from gpunuma_fakes import machine


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def plan_json(capsys, *argv: str) -> dict:
    code, out, _ = run(capsys, "plan", "--simulate", *argv, "--json")
    assert code == ExitCode.OK
    return json.loads(out)


def test_a_quarter_share_of_dgx_h100_gpu_5(capsys):
    got = plan_json(capsys, "dgx-h100", "--gpu", "5", "--share", "1/4")

    assert (got["cpus"], got["share"], got["numa_nodes"]) == ("70-83,182-195", "1/4", [1])
    assert [nic["name"] for nic in got["nics"]] == ["mlx5_9"]


def test_gpunuma_share_and_reserve_come_from_the_environment_and_flags_win(capsys, monkeypatch):
    monkeypatch.setenv("GPUNUMA_SHARE", "3/4")
    monkeypatch.setenv("GPUNUMA_RESERVE", "2")

    from_env = plan_json(capsys, "dgx-h100", "--gpu", "5")
    from_flags = plan_json(capsys, "dgx-h100", "--gpu", "5", "--share", "0/2", "--reserve", "0")

    # Node 1 less its first 2 cores leaves 54 (58-111); part 3 of 4 is the last 14 of them: CPUs 98-111.
    assert (from_env["cpus"], from_env["reserve"]) == ("98-111,210-223", 2)
    assert (from_flags["cpus"], from_flags["reserve"]) == ("56-83,168-195", 0)


@pytest.mark.parametrize(
    ("variable", "value"), [("GPUNUMA_SHARE", "4/4"), ("GPUNUMA_SHARE", "half"), ("GPUNUMA_RESERVE", "-1"),
                            ("GPUNUMA_RESERVE", "two")],
)
def test_a_bad_share_or_reserve_in_the_environment_is_a_settings_error_in_strict_mode(
    capsys, monkeypatch, variable, value
):
    with pytest.raises(SettingsError):
        configure({variable: value}, strict=True)
    assert variable in configure({variable: value}, warn=False).problems[0]  # best-effort: the default
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("GPUNUMA_STRICT", "1")

    code, _, err = run(capsys, "plan", "--simulate", "dgx-h100", "--gpu", "5")

    assert code == ExitCode.USAGE and variable in err


def test_a_bad_share_flag_is_an_error_line(capsys):
    code, _, err = run(capsys, "plan", "--simulate", "dgx-h100", "--gpu", "5", "--share", "4/4")

    assert code == ExitCode.USAGE and "share 4/4" in err


def test_settings_read_share_and_reserve():
    policy = configure({"GPUNUMA_SHARE": " 1/4 ", "GPUNUMA_RESERVE": "3"}).policy

    assert (policy.share, policy.reserve) == (Share(1, 4), 3)
    assert configure({}).policy.share is None


def test_the_cache_scope_on_the_mi300x_host_gives_gpu_5_one_ccd(capsys):
    got = plan_json(capsys, "mi300x", "--gpu", "5", "--scope", "cache")

    assert (got["cpus"], got["cpu_scope"]) == ("120-127,312-319", "cache")


def test_plan_env_prints_shell_exports_and_json(capsys):
    code, out, _ = run(capsys, "plan", "--simulate", "dgx-h100", "--gpu", "5", "--env")
    env = json.loads(run(capsys, "plan", "--simulate", "dgx-h100", "--gpu", "5", "--env", "--json")[1])

    assert code == ExitCode.OK
    # GPU 5 is rank 1 of node 1's four GPUs: its own 14 of the node's 56 cores, SMT siblings with them.
    assert "export OMP_PLACES='{70}:14,{182}:14'" in out.splitlines()
    assert env["NCCL_IB_HCA"] == "=mlx5_9:1" and env["GPUNUMA_CPUS"] == "56-111,168-223"
    shell = subprocess.run(["sh", "-c", out + 'printf "%s|%s" "$OMP_PLACES" "$NCCL_IB_HCA"'], capture_output=True,
                           text=True, check=True)
    assert shell.stdout == "{70}:14,{182}:14|=mlx5_9:1"


def test_topo_shows_each_gpus_nearest_nic(capsys):
    code, out, _ = run(capsys, "topo", "--simulate", "dgx-h100", "--json")
    text = run(capsys, "topo", "--simulate", "dgx-h100")[1]

    assert code == ExitCode.OK
    assert [gpu["nics"][0]["name"] for gpu in json.loads(out)["gpus"]] == [
        "mlx5_0", "mlx5_3", "mlx5_4", "mlx5_5", "mlx5_6", "mlx5_9", "mlx5_10", "mlx5_11"
    ]
    assert "      nearest NICs (switch): mlx5_9 (ibp192s0)" in text.splitlines()


# -- the launch helpers hand the environment down -------------------------------------------------
ENV_OF_CHILD = [sys.executable, "-c",
                "import os; print(os.environ['GPUNUMA_CPUS'], os.environ['OMP_NUM_THREADS'], "
                "os.environ.get('OMP_PROC_BIND'))"]


def one_cpu_plan() -> BindingPlan:
    from gpunuma.core.cpuset import CpuSet
    from gpunuma.core.policy import MemoryPolicy

    cpu = min(os.sched_getaffinity(0))
    return BindingPlan(gpus=(0,), nodes=(0,), cpus=CpuSet.of({cpu}), memory_policy=MemoryPolicy.NONE,
                       memory_nodes=(), reasons=("test",))


def test_an_execed_program_gets_the_binding_environment_but_keeps_its_own_values():
    cpu = min(os.sched_getaffinity(0))
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GPUNUMA_"))}

    plain = subprocess.run(exec_argv(one_cpu_plan(), ENV_OF_CHILD), capture_output=True, text=True, check=True,
                           env=child_env)
    kept = subprocess.run(exec_argv(one_cpu_plan(), ENV_OF_CHILD), capture_output=True, text=True, check=True,
                          env={**child_env, "OMP_PROC_BIND": "spread"})

    assert plain.stdout.split() == [str(cpu), "1", "close"]
    assert kept.stdout.split() == [str(cpu), "1", "spread"]


def put_env(queue) -> None:
    """A spawned worker's target: what its environment says about its binding."""
    queue.put({name: os.environ.get(name) for name in ("GPUNUMA_CPUS", "NCCL_IB_HCA", "OMP_NUM_THREADS")})


def test_a_spawned_worker_gets_the_environment_before_its_target_runs(monkeypatch):
    dgx = machine("dgx-h100")
    from gpunuma.core.planner import plan_binding
    from gpunuma.core.policy import Policy

    wanted = plan_binding(dgx.topology(), [5], dgx.allowed(), Policy(share=(1, 4)))
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # the user's own value wins
    monkeypatch.delenv("NCCL_IB_HCA", raising=False)
    monkeypatch.delenv("GPUNUMA_CPUS", raising=False)
    queue = multiprocessing.get_context("spawn").Queue()

    process = start_bound_process(wanted, put_env, args=(queue,), binder=dgx.kernel())
    env = queue.get(timeout=120)
    process.join(timeout=60)

    assert process.exitcode == 0
    assert env == {"GPUNUMA_CPUS": "70-83,182-195", "NCCL_IB_HCA": "=mlx5_9:1", "OMP_NUM_THREADS": "4"}


def test_a_spawned_worker_told_child_env_false_gets_none_of_it(monkeypatch):
    dgx = machine("dgx-h100")
    from gpunuma.core.planner import plan_binding
    from gpunuma.core.policy import Policy

    wanted = plan_binding(dgx.topology(), [5], dgx.allowed(), Policy())
    for name in ("OMP_NUM_THREADS", "NCCL_IB_HCA", "GPUNUMA_CPUS"):
        monkeypatch.delenv(name, raising=False)
    queue = multiprocessing.get_context("spawn").Queue()

    process = start_bound_process(wanted, put_env, args=(queue,), binder=dgx.kernel(), child_env=False)
    env = queue.get(timeout=120)
    process.join(timeout=60)

    assert process.exitcode == 0 and env == {"GPUNUMA_CPUS": None, "NCCL_IB_HCA": None, "OMP_NUM_THREADS": None}
