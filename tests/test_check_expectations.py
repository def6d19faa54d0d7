"""`gpunuma check`: what a process is expected to hold (its GPU's plan, an explicit node, gpunuma's own record of
what it bound the process to, nothing on a machine without a GPU) and what counts as a difference from it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from gpunuma.tools.check import Verdict, check_process
from gpunuma.tools.cli import ExitCode, main
from gpunuma_fakes import build, machine, render_sysfs
from gpunuma_fakes.render import PID, TIDS

DATA = Path(__file__).parent / "data"
NODE1 = "56-111,168-223"
RANK1_PLACES = "70-83,182-195"  # GPU 5's OpenMP places: rank 1 of node 1's four GPUs


@pytest.fixture
def dgx_on_node_1(tmp_path) -> Path:
    """A captured DGX H100 whose process 4242 (threads 4242-4244) runs on node 1 with memory preferred 1."""
    dgx = dataclasses.replace(machine("dgx-h100"), affinity=NODE1, mempolicy="prefer:1")
    return render_sysfs(dgx, tmp_path / "tree")


def set_thread(root: Path, tid: int, cpus: str) -> None:
    status = root / "proc" / str(PID) / "task" / str(tid) / "status"
    lines = [f"Cpus_allowed_list:\t{cpus}" if line.startswith("Cpus_allowed_list:") else line
             for line in status.read_text().splitlines()]
    status.write_text("\n".join(lines) + "\n")


def set_environ(root: Path, **env: str) -> None:
    (root / "proc" / str(PID) / "environ").write_bytes(b"".join(f"{k}={v}\0".encode() for k, v in env.items()))


def set_memory(root: Path, policy: str) -> None:
    (root / "proc" / str(PID) / "numa_maps").write_text(f"00400000 {policy} file=/usr/bin/python3 mapped=1\n")


def check(capsys, root: Path, *flags: str) -> tuple[int, dict]:
    code = main(["check", "--pid", str(PID), "--root", str(root), "--source", "sysfs", "--json", *flags])
    return code, json.loads(capsys.readouterr().out)


# -- narrowed within the plan is fine; outside it is a difference ---------------------------------------------
def test_an_openmp_team_on_its_own_places_within_the_plan_checks_ok_with_a_note(dgx_on_node_1, capsys):
    set_environ(dgx_on_node_1, CUDA_VISIBLE_DEVICES="5")
    for tid in TIDS[1:]:  # the main thread keeps the node; libgomp pinned the team's threads to its places
        set_thread(dgx_on_node_1, tid, RANK1_PLACES)

    code, result = check(capsys, dgx_on_node_1)

    assert code == ExitCode.OK and result["verdict"] == "as_expected" and result["mismatches"] == []
    assert result["note_details"] == [{"code": "check_threads_within_plan", "values": {
        "count": 2, "cpus": RANK1_PLACES, "planned": NODE1, "tids": "4243, 4244"}}]


@pytest.mark.parametrize("cpus", ["0-55,112-167", "0,56-111,168-223"], ids=["other node", "one cpu outside"])
def test_a_thread_with_any_cpu_outside_the_plan_is_a_difference(dgx_on_node_1, capsys, cpus):
    set_environ(dgx_on_node_1, CUDA_VISIBLE_DEVICES="5")
    set_thread(dgx_on_node_1, TIDS[2], cpus)

    code, result = check(capsys, dgx_on_node_1)

    assert code == ExitCode.NOT_AS_EXPECTED
    assert result["mismatches"] == [f"thread {TIDS[2]} (worker) runs on {cpus}, planned {NODE1}"]


@pytest.mark.parametrize(
    ("memory", "policy", "verdict", "notes"),
    [("preferred", "bind:1", Verdict.AS_EXPECTED, ("check_memory_within_plan",)),
     ("preferred", "prefer:0", Verdict.NOT_AS_EXPECTED, ()),
     ("bind", "prefer:1", Verdict.NOT_AS_EXPECTED, ())],  # preferred may spill where bind never does
    ids=["stricter within", "another node", "looser than planned"],
)
def test_memory_is_a_difference_only_where_it_may_go_outside_the_plan(dgx_on_node_1, memory, policy, verdict, notes):
    set_environ(dgx_on_node_1, CUDA_VISIBLE_DEVICES="5", GPUNUMA_MEMORY=memory)
    set_memory(dgx_on_node_1, policy)

    result = check_process(PID, source="sysfs", root=dgx_on_node_1)

    assert (result.verdict, result.note_codes) == (verdict, notes)


# -- an explicit node; gpunuma's own record of what it bound the process to ----------------------------------
@pytest.mark.parametrize(("node", "code"), [("1", ExitCode.OK), ("0", ExitCode.NOT_AS_EXPECTED)])
def test_check_node_compares_with_that_node(dgx_on_node_1, capsys, node, code):
    got, result = check(capsys, dgx_on_node_1, "--node", node)  # its environment is not in the tree

    assert got == code and result["plan"]["numa_nodes"] == [int(node)]


def test_check_node_names_a_node_the_machine_has(dgx_on_node_1, capsys):
    assert main(["check", "--pid", str(PID), "--root", str(dgx_on_node_1), "--node", "9"]) == ExitCode.ERROR
    assert "node 9 does not exist" in capsys.readouterr().err


def test_a_process_gpunuma_exec_started_on_a_node_is_checked_against_its_own_record(dgx_on_node_1, capsys):
    # `gpunuma exec --node 1 -- prog`: prog starts with GPUNUMA_OWN, what gpunuma bound it to, and no GPU variable.
    set_environ(dgx_on_node_1, GPUNUMA_OWN=f"cpus={NODE1};before=0-223;mem=preferred:1;mem_before=-")
    set_thread(dgx_on_node_1, TIDS[1], RANK1_PLACES)

    code, result = check(capsys, dgx_on_node_1)

    assert code == ExitCode.OK
    assert (result["plan"]["cpus"], result["plan"]["numa_nodes"], result["plan"]["memory_nodes"]) == (NODE1, [1], [1])
    assert result["plan"]["reason_details"][0]["code"] == "check_own_record"
    assert [note["code"] for note in result["note_details"]] == ["check_threads_within_plan"]


def test_a_process_that_left_its_recorded_binding_is_a_difference(dgx_on_node_1, capsys):
    set_environ(dgx_on_node_1, GPUNUMA_OWN="cpus=0-55,112-167;before=0-223;mem=-;mem_before=-")

    code, result = check(capsys, dgx_on_node_1)

    assert code == ExitCode.NOT_AS_EXPECTED and len(result["mismatches"]) == len(TIDS)


# -- nothing to bind; captured hosts -------------------------------------------------------------------------
def test_a_process_on_a_machine_without_a_gpu_has_nothing_to_bind(tmp_path, capsys):
    root = render_sysfs(build(sockets=2, cores_per_node=4, name="no-gpu"), tmp_path / "tree")
    set_environ(root, PATH="/usr/bin")

    code, result = check(capsys, root)

    assert code == ExitCode.OK and result["verdict"] == "as_expected" and result["plan"]["binds"] is False
    assert result["plan"]["reason_details"][-1]["code"] == "no_gpu_on_machine"


def test_the_ci_vm_snapshot_process_has_nothing_to_bind(capsys):
    code = main(["check", "--root", str(DATA / "ci-vm.tar.gz"), "--json"])

    assert code == ExitCode.OK and json.loads(capsys.readouterr().out)["verdict"] == "as_expected"


@pytest.mark.parametrize("snapshot", ["h200x1.tar.gz", "h200x2-snapshot.tar.gz"])
def test_a_snapshot_process_with_its_gpu_named_gets_a_verdict(capsys, snapshot):
    # The snapshot holds its process as proc/self; its one node holds every CPU, so no binding is expected.
    code = main(["check", "--root", str(DATA / snapshot), "--physical-gpu", "0", "--json"])
    result = json.loads(capsys.readouterr().out)

    assert code == ExitCode.OK and result["verdict"] == "as_expected"
    assert result["plan"]["reason_details"][-1]["code"] == "spans_everything"
    assert result["notes"] == [] or [n["code"] for n in result["note_details"]] == [
        "check_environment_unreadable_named"]
