"""`gpunuma check`: the kernel's view of a process against the plan for the GPU it uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.reasons import Reason
from gpunuma.tools.check import Verdict, check_process
from gpunuma.tools.cli import ExitCode, main
from gpunuma_fakes import machine
from gpunuma_fakes.render import PID

NODE1 = CpuSet.parse_list("56-111,168-223")


def _set_thread_cpus(root, cpus: str) -> None:
    """Rewrite the simulated process's status files as if it were bound to ``cpus``."""
    for status in (root / "proc" / str(PID)).glob("**/status"):
        lines = [
            f"Cpus_allowed_list:\t{cpus}" if line.startswith("Cpus_allowed_list:") else line
            for line in status.read_text().splitlines()
        ]
        status.write_text("\n".join(lines) + "\n")


def _with_environ(root, **env: str) -> None:
    payload = b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items())
    (root / "proc" / str(PID) / "environ").write_bytes(payload)


def test_a_worker_bound_to_its_gpus_node_checks_ok(render):
    root = render(machine("dgx-h100"))
    uuid = SysfsTopology(root=root).read().gpu(5).uuid
    _with_environ(root, CUDA_VISIBLE_DEVICES=uuid)
    _set_thread_cpus(root, NODE1.to_list())
    result = check_process(PID, source="sysfs", root=root)
    assert result.gpus == (5,)
    assert result.plan is not None and result.plan.nodes == (1,)
    assert [m for m in result.mismatches if "thread" in m] == []
    assert result.to_dict()["gpus"] == [5]


def test_an_unbound_worker_is_reported_thread_by_thread(render):
    root = render(machine("dgx-h100"))
    _with_environ(root, CUDA_VISIBLE_DEVICES="5")
    result = check_process(PID, source="sysfs", root=root)
    assert not result.ok
    thread_lines = [m for m in result.mismatches if m.startswith("thread")]
    assert len(thread_lines) == len(result.view.threads) >= 2
    assert "planned 56-111,168-223" in thread_lines[0]
    assert "NOT bound as planned" in result.render()


def _notes(result) -> list[tuple[str, dict]]:
    """Each note of a check as its code and values."""
    return [(note.code, note.values) for note in result.notes]


def test_a_process_whose_environment_is_unreadable_is_shown_without_a_verdict(render):
    root = render(machine("dgx-h100"))
    result = check_process(PID, source="sysfs", root=root)
    assert result.plan is None and result.verdict is Verdict.CANNOT_TELL and not result.ok
    assert _notes(result) == [("check_environment_unreadable", {"pid": PID})]
    assert f"process {PID}" in result.render()


def test_a_named_gpu_of_a_process_whose_environment_is_unreadable_is_planned_with_the_defaults(render):
    root = render(machine("dgx-h100"))
    result = check_process(PID, source="sysfs", root=root, physical=5)
    assert result.plan is not None and result.plan.nodes == (1,) and result.plan.memory_policy.value == "preferred"
    assert _notes(result) == [("check_environment_unreadable_named", {"pid": PID})]


def test_a_process_without_cuda_visible_devices_has_no_single_expected_node(render):
    root = render(machine("dgx-h100"))
    _with_environ(root, PATH="/usr/bin")
    result = check_process(PID, source="sysfs", root=root)
    assert result.plan is None and result.verdict is Verdict.CANNOT_TELL
    assert _notes(result) == [("check_no_visible_devices", {})]


def test_a_process_whose_gpu_the_machine_lacks_has_no_plan_and_says_why(render):
    root = render(machine("dgx-h100"))
    _with_environ(root, CUDA_VISIBLE_DEVICES="99")  # eight GPUs: index 99 resolves to none of them
    result = check_process(PID, source="sysfs", root=root)
    assert result.plan is None and result.verdict is Verdict.CANNOT_TELL
    assert _notes(result) == [("check_gpu_unresolved", {})]


@pytest.mark.parametrize("visible", ["", "-1", "NoDevFiles"])
def test_a_process_that_sees_no_gpu_has_nothing_to_bind_and_says_why(render, visible):
    root = render(machine("dgx-h100"))
    _with_environ(root, CUDA_VISIBLE_DEVICES=visible)
    result = check_process(PID, source="sysfs", root=root)
    assert result.plan is not None and not result.plan.binds and result.gpus == ()
    assert result.verdict is Verdict.AS_EXPECTED and result.ok
    assert _notes(result) == [("check_no_gpu", {})]
    assert "OK: no binding is expected for it" in result.render()


def test_this_process_can_be_checked_on_the_real_machine():
    result = check_process("self", source="sysfs")
    assert result.view.threads and result.view.cpus_allowed


def _with_numa_maps(root, policy: str) -> None:
    """The first numa_maps line, whose policy field shows the main thread's memory policy."""
    (root / "proc" / str(PID) / "numa_maps").write_text(f"55d4c8e00000 {policy} file=/usr/bin/python3 mapped=1\n")


def test_a_worker_bound_with_memory_none_checks_ok(render):
    root = render(machine("dgx-h100"))
    _with_environ(root, CUDA_VISIBLE_DEVICES="5", GPUNUMA_MEMORY="none")
    _set_thread_cpus(root, NODE1.to_list())
    _with_numa_maps(root, "default")
    result = check_process(PID, source="sysfs", root=root)
    assert result.ok, result.mismatches
    assert result.plan is not None and result.plan.memory_policy.value == "none"
    assert "OK: every thread is bound as planned" in result.render()


def test_a_worker_bound_with_memory_bind_checks_ok_and_a_preferred_one_does_not(render):
    root = render(machine("dgx-h100"))
    _with_environ(root, CUDA_VISIBLE_DEVICES="5", GPUNUMA_MEMORY="bind")
    _set_thread_cpus(root, NODE1.to_list())
    _with_numa_maps(root, "bind:1")
    assert check_process(PID, source="sysfs", root=root).ok
    _with_numa_maps(root, "prefer:1")
    result = check_process(PID, source="sysfs", root=root)
    assert result.mismatches == ("memory policy is preferred 1, planned bind 1",)


def test_a_worker_bound_with_exclusive_scope_checks_against_its_own_share(render):
    root = render(machine("dgx-h100"))
    _with_environ(root, CUDA_VISIBLE_DEVICES="5", GPUNUMA_CPU_SCOPE="exclusive")
    # GPU 5 is rank 1 of the four GPUs on node 1: cores 70-83 and their SMT siblings.
    _set_thread_cpus(root, "70-83,182-195")
    result = check_process(PID, source="sysfs", root=root)
    assert result.ok, result.mismatches
    assert result.plan is not None and result.plan.cpus.to_list() == "70-83,182-195"
    assert "OK: every thread is bound as planned" in result.render()


def test_a_worker_told_not_to_bind_is_shown_not_judged(render):
    root = render(machine("dgx-h100"))
    _with_environ(root, CUDA_VISIBLE_DEVICES="5", GPUNUMA_BIND="0")
    result = check_process(PID, source="sysfs", root=root)
    text = result.render()
    assert result.mismatches == () and not result.compared
    assert result.verdict is Verdict.CANNOT_TELL and not result.ok
    assert result.plan is not None and result.plan.nodes == (1,), "the plan is still shown"
    assert _notes(result) == [("check_not_bound_by_choice", {"value": "0"})]
    assert "NOT bound" not in text and "OK:" not in text
    assert result.to_dict()["compared"] is False


def test_a_target_with_an_invalid_setting_is_checked_against_the_default_it_ran_with(render):
    root = render(machine("dgx-h100"))
    _with_environ(root, CUDA_VISIBLE_DEVICES="5", GPUNUMA_MEMORY="lots")
    result = check_process(PID, source="sysfs", root=root)
    assert result.plan is not None and result.plan.memory_policy.value == "preferred"  # best-effort: the default
    assert result.note_codes == ("check_setting_defaulted",)
    setting = result.notes[0].values["setting"]
    assert (setting.code, setting.values["variable"]) == ("setting_not_understood", "GPUNUMA_MEMORY")


def test_a_strict_target_with_an_invalid_setting_has_no_plan_and_says_why(render):
    root = render(machine("dgx-h100"))
    _with_environ(root, CUDA_VISIBLE_DEVICES="5", GPUNUMA_MEMORY="lots", GPUNUMA_STRICT="1")
    result = check_process(PID, source="sysfs", root=root)
    assert result.plan is None and result.verdict is Verdict.CANNOT_TELL
    assert result.note_codes == ("check_no_plan",)
    assert result.notes[0].values["error"].startswith("GPUNUMA_MEMORY=")  # the strict settings error, as raised


def test_a_ray_worker_without_cuda_visible_devices_points_to_its_binding_report(render):
    root = render(machine("dgx-h100"))
    _set_thread_cpus(root, NODE1.to_list())
    _with_environ(root, RAY_RAYLET_PID="1234", RAY_JOB_ID="01000000", PATH="/usr/bin")
    result = check_process(PID, source="sysfs", root=root)
    assert result.plan is None and result.gpus == ()
    assert _notes(result) == [("check_ray_worker", {"pid": PID, "variable": "RAY_RAYLET_PID"})]


@pytest.mark.parametrize(
    ("env", "code"),
    [({"PATH": "/usr/bin"}, "check_no_visible_devices"), ({"RAY_RAYLET_PID": "1234"}, "check_ray_worker"),
     ({"CUDA_VISIBLE_DEVICES": "5", "GPUNUMA_BIND": "0"}, "check_not_bound_by_choice")],
)
def test_the_text_output_shows_each_note_rendered_from_its_code(render, env, code):
    root = render(machine("dgx-h100"))
    _with_environ(root, **env)
    result = check_process(PID, source="sysfs", root=root)
    shown = [line.removeprefix("note: ") for line in result.render().splitlines() if line.startswith("note: ")]
    assert result.note_codes == (code,) and shown == [Reason.of(code, **result.notes[0].values)]


def test_check_json_carries_each_note_as_text_and_as_data_like_the_plan_s_reasons(render, capsys):
    import json

    from gpunuma.tools.cli import ExitCode, main

    root = render(machine("dgx-h100"))
    _with_environ(root, CUDA_VISIBLE_DEVICES="5", GPUNUMA_MEMORY="lots", GPUNUMA_BIND="0")

    assert main(["check", "--pid", str(PID), "--root", str(root), "--source", "sysfs", "--json"]) == (
        ExitCode.CANNOT_TELL)
    shape = json.loads(capsys.readouterr().out)
    assert [detail["code"] for detail in shape["note_details"]] == [
        "check_setting_defaulted", "check_not_bound_by_choice"]
    assert shape["note_details"][0]["values"]["setting"]["code"] == "setting_not_understood"
    assert shape["note_details"][0]["values"]["setting"]["values"]["variable"] == "GPUNUMA_MEMORY"
    assert shape["note_details"][1] == {"code": "check_not_bound_by_choice", "values": {"value": "0"}}
    assert len(shape["notes"]) == len(shape["note_details"])
    assert set(shape["plan"]) >= {"reasons", "reason_details"}


def test_a_worker_started_with_a_share_checks_against_that_share(render):
    from gpunuma.core.policy import Share

    root = render(machine("dgx-h100"))
    _with_environ(root, CUDA_VISIBLE_DEVICES="5")  # --share was a flag: its environment does not say it
    # Part 1 of 2 of node 1's 56 cores (with their SMT siblings): cores 84-111.
    _set_thread_cpus(root, "84-111,196-223")

    # Against the whole node, its threads run on part of it: within the plan, a note and no difference.
    whole = check_process(PID, source="sysfs", root=root)
    assert whole.ok and whole.note_codes == ("check_threads_within_plan",)
    result = check_process(PID, source="sysfs", root=root, share=Share(1, 2))
    assert result.ok and result.notes == (), result.mismatches
    assert result.plan is not None and result.plan.cpus.to_list() == "84-111,196-223"


def test_the_check_command_takes_share_and_reserve_flags_over_the_process_s_variables(render, capsys):
    import json

    from gpunuma.tools.cli import ExitCode, main

    root = render(machine("dgx-h100"))
    _with_environ(root, CUDA_VISIBLE_DEVICES="5", GPUNUMA_SHARE="0/2")
    _set_thread_cpus(root, "84-111,196-223")

    assert main(["check", "--pid", str(PID), "--root", str(root), "--source", "sysfs", "--share", "1/2",
                 "--json"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["plan"]["share"] == "1/2"
    assert main(["check", "--pid", str(PID), "--root", str(root), "--share", "2/2"]) == ExitCode.USAGE



def test_an_intel_worker_that_sees_its_gpu_through_ze_affinity_mask_is_judged(render):
    # The same table of visibility variables as the resolution's: an Intel worker's mask names its GPU.
    root = render(machine("intel-max"))
    _with_environ(root, ZE_AFFINITY_MASK="4")
    result = check_process(PID, source="sysfs", root=root)
    assert result.gpus == (4,) and result.plan is not None
    assert "check_no_visible_devices" not in result.note_codes


# -- under GPUNUMA_SIMULATE: the simulated kernel is read back, as the real one is on a host ------------------
#: A serving worker as it starts under GPUNUMA_SIMULATE: binds (or not), starts its scheduler thread, then
#: checks itself (``self``) or waits for the operator to check it (one line on stdin ends it).
WORKER = """
import json, sys, threading
import gpunuma
if sys.argv[1] == "bind":
    gpunuma.bind_to_gpu()
stop = threading.Event()
scheduler = threading.Thread(target=stop.wait, name="scheduler")
scheduler.start()
print(json.dumps({"scheduler": scheduler.native_id}), flush=True)
if sys.argv[2] == "self":
    print(json.dumps(gpunuma.check_process().to_dict()), flush=True)
else:
    sys.stdin.readline()
stop.set()
"""


def _worker(*args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
        "GPUNUMA_SIMULATE": "dgx-h100", "CUDA_VISIBLE_DEVICES": "5",
    }
    env.pop("GPUNUMA_SIMULATED_KERNEL", None)
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, *args], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def test_a_simulated_worker_checks_itself_after_start_up_with_the_operators_call():
    worker = _worker("bind", "self")
    out, _ = worker.communicate(timeout=120)
    started, checked = (json.loads(line) for line in out.splitlines())

    assert checked["verdict"] == "as_expected" and checked["gpus"] == [5]
    threads = {t["tid"]: t["cpus"] for t in checked["threads"]}
    assert threads[started["scheduler"]] == NODE1.to_list(), "a thread started after the bind holds its creator's CPUs"
    assert set(threads.values()) == {NODE1.to_list()}
    assert (checked["mempolicy"], checked["mempolicy_nodes"]) == ("preferred", [1])


@pytest.mark.parametrize(("bound", "verdict"), [("bind", ExitCode.OK), ("no-bind", ExitCode.NOT_AS_EXPECTED)])
def test_gpunuma_check_pid_reads_a_simulated_workers_threads(capsys, bound, verdict):
    worker = _worker(bound, "wait")
    try:
        started = json.loads(worker.stdout.readline())  # type: ignore[union-attr]
        status = main(["check", "--pid", str(worker.pid), "--simulate", "dgx-h100", "--json"])
    finally:
        worker.communicate("done\n", timeout=120)

    checked = json.loads(capsys.readouterr().out)
    assert status == verdict and checked["pid"] == worker.pid and checked["gpus"] == [5]
    threads = {t["tid"]: t["cpus"] for t in checked["threads"]}
    expected = NODE1.to_list() if bound == "bind" else "0-223"
    assert threads[started["scheduler"]] == expected and set(threads.values()) == {expected}
