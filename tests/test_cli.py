"""The `gpunuma` command on simulated machines: topo, plan, exec, check, machines."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gpunuma.tools.cli import ExitCode, build_parser, main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_topo_json_has_the_documented_shape(capsys):
    code, out, _ = run(capsys, "topo", "--simulate", "dgx-h100", "--source", "sysfs", "--json")
    topo = json.loads(out)
    assert code == 0
    assert {"index", "uuid", "pci_bus_id", "numa_node", "local_cpus"} <= set(topo["gpus"][0])
    assert {"id", "cpus", "has_memory", "distances"} <= set(topo["nodes"][0])
    assert [g["numa_node"] for g in topo["gpus"]] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert topo["nodes"][1] | {"memory_mb": None} == {
        "id": 1, "cpus": "56-111,168-223", "has_memory": True, "memory_mb": None, "distances": {"0": 21, "1": 10},
    }


def test_nvml_and_sysfs_sources_print_the_same_dgx_topology(capsys):
    _, nvml, _ = run(capsys, "topo", "--simulate", "dgx-h100", "--source", "nvml")
    _, sysfs, _ = run(capsys, "topo", "--simulate", "dgx-h100", "--source", "sysfs")
    assert nvml.splitlines()[0] == "Topology (source: nvml)"
    assert nvml.splitlines()[1:] == sysfs.splitlines()[1:]


def test_plan_for_gpu_5_on_a_dgx_names_node_1_with_reasons(capsys):
    code, out, _ = run(capsys, "plan", "--simulate", "dgx-h100", "--gpu", "5", "--json")
    plan = json.loads(out)
    assert code == 0
    assert plan["gpus"] == [5] and plan["numa_node"] == 1
    assert plan["cpus"] == "56-111,168-223" and plan["memory_policy"] == "preferred"
    assert {"code": "gpu_on_node", "values": {"gpu": "GPU 5 (0000:c3:00.0)", "node": 1}} in plan["reason_details"]
    assert len(plan["reason_details"]) == len(plan["reasons"])


def test_plan_follows_cuda_visible_devices_by_uuid(capsys, monkeypatch):
    _, out, _ = run(capsys, "topo", "--simulate", "dgx-h100", "--source", "nvml", "--json")
    uuid = json.loads(out)["gpus"][6]["uuid"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", uuid)
    _, out, _ = run(capsys, "plan", "--simulate", "dgx-h100", "--json")
    assert json.loads(out)["numa_node"] == 1 and json.loads(out)["gpus"] == [6]


def test_plan_on_a_cloud_vm_does_not_bind_and_says_why(capsys):
    _, out, _ = run(capsys, "plan", "--simulate", "cloud-vm", "--gpu", "0")
    assert "no binding" in out and "not guessing" in out


def test_plan_policy_options_are_applied(capsys):
    _, out, _ = run(capsys, "plan", "--simulate", "dgx-h100", "--gpu", "1", "--scope", "exclusive",
                    "--memory", "bind", "--json")
    plan = json.loads(out)
    assert plan["cpu_scope"] == "exclusive" and plan["memory_policy"] == "bind"
    assert plan["cpus"] == "14-27,126-139"  # rank 1 of 4 GPUs on node 0: cores 14-27 and their siblings


def test_exec_on_a_simulated_machine_reports_what_it_would_do_and_fails_a_ci_step(capsys):
    code, out, err = run(capsys, "exec", "--simulate", "gb200", "--gpu", "3", "--", "python", "-c", "pass")
    assert code == ExitCode.NOT_RUN
    assert "nothing executed" in out and "NUMA node 1, CPUs 72-143" in out
    assert "NOT run" in err and "--dry-run" in err


def test_exec_on_a_simulated_machine_with_dry_run_asks_for_only_the_plan(capsys):
    code, out, err = run(capsys, "exec", "--simulate", "gb200", "--gpu", "3", "--dry-run", "--", "true")
    assert code == ExitCode.OK and "nothing executed" in out and err == ""


def test_exec_runs_the_command_bound_on_this_machine():
    code = "import os; print(sorted(os.sched_getaffinity(0)))"
    out = subprocess.run(
        [sys.executable, "-m", "gpunuma", "exec", "--node", "0", "--", sys.executable, "-c", code],
        capture_output=True, text=True, check=True,
    ).stdout
    assert json.loads(out) == sorted(os.sched_getaffinity(0))  # one node here: node 0 is every allowed CPU


def test_exec_without_a_gpu_runs_unbound_and_says_why():
    proc = subprocess.run(
        [sys.executable, "-m", "gpunuma", "exec", "--gpu", "0", "--source", "sysfs", "--",
         sys.executable, "-c", "print('ran')"],
        capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ran"
    assert "not binding" in proc.stderr


def test_exec_strict_without_a_gpu_fails_with_the_reason(capsys):
    code, _, err = run(capsys, "exec", "--strict", "--gpu", "0", "--source", "sysfs", "--", "true")
    assert code == ExitCode.ERROR and "gpunuma: error:" in err


def test_check_prints_this_process(capsys):
    from gpunuma.adapters.sysfs import SysfsTopology

    code, out, _ = run(capsys, "check", "--source", "sysfs", "--json")
    # No CUDA_VISIBLE_DEVICES here: on a machine without a GPU nothing is to be bound (OK); with GPUs its GPU is
    # unknown, so whether it is bound right cannot be told.
    gpus = SysfsTopology().read().gpus
    assert code == (ExitCode.CANNOT_TELL if gpus else ExitCode.OK) and json.loads(out)["threads"]


def test_machines_lists_the_catalogue(capsys):
    _, out, _ = run(capsys, "machines")
    names = [line.split()[0] for line in out.splitlines()]
    assert {"dgx-h100", "dgx-a100", "gh200", "gb200", "cloud-vm", "snc", "workstation"} <= set(names)


def test_an_unknown_machine_is_a_clear_error(capsys):
    code, _, err = run(capsys, "topo", "--simulate", "dgx-9000")
    assert code == ExitCode.USAGE and "dgx-9000" in err and "dgx-h100" in err


@pytest.mark.parametrize("command", ["topo", "plan"])
def test_commands_work_on_this_real_machine(capsys, command):
    code, out, _ = run(capsys, command, "--source", "sysfs", "--json")
    assert code == 0 and json.loads(out)


@pytest.mark.parametrize(
    "argv",
    [
        ("topo", "--simulate", "dgx-h100"),
        ("plan", "--simulate", "dgx-h100", "--gpu", "5"),
        ("exec", "--simulate", "dgx-h100", "--gpu", "5", "--", "true"),
        ("check",),
    ],
)
def test_an_invalid_gpunuma_source_is_a_settings_error_in_every_command_in_strict_mode(capsys, monkeypatch, argv):
    monkeypatch.setenv("GPUNUMA_SOURCE", "nvm")
    monkeypatch.setenv("GPUNUMA_STRICT", "1")
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert "gpunuma: error: GPUNUMA_SOURCE='nvm': expected one of auto, nvml, sysfs" in err


def test_strict_exec_does_not_run_on_an_invalid_gpunuma_source():
    # A subprocess: were the command run, it would replace the process that runs it.
    proc = subprocess.run(
        [sys.executable, "-m", "gpunuma", "exec", "--strict", "--gpu", "0", "--", sys.executable, "-c", "print('ran')"],
        capture_output=True, text=True, env={**os.environ, "GPUNUMA_SOURCE": "nvm"},
    )
    assert proc.returncode == 2 and "ran" not in proc.stdout
    assert "GPUNUMA_SOURCE='nvm'" in proc.stderr


def test_best_effort_commands_warn_about_an_invalid_variable_and_use_its_default(capsys, monkeypatch, caplog):
    monkeypatch.setenv("GPUNUMA_SOURCE", "nvm")
    code, out, _ = run(capsys, "topo", "--simulate", "dgx-h100")
    assert code == 0 and out.splitlines()[0] == "Topology (source: auto(nvml+sysfs))"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "GPUNUMA_SOURCE='nvm'" in warnings[0] and "using the default" in warnings[0]


def test_a_flag_wins_over_its_variable_even_a_bad_one(capsys, monkeypatch):
    monkeypatch.setenv("GPUNUMA_MEMORY", "banana")
    monkeypatch.setenv("GPUNUMA_STRICT", "1")
    code, out, err = run(capsys, "plan", "--simulate", "dgx-h100", "--gpu", "5", "--memory", "bind", "--json")
    assert code == 0 and err == ""
    assert json.loads(out)["memory_policy"] == "bind"


def test_topo_reads_no_policy_variable(capsys, monkeypatch):
    for name in ("GPUNUMA_CPU_SCOPE", "GPUNUMA_MEMORY", "GPUNUMA_OVERRIDE", "GPUNUMA_SPREAD"):
        monkeypatch.setenv(name, "banana")
    monkeypatch.setenv("GPUNUMA_STRICT", "1")
    code, _, err = run(capsys, "topo", "--simulate", "dgx-h100")
    assert code == 0 and err == ""


def test_gpunuma_source_is_the_default_and_source_overrides_it(capsys, monkeypatch):
    monkeypatch.setenv("GPUNUMA_SOURCE", "nvml")
    _, out, _ = run(capsys, "topo", "--simulate", "dgx-h100")
    assert out.splitlines()[0] == "Topology (source: nvml)"
    _, out, _ = run(capsys, "topo", "--simulate", "dgx-h100", "--source", "sysfs")
    assert out.splitlines()[0] == "Topology (source: sysfs)"


def test_check_reads_the_topology_from_gpunuma_source(capsys, monkeypatch, render):
    from gpunuma_fakes import machine
    from gpunuma_fakes.render import PID

    root = render(machine("dgx-h100"))
    (root / "proc" / str(PID) / "environ").write_bytes(b"CUDA_VISIBLE_DEVICES=5\0")
    # This box has no NVIDIA driver: nvml, chosen by the variable alone, cannot read the topology.
    monkeypatch.setenv("GPUNUMA_SOURCE", "nvml")
    _, out, _ = run(capsys, "check", "--pid", str(PID), "--root", str(root), "--json")
    by_variable = json.loads(out)
    _, out, _ = run(capsys, "check", "--pid", str(PID), "--root", str(root), "--source", "sysfs", "--json")
    by_option = json.loads(out)

    assert by_variable["plan"] is None and "no plan to compare with" in by_variable["notes"][0]
    assert by_option["plan"]["numa_node"] == 1 and by_option["gpus"] == [5]


def test_exec_strict_from_the_environment_fails_instead_of_running_unbound():
    proc = subprocess.run(
        [sys.executable, "-m", "gpunuma", "exec", "--gpu", "0", "--source", "sysfs", "--",
         sys.executable, "-c", "print('ran')"],
        capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "GPUNUMA_STRICT": "1"},
    )
    assert proc.returncode == ExitCode.ERROR and "ran" not in proc.stdout


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["exec", "--node", "0", "--", "true"], {"node": 0, "command": ["--", "true"]}),
        (["exec", "--node=0", "true", "x"], {"node": 0, "command": ["true", "x"]}),
        (["exec", "--gpu", "0", "--gpu=GPU-ab", "--scope", "socket", "--", "python", "-c", "1"],
         {"gpu": ["0", "GPU-ab"], "scope": "socket", "command": ["--", "python", "-c", "1"]}),
        (["exec", "--dry-run", "--strict", "--source", "sysfs", "--json", "--", "a"],
         {"dry_run": True, "strict": True, "source": "sysfs", "json": True, "command": ["--", "a"]}),
        (["exec", "--", "-x"], {"command": ["--", "-x"]}),
        (["exec", "--node", "-1", "--", "t"], {"node": -1, "command": ["--", "t"]}),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_exec_reads_its_options_then_the_command(argv, expected):
    args = build_parser().parse_args(argv)
    assert {name: getattr(args, name) for name in expected} == expected


def test_a_bad_exec_option_is_argparse_s_usage_error(capsys):
    assert main(["exec", "--scope", "bogus", "--", "true"]) == ExitCode.USAGE
    assert "invalid choice: 'bogus'" in capsys.readouterr().err
