"""The command's contract at the edge: one exit status per outcome, one line per error, JSON on every outcome.

Each test names a class of outcome (a command that cannot run, a strict run that would be unbound, a
bad flag value, an error under ``--json``) and asserts the exit status and the structured output.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.tools.cli import ExitCode, main

RAN = "print('ran')"


#: This machine's GPUs, and what `check` says of a process whose GPU is unknown here (README: nothing to bind is 0).
GPUS = SysfsTopology().read().gpus
SELF_VERDICT = ExitCode.CANNOT_TELL if GPUS else ExitCode.OK


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUNUMA_", "CUDA_", "LOCAL_RANK"))}
    return {**env, **extra}


def gpunuma(*argv: str, module: str = "gpunuma", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True,
                          env=clean_env(**env), timeout=120)


def one_line(stderr: str) -> bool:
    return stderr.count("\n") == 1 and "Traceback" not in stderr


# -- exit statuses ------------------------------------------------------------------------------------------
def test_every_exit_status_is_distinct_and_the_shell_s_for_commands_that_cannot_run():
    codes = [int(code) for code in ExitCode]
    assert len(codes) == len(set(codes))
    assert (ExitCode.USAGE, ExitCode.NOT_EXECUTABLE, ExitCode.NOT_FOUND) == (2, 126, 127)


# -- a command that cannot run ------------------------------------------------------------------------------
def _not_executable_file(tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return str(script)


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (lambda tmp: "/nonexistent/tool", ExitCode.NOT_FOUND),
        (lambda tmp: "gpunuma-no-such-command-on-path", ExitCode.NOT_FOUND),
        (lambda tmp: "", ExitCode.NOT_FOUND),
        (lambda tmp: "-x", ExitCode.NOT_FOUND),
        (lambda tmp: str(tmp), ExitCode.NOT_EXECUTABLE),  # a directory
        (_not_executable_file, ExitCode.NOT_EXECUTABLE),
    ],
    ids=["missing path", "missing on PATH", "empty name", "dash name", "directory", "no execute bit"],
)
@pytest.mark.parametrize("bound", [True, False], ids=["bound", "unbound (no GPU, best effort)"])
def test_exec_of_a_command_that_cannot_run_is_one_line_and_the_shell_s_status(tmp_path, command, code, bound):
    target = command(tmp_path)
    where = ["--node", "0"] if bound else ["--gpu", "0", "--source", "sysfs"]

    done = gpunuma("exec", *where, "--", target, CUDA_VISIBLE_DEVICES="")

    assert done.returncode == code
    assert done.stderr.splitlines()[-1].startswith(f"gpunuma exec: cannot run {target!r}: ")
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize(
    ("command", "code"), [("/nonexistent/tool", ExitCode.NOT_FOUND), ("/", ExitCode.NOT_EXECUTABLE)]
)
def test_the_launch_module_reports_a_command_that_cannot_run_like_exec(command, code):
    done = gpunuma("--cpus=0", "--nodes=0", "--", command, module="gpunuma.tools.launch")

    assert done.returncode == code and one_line(done.stderr)


@pytest.mark.parametrize(
    "argv",
    [[], ["--cpus=0"], ["--cpus=0", "--"], ["--cpus=abc", "--", "true"], ["--cpus=0", "--memory=lots", "--", "true"]],
    ids=["nothing", "no command", "empty command", "bad cpulist", "bad memory"],
)
def test_misusing_the_launch_module_is_a_usage_error_without_a_traceback(argv):
    done = gpunuma(*argv, module="gpunuma.tools.launch")

    assert done.returncode == ExitCode.USAGE and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith("python -m gpunuma.tools.launch: error: ")


# -- strict: never run unbound ------------------------------------------------------------------------------
@pytest.mark.parametrize("strict", [["--strict"], []], ids=["--strict", "GPUNUMA_STRICT=1"])
def test_strict_exec_does_not_run_where_nothing_would_be_bound(strict):
    # The cloud VM's GPUs report no NUMA locality: the plan binds nothing.
    done = gpunuma("exec", *strict, "--simulate", "cloud-vm", "--dry-run", "--gpu", "0", "--", "true",
                   **({} if strict else {"GPUNUMA_STRICT": "1"}))

    assert done.returncode == ExitCode.NOT_AS_EXPECTED and one_line(done.stderr)
    assert "no NUMA locality" in done.stderr and done.stdout == ""


def test_best_effort_exec_shows_the_unbound_plan_where_nothing_would_be_bound(capsys):
    code = main(["exec", "--simulate", "cloud-vm", "--dry-run", "--gpu", "0", "--", "true"])

    assert code == ExitCode.OK and "no binding" in capsys.readouterr().out


def test_strict_binding_in_the_library_raises_where_nothing_would_be_bound(tmp_path):
    from gpunuma import NotBoundError, bind_to_gpu
    from gpunuma_fakes import machine

    cloud = machine("cloud-vm")
    with pytest.raises(NotBoundError) as caught:
        bind_to_gpu(0, source=cloud.source(tmp_path), binder=cloud.kernel(), strict=True, env={})
    assert not caught.value.report.bound
    assert caught.value.report.reasons[-1].code == "gpu_locality_unknown"
    assert not bind_to_gpu(0, source=cloud.source(tmp_path), binder=cloud.kernel(), env={}).bound


# -- usage errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pid", ["abc", "0", "-1", "../tmp", "1/../..", "\u0661", "12" * 200])
def test_check_takes_only_a_positive_process_id(capsys, pid):
    assert main(["check", f"--pid={pid}"]) == ExitCode.USAGE
    assert "--pid" in capsys.readouterr().err


def test_check_takes_this_process_by_its_id(capsys):
    # Its GPU is unknown (no CUDA_VISIBLE_DEVICES): a verdict on a machine without a GPU (nothing to bind) only.
    assert main(["check", "--pid", str(os.getpid()), "--source", "sysfs"]) == SELF_VERDICT


# -- JSON on every outcome ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "code", "kind"),
    [
        (["plan", "--simulate", "dgx-h100", "--gpu", "99", "--json"], ExitCode.ERROR, "GpuResolutionError"),
        (["check", "--pid", "999999999", "--json"], ExitCode.ERROR, "TopologyUnavailableError"),
        (["topo", "--simulate", "dgx-9000", "--json"], ExitCode.USAGE, "UnknownMachineError"),
        (["plan", "--json", "--bogus"], ExitCode.USAGE, "UsageError"),
        (["check", "--json", "--pid", "abc"], ExitCode.USAGE, "UsageError"),
        (["exec", "--json", "--strict", "--simulate", "cloud-vm", "--gpu", "0", "--", "true"],
         ExitCode.NOT_AS_EXPECTED, "NotBoundError"),
    ],
    ids=["unknown GPU", "no such process", "unknown machine", "unknown flag", "bad pid", "strict unbound"],
)
def test_an_error_under_json_is_a_json_object_on_stdout_with_its_status(capsys, argv, code, kind):
    assert main(argv) == code
    out, err = capsys.readouterr()

    error = json.loads(out)["error"]
    assert error["exit_code"] == code and error["type"] == kind and error["message"]
    assert err.splitlines()[-1].startswith("gpunuma: error: ")


@pytest.mark.parametrize("argv", [["topo", "--simulate", "gb200", "--json"],
                                  ["plan", "--simulate", "dgx-a100", "--gpu", "0", "--json"],
                                  ["plan", "--simulate", "dgx-h100", "--gpu", "99", "--json"]],
                         ids=["topo", "plan", "error"])
def test_json_into_a_pipe_closed_early_ends_quietly(argv):
    child = subprocess.Popen([sys.executable, "-m", "gpunuma", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=clean_env())
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # the reader left before the first byte, as `| head -0` would
    stderr = child.stderr.read().decode()
    child.wait(timeout=120)

    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
    assert child.returncode in (ExitCode.OK, ExitCode.ERROR)


# -- messages name the right thing --------------------------------------------------------------------------
@pytest.mark.parametrize("variable", ["ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"])
def test_an_amd_variable_s_error_gives_amd_advice(variable):
    from gpunuma import GpuResolutionError, plan_for

    mi300x = machine_source("mi300x")
    with pytest.raises(GpuResolutionError) as caught:
        plan_for(source=mi300x, env={variable: "GPU-0123456789abcdef"})

    assert caught.value.variable == variable
    assert "rocm-smi" in str(caught.value) and "nvml" not in str(caught.value).lower()


def test_a_numa_node_that_does_not_exist_is_named_as_reported_not_as_minus_one(tmp_path):
    from gpunuma import plan_for
    from gpunuma.adapters.sysfs import SysfsTopology
    from gpunuma_fakes import machine, render_sysfs

    root = tmp_path / "dgx"
    render_sysfs(machine("dgx-h100"), root)
    (root / "sys/bus/pci/devices/0000:c3:00.0/numa_node").write_text("999\n")

    plan = plan_for(5, source=SysfsTopology(root=root), env={})

    (located,) = [reason for reason in plan.reasons if reason.code == "gpu_single_candidate"]
    assert located.values["said"].code == "said_node_not_listed" and located.values["said"].values["reported"] == 999
    assert "node 999 (" in located and "numa_node -1" not in located
    assert plan.nodes == (1,)


def machine_source(name: str):
    from gpunuma.adapters.static import StaticTopology
    from gpunuma_fakes import machine

    simulated = machine(name)
    return StaticTopology(simulated.topology(), simulated.allowed())


# -- output that cannot be written ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "code"),
    [(["check", "--source", "sysfs"], SELF_VERDICT),
     (["exec", "--simulate", "dgx-h100", "--gpu", "5", "--", "true"], ExitCode.NOT_RUN),
     (["plan", "--simulate", "dgx-h100", "--gpu", "99"], ExitCode.ERROR)],
    ids=["check verdict", "exec not run", "error"],
)
def test_a_reader_that_leaves_early_does_not_change_the_exit_status(argv, code):
    child = subprocess.Popen([sys.executable, "-m", "gpunuma", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=clean_env())
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()
    stderr = child.stderr.read().decode()
    child.wait(timeout=120)

    assert child.returncode == code and "Traceback" not in stderr
    if code == ExitCode.NOT_RUN:
        assert "was NOT run" in stderr


def test_a_full_disk_is_one_line_and_an_error():
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "gpunuma", "topo", "--simulate", "gb200", "--json"],
                              stdout=full, stderr=subprocess.PIPE, text=True, env=clean_env(), timeout=120)

    assert done.returncode == ExitCode.ERROR and one_line(done.stderr)


@pytest.mark.parametrize("argv", [["--help"], ["plan", "-h"], ["exec", "-h"]])
def test_help_into_a_full_disk_is_one_line_and_an_error(argv):
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "gpunuma", *argv], stdout=full, stderr=subprocess.PIPE,
                              text=True, env=clean_env(), timeout=120)

    assert done.returncode == ExitCode.ERROR and one_line(done.stderr)


def test_a_usage_error_keeps_its_status_when_stderr_cannot_take_the_line():
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "gpunuma", "plan", "--bogus"], stdout=subprocess.PIPE,
                              stderr=full, text=True, env=clean_env(), timeout=120)

    assert done.returncode == ExitCode.USAGE


def test_a_closed_stdout_is_no_traceback():
    done = subprocess.run([sys.executable, "-m", "gpunuma", "plan", "--simulate", "dgx-h100", "--gpu", "5"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=clean_env(),
                          timeout=120, close_fds=True, preexec_fn=lambda: os.close(1))

    assert done.returncode == ExitCode.OK and done.stderr == ""


# -- misuse is a usage error, with JSON when asked ----------------------------------------------------------
@pytest.mark.parametrize("verbose", [[], ["-v"]], ids=["quiet", "verbose"])
@pytest.mark.parametrize("after", [["--", "echo", "hi"], ["--json", "--", "echo"], ["-v", "--", "echo"]])
def test_exec_takes_no_flag_or_separator_as_a_flag_value(verbose, after):
    done = gpunuma(*verbose, "exec", "--simulate", "dgx-h100", "--dry-run", "--gpu", *after)

    assert done.returncode == ExitCode.USAGE and "Traceback" not in done.stderr

@pytest.mark.parametrize(
    "argv",
    [["exec", "--json", "--"], ["exec", "--json"], ["plan", "--json", "--simulate", "dgx-h100", "--gpu", ""],
     ["plan", "--json", "--simulate", "dgx-h100", "--gpu", "5", "--physical-gpu", "5"],
     ["check", "--json", "--gpu", "0", "--physical-gpu", "0"], ["check", "--json", "--reserve", "-1"],
     ["snapshot", "-o", "host.zip"], ["snapshot", "-o", ""], ["plan", "--js", "--bogus"]],
    ids=["exec --", "exec", "empty --gpu", "plan both gpu flags", "check both gpu flags", "negative reserve",
         "snapshot zip", "snapshot empty", "abbreviated flag"],
)
def test_misuse_is_a_usage_error_in_one_line(capsys, argv):
    assert main(argv) == ExitCode.USAGE
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("gpunuma: error: ")
    if "--json" in argv:
        assert json.loads(out)["error"]["exit_code"] == ExitCode.USAGE


def test_exec_json_shows_the_plan_it_would_run_as_json(capsys):
    assert main(["exec", "--simulate", "dgx-h100", "--gpu", "5", "--dry-run", "--json", "--", "true"]) == ExitCode.OK
    shown = json.loads(capsys.readouterr().out)
    assert shown["executed"] is False and shown["command"] == ["true"] and shown["plan"]["numa_node"] == 1


def test_exec_json_with_a_real_run_prints_its_record_on_stderr_before_the_command_starts():
    node = min(SysfsTopology(layout=False, gpus=False).read().cpu_nodes, key=lambda n: n.id).id
    command = [sys.executable, "-c", "import os, sys; print('started', file=sys.stderr); print(os.getpid())"]

    done = gpunuma("exec", "--json", "--node", str(node), "--", *command)

    assert done.returncode == 0, done.stderr
    record, _, after = done.stderr.rpartition("}\n")
    shown = json.loads(record + "}")
    assert after == "started\n", "the record comes first, then what the command writes"
    assert (shown["executed"], shown["command"], shown["where"]) == (True, command, "this machine")
    assert shown["plan"]["numa_nodes"] == [node] and shown["report"]["bound"] is True
    assert done.stdout.strip().isdigit(), "stdout is the command's alone"


CHILD_SEES = "import os; print(os.environ.get('OMP_NUM_THREADS'), os.environ.get('GPUNUMA_CPUS'))"


@pytest.mark.parametrize(("flags", "env", "handed"), [
    ([], {}, True), (["--no-child-env"], {}, False), ([], {"GPUNUMA_CHILD_ENV": "0"}, False),
    (["--no-child-env"], {"GPUNUMA_CHILD_ENV": "1"}, False)],  # the flag wins over the variable
    ids=["default", "flag", "variable", "flag-over-variable"])
def test_exec_hands_the_binding_s_variables_down_unless_told_not_to(flags, env, handed):
    node = min(SysfsTopology(layout=False, gpus=False).read().cpu_nodes, key=lambda n: n.id).id

    done = gpunuma("exec", "--node", str(node), *flags, "--", sys.executable, "-c", CHILD_SEES, **env)

    assert done.returncode == 0, done.stderr
    threads, cpus = done.stdout.split()
    assert (threads != "None" and cpus != "None") is handed and (threads == cpus == "None") is not handed


def test_read_only_commands_read_no_binding_switch_even_in_strict_mode(capsys, monkeypatch):
    monkeypatch.setenv("GPUNUMA_STRICT", "1")
    monkeypatch.setenv("GPUNUMA_BIND", "bogus")
    monkeypatch.setenv("GPUNUMA_REQUIRE", "bogus")
    assert main(["topo", "--simulate", "dgx-h100"]) == ExitCode.OK
    assert main(["plan", "--simulate", "dgx-h100", "--gpu", "5"]) == ExitCode.USAGE


def test_a_path_through_a_file_is_not_executable_as_in_a_shell(tmp_path):
    script = tmp_path / "file"
    script.write_text("")
    done = gpunuma("exec", "--node", "0", "--", str(script / "x"))

    assert done.returncode == ExitCode.NOT_EXECUTABLE and one_line(done.stderr)


@pytest.mark.parametrize(
    ("argv", "option"),
    [(["--cpus=0", "--nodes=abc", "--", "true"], "--nodes"), (["--cpus=", "--", "true"], "--cpus"),
     (["--cpus=0", "--memory=bind", "--", "true"], "--memory")],
    ids=["bad node list", "empty cpus", "memory without nodes"],
)
def test_the_launch_module_names_the_option_that_is_wrong(argv, option):
    done = gpunuma(*argv, module="gpunuma.tools.launch")

    assert done.returncode == ExitCode.USAGE and f"argument {option}" in done.stderr.splitlines()[-1]


def test_no_gpu_owned_names_the_variable_that_gave_none():
    from gpunuma import plan_for

    plan = plan_for(source=machine_source("mi300x"), env={"HIP_VISIBLE_DEVICES": "-1"})
    (why,) = plan.reasons
    assert why.code == "no_gpu_owned" and why.values["source"] == "HIP_VISIBLE_DEVICES"


def test_a_missing_numa_node_file_is_named_as_missing_not_as_minus_one(tmp_path):
    from gpunuma import plan_for
    from gpunuma.adapters.sysfs import SysfsTopology
    from gpunuma_fakes import machine, render_sysfs

    root = tmp_path / "dgx"
    render_sysfs(machine("dgx-h100"), root)
    (root / "sys/bus/pci/devices/0000:c3:00.0/numa_node").unlink()

    plan = plan_for(5, source=SysfsTopology(root=root), env={})

    (located,) = [reason for reason in plan.reasons if reason.code == "gpu_single_candidate"]
    assert located.values["said"].code == "said_no_node_file"
    assert plan.nodes == (1,)


# -- the library's launch helpers -------------------------------------------------------------------------
def _exec_missing_in_child(command: list[str]) -> dict[str, object]:
    from gpunuma import CommandError, exec_bound
    from gpunuma.core.cpuset import CpuSet
    from gpunuma.core.plan import BindingPlan
    from gpunuma.core.policy import MemoryPolicy

    before = (sorted(os.sched_getaffinity(0)), dict(os.environ))
    plan = BindingPlan(gpus=(), nodes=(0,), cpus=CpuSet.of([min(os.sched_getaffinity(0))]),
                       memory_policy=MemoryPolicy.NONE, memory_nodes=(), reasons=())
    try:
        exec_bound(plan, command, binder="syscall")
    except CommandError as err:
        return {"not_found": err.not_found, "unchanged": (sorted(os.sched_getaffinity(0)), dict(os.environ)) == before}
    return {"not_found": None, "unchanged": False}


@pytest.mark.parametrize(("command", "not_found"), [(["/nonexistent/prog"], True), ([], True), (["/"], False)],
                         ids=["missing", "no command", "directory"])
def test_exec_bound_of_a_command_that_cannot_run_raises_before_changing_the_caller(command, not_found):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        outcome = pool.submit(_exec_missing_in_child, command).result(timeout=120)

    assert outcome == {"not_found": not_found, "unchanged": True}


def test_check_process_takes_one_gpu_id_as_the_bind_functions_do(render):
    from gpunuma import check_process
    from gpunuma_fakes import machine
    from gpunuma_fakes.render import PID

    root = render(machine("dgx-h100"))
    one, listed = (check_process(PID, source="sysfs", root=root, physical=given) for given in (5, [5]))

    assert one.plan == listed.plan and one.gpus == (5,)


@pytest.mark.parametrize(
    ("call", "error"),
    [(lambda g: g.bind_to_gpu(5, policy="exclusive", env={}), "PolicyError"),
     (lambda g: g.bind_to_gpu(5, source=object(), env={}), "UnknownSourceError"),
     (lambda g: g.bind_to_node(0, binder=object(), env={}), "UnknownSourceError"),
     (lambda g: g.apply_plan({"cpus": "1"}, env={}), "PlanError")],
    ids=["policy as text", "source of no kind", "binder of no kind", "plan as a dict"],
)
def test_an_argument_of_the_wrong_kind_is_a_typed_error_naming_it_even_in_best_effort_mode(call, error):
    import gpunuma

    with pytest.raises(gpunuma.GpunumaError) as caught:
        call(gpunuma)
    assert type(caught.value).__name__ == error


# -- gpunuma's own binding across exec ----------------------------------------------------------------------
CHILD_BINDS = (
    "import gpunuma, json; r = gpunuma.bind_to_node(0, source='sysfs', binder='syscall', require_bound=True, env={});"
    "print(json.dumps([r.bound, list(r.reason_codes)]))"
)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a narrowed affinity needs two CPUs to differ")
def test_a_program_started_bound_by_gpunuma_knows_the_binding_is_gpunuma_s_own():
    first = min(os.sched_getaffinity(0))
    done = gpunuma(f"--cpus={first}", "--nodes=0", "--memory=preferred", "--memory-nodes=0", "--",
                   sys.executable, "-c", CHILD_BINDS, module="gpunuma.tools.launch")

    assert done.returncode == 0, done.stderr
    bound, codes = json.loads(done.stdout)
    assert bound and "affinity_narrowed" not in codes


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a narrowed affinity needs two CPUs to differ")
def test_a_narrowing_after_gpunuma_s_binding_is_still_someone_else_s():
    # The record says gpunuma set CPU `first`; the process runs on another CPU: someone narrowed it since.
    first, other = sorted(os.sched_getaffinity(0))[:2]
    own = f"cpus={first};before={first}-{other};mem=-;mem_before=-"
    done = subprocess.run(["taskset", "-c", str(other), sys.executable, "-c", CHILD_BINDS.replace("True", "False")],
                          capture_output=True, text=True, env=clean_env(GPUNUMA_OWN=own), timeout=120)

    bound, codes = json.loads(done.stdout)
    assert not bound and "affinity_narrowed" in codes


#: A parent that binds itself in-process to one CPU (as a bind_to_gpu would), then starts a worker for another
#: GPU with multiprocessing's "spawn" (a fresh interpreter, as vLLM, SGLang and torch.multiprocessing start
#: ranks): the worker's own bind must see the inherited affinity as gpunuma's and bind, not leave it alone.
SPAWNING_PARENT = """
import json, multiprocessing, os, sys
import gpunuma
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import MemoryPolicy


def worker(queue):
    r = gpunuma.bind_to_node(0, source="sysfs", binder="syscall", env={})
    queue.put([r.bound, list(r.reason_codes), sorted(os.sched_getaffinity(0))])


if __name__ == "__main__":
    cpu = int(sys.argv[1])
    plan = BindingPlan(gpus=(), nodes=(0,), cpus=CpuSet.of([cpu]), memory_policy=MemoryPolicy.NONE,
                       memory_nodes=(), reasons=())
    assert gpunuma.apply_plan(plan, binder="syscall", strict=True, env={}).bound
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=worker, args=(queue,))
    child.start()
    print(json.dumps(queue.get(timeout=60)))
    child.join()
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a narrowed affinity needs two CPUs to differ")
@pytest.mark.parametrize("launched", [False, True], ids=["bound in-process", "rebound in a launched program"])
def test_a_worker_spawned_by_a_bound_process_rebinds_for_its_own_gpu(tmp_path, launched):
    # Launched: `gpunuma.tools.launch --cpus=first` handed GPUNUMA_OWN for `first`; the program then rebinds to
    # `other` in-process, so the record it hands its workers must say `other`, not the launcher's `first`.
    first, other = sorted(os.sched_getaffinity(0))[:2]
    script = tmp_path / "parent.py"
    script.write_text(SPAWNING_PARENT)
    command = [sys.executable, str(script), str(other)]
    if launched:
        command = [sys.executable, "-m", "gpunuma.tools.launch", f"--cpus={first}", "--nodes=0", "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, env=clean_env(), timeout=120)

    assert done.returncode == 0, done.stderr
    bound, codes, affinity = json.loads(done.stdout)
    assert bound and "affinity_narrowed" not in codes
    assert affinity == sorted(os.sched_getaffinity(0))  # node 0: every CPU of this one-node host


#: A parent bound in-process (CPU `cpu`, memory preferred on node 0) that starts a child the way a user pins one
#: on purpose: numactl on the same CPU with another memory policy. The child inherits GPUNUMA_OWN.
PINNING_PARENT = """
import subprocess, sys
import gpunuma
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import MemoryPolicy

cpu = int(sys.argv[1])
plan = BindingPlan(gpus=(), nodes=(0,), cpus=CpuSet.of([cpu]), memory_policy=MemoryPolicy.PREFERRED,
                   memory_nodes=(0,), reasons=())
assert gpunuma.apply_plan(plan, binder="syscall", strict=True, env={}).bound
child = subprocess.run(["numactl", f"--physcpubind={cpu}", "--membind=0", sys.executable, "-c", sys.argv[2]],
                       capture_output=True, text=True)
sys.stdout.write(child.stdout)
sys.stderr.write(child.stderr)
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a narrowed affinity needs two CPUs to differ")
@pytest.mark.skipif(shutil.which("numactl") is None, reason="numactl is not installed")
def test_a_child_pinned_by_numactl_inside_a_bound_process_is_left_alone(tmp_path):
    # Same CPUs as gpunuma's record, another memory policy: the user's choice, not gpunuma's binding.
    script = tmp_path / "parent.py"
    script.write_text(PINNING_PARENT)
    child = CHILD_BINDS.replace("require_bound=True", "require_bound=False")
    done = subprocess.run([sys.executable, str(script), str(min(os.sched_getaffinity(0))), child],
                          capture_output=True, text=True, env=clean_env(), timeout=120)

    assert done.returncode == 0, done.stderr
    bound, codes = json.loads(done.stdout)
    assert not bound and "affinity_narrowed" in codes


@pytest.mark.parametrize("text", ["", "cpus=0", "cpus=;before=0;mem=-;mem_before=-",
                                  "cpus=0;before=0;mem=fast:0;mem_before=-", "cpus=0;before=0;mem=bind:x;mem_before=-",
                                  "x" * 5000])
def test_a_malformed_own_binding_record_is_ignored(text):
    from gpunuma.core.rebind import parse_record

    assert parse_record(text) is None


def test_the_own_binding_record_reads_back_as_written():
    from gpunuma.core.cpuset import CpuSet
    from gpunuma.core.kernel_policy import Mempolicy, Mode
    from gpunuma.core.rebind import OwnBinding, format_record, parse_record

    own = OwnBinding(CpuSet.parse_list("0-223"), None, CpuSet.parse_list("56-111,168-223"),
                     Mempolicy(Mode.PREFERRED_MANY, (1, 3)))
    assert parse_record(format_record(own)) == own


# -- a plan the machine cannot hold -------------------------------------------------------------------------
def _apply_offline_cpus(binder: str) -> dict[str, object]:
    from gpunuma import BindError
    from gpunuma.adapters.libnuma import LibnumaBinder
    from gpunuma.adapters.syscall import SyscallBinder
    from gpunuma.core.cpuset import CpuSet
    from gpunuma.core.plan import BindingPlan
    from gpunuma.core.policy import MemoryPolicy

    before = sorted(os.sched_getaffinity(0))
    plan = BindingPlan(gpus=(), nodes=(0,), cpus=CpuSet.parse_list(f"{before[0]},60000"),
                       memory_policy=MemoryPolicy.PREFERRED, memory_nodes=(0,), reasons=())
    try:
        (LibnumaBinder if binder == "libnuma" else SyscallBinder)().apply(plan)
    except BindError as err:
        return {"error": "60000" in str(err), "unchanged": sorted(os.sched_getaffinity(0)) == before}
    return {"error": False, "unchanged": sorted(os.sched_getaffinity(0)) == before}


@pytest.mark.parametrize("binder", ["syscall", "libnuma"])
def test_a_plan_naming_cpus_that_are_not_online_is_refused_before_anything_changes(binder):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(_apply_offline_cpus, binder).result(timeout=120) == {"error": True, "unchanged": True}


def test_a_report_whose_read_back_differs_is_false_and_fails_require(dgx_kernel_report):
    from dataclasses import replace

    from gpunuma import NotBoundError
    from gpunuma.compose import _kept
    from gpunuma.settings import Options

    differs = replace(dgx_kernel_report, mismatches=("thread 7 runs on 0-223, planned 56-111,168-223",))
    assert dgx_kernel_report and not differs
    with pytest.raises(NotBoundError, match="not bound as planned"):
        _kept(Options(require=True), differs)


@pytest.fixture
def dgx_kernel_report(tmp_path):
    from gpunuma import bind_to_gpu
    from gpunuma_fakes import machine

    dgx = machine("dgx-h100")
    return bind_to_gpu(5, source=dgx.source(tmp_path), binder=dgx.kernel(), env={})
