"""``gpunuma snapshot``, ``--root ARCHIVE`` and ``--simulate PATH`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpunuma.tools.cli import ExitCode, main

DATA = Path(__file__).parent / "data"
H200X2 = str(DATA / "h200x2.tar.gz")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_plan_from_a_snapshot_of_this_machine_equals_the_live_plan(capsys, tmp_path):
    archive = str(tmp_path / "snapshot.tar.gz")
    code, out, _ = run(capsys, "snapshot", "-o", archive)
    assert code == 0 and "attach it to a bug report" in out

    _, out, _ = run(capsys, "plan", "--node", "0", "--source", "sysfs", "--root", archive, "--json")
    replayed = json.loads(out)
    _, out, _ = run(capsys, "plan", "--node", "0", "--source", "sysfs", "--json")
    live = json.loads(out)

    assert (replayed["cpus"], replayed["memory_nodes"]) == (live["cpus"], live["memory_nodes"])
    assert replayed["binds"] and replayed["numa_node"] == 0


def test_topo_reads_a_captured_hosts_kernel_files_without_this_machines_nvml(capsys):
    code, out, _ = run(capsys, "topo", "--root", H200X2, "--json")

    topology = json.loads(out)
    assert code == 0 and topology["source"] == "auto(sysfs)"
    assert [g["pci_bus_id"] for g in topology["gpus"]] == ["0000:00:06.0", "0000:00:07.0"]
    assert any(note.startswith("NVML not used: this machine's NVML") for note in topology["notes"])


def test_simulate_a_captured_host_replays_its_recorded_nvml(capsys):
    code, out, _ = run(capsys, "topo", "--simulate", H200X2, "--json")

    topology = json.loads(out)
    assert code == 0 and topology["source"] == "auto(nvml+sysfs)"
    assert [g["uuid"] for g in topology["gpus"]] == [
        "GPU-bc7134ed-f97c-a652-13bd-aab91e232bd2",
        "GPU-f14a4474-790f-6908-dc81-5823abbe3c9b",
    ]
    assert all("nvmlDeviceGetNumaNodeId: NotSupported" in g["notes"] for g in topology["gpus"])


@pytest.mark.parametrize("where", ["--root", "--simulate"])
def test_plan_on_a_captured_host(capsys, where):
    code, out, _ = run(capsys, "plan", where, H200X2, "--gpu", "1", "--json")

    plan = json.loads(out)
    # Its one node holds every CPU and all memory: binding to it would change nothing (planner rule 9).
    assert code == 0 and (plan["gpus"], plan["binds"], plan["cpus"]) == ([1], False, "")
    assert plan["reason_details"][-1]["code"] == "spans_everything"


def test_exec_on_a_captured_host_shows_the_plan_and_runs_nothing(capsys, tmp_path):
    marker = tmp_path / "ran"
    code, out, _ = run(capsys, "exec", "--root", H200X2, "--node", "0", "--dry-run", "--", "touch", str(marker))

    assert code == 0 and "nothing executed" in out and "NUMA node 0" in out
    assert not marker.exists()


def test_check_reads_the_process_a_snapshot_holds(capsys, tmp_path):
    from gpunuma.adapters.sysfs import SysfsTopology

    archive = str(tmp_path / "s.tar.gz")
    run(capsys, "snapshot", "-o", archive)

    code, out, _ = run(capsys, "check", "--root", archive, "--json")

    result = json.loads(out)
    assert result["threads"]
    if SysfsTopology().read().gpus:  # a snapshot keeps no environment: the GPU of its process is unknown
        assert code == ExitCode.CANNOT_TELL and result["plan"] is None
    else:  # a machine without a GPU: nothing to bind is expected
        assert code == ExitCode.OK and result["plan"]["binds"] is False


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["topo", "--root", H200X2, "--source", "nvml"], "source 'nvml' cannot read"),
        (["topo", "--root", "/nowhere/host.tar.gz"], "no such directory or archive"),
        (["check", "--pid", "999999"], "no such process"),
        (["plan", "--simulate", "/nowhere/host.tar.gz"], "no such directory or archive"),
    ],
)
def test_bad_captured_hosts_are_clear_errors(capsys, tmp_path, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)

    assert code == ExitCode.ERROR and words in err and "Traceback" not in err
