"""Misuse of the public API is the library's typed error naming the argument, raised whatever the mode;
what the machine or its environment does stays best-effort."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

import gpunuma
from gpunuma import (
    CommandError,
    GpuResolutionError,
    InvalidNodeError,
    PlanError,
    Policy,
    PolicyError,
    SettingsError,
    Share,
    TopologyUnavailableError,
    UnknownSourceError,
)
from gpunuma.adapters.static import StaticTopology
from gpunuma.core.policy import MAX_PARTS
from gpunuma.core.reasons import codes
from gpunuma_fakes import machine

DGX = machine("dgx-h100")


@pytest.fixture
def on_dgx():
    """A simulated DGX H100 and its kernel: nothing on this machine changes."""
    return {"source": StaticTopology(DGX.topology(), DGX.allowed()), "binder": DGX.kernel()}


POLICY_MISUSE = [
    ({"cpu_scope": "sockets"}, "cpu_scope"),
    ({"cpu_scope": 3}, "cpu_scope"),
    ({"cpu_scope": ["node"]}, "cpu_scope"),
    ({"memory": None}, "memory"),
    ({"memory": "fast"}, "memory"),
    ({"on_disallowed": "nearer"}, "on_disallowed"),
    ({"override_affinity": "yes"}, "override_affinity"),
    ({"spread_unknown": 1}, "spread_unknown"),
    ({"share": 5}, "share"),
    ({"share": (1,)}, "share"),
    ({"share": (1, 2, 3)}, "share"),
    ({"share": ("1", "4")}, "share"),
    ({"share": (0, 10**12)}, "share"),
    ({"share": "1/" + "4" * 30}, "share"),
    ({"share": object()}, "share"),
    ({"reserve": -1}, "reserve"),
    ({"reserve": 2.0}, "reserve"),
    ({"reserve": True}, "reserve"),
    ({"reserve": 10**20}, "reserve"),
]


@pytest.mark.parametrize(("fields", "name"), POLICY_MISUSE, ids=lambda value: repr(value)[:40])
def test_a_policy_field_of_the_wrong_kind_or_size_is_a_policy_error_naming_it(fields, name):
    with pytest.raises(PolicyError, match=f"^{name}|^share "):
        Policy(**fields)


def test_policy_takes_members_their_values_and_every_share_form():
    policy = Policy(cpu_scope="exclusive", memory="bind", on_disallowed="none", share="1/4", reserve=MAX_PARTS)

    assert (policy.cpu_scope.value, policy.memory.value, policy.on_disallowed.value) == ("exclusive", "bind", "none")
    assert policy.share == Policy(share=(1, 4)).share == Policy(share=[1, 4]).share == Share(1, 4)
    with pytest.raises(PolicyError, match="expected text"):
        Share.parse(14)  # type: ignore[arg-type]


#: (the call's arguments beyond the machine, the error, what its message starts with)
BIND_MISUSE = [
    ({"gpu": 1.5}, GpuResolutionError, "gpus="),
    ({"gpu": [0, None]}, GpuResolutionError, "gpus="),
    ({"gpu": b"5"}, GpuResolutionError, "gpus="),
    ({"gpu": True}, GpuResolutionError, "gpus="),
    ({"gpu": {0: 1}}, GpuResolutionError, "gpus="),
    ({"gpu": range(10**12)}, GpuResolutionError, "gpus="),
    ({"gpu": itertools.count()}, GpuResolutionError, "gpus="),
    ({"physical": 1.0}, GpuResolutionError, "physical="),
    ({"physical": range(10**12)}, GpuResolutionError, "physical="),
    ({"env": {"LOCAL_RANK": 3}}, SettingsError, "env["),
    ({"env": {"GPUNUMA_STRICT": None}}, SettingsError, "env["),
    ({"env": {b"CUDA_VISIBLE_DEVICES": "0"}}, SettingsError, "env["),
    ({"env": [("LOCAL_RANK", "0")]}, SettingsError, "env="),
    ({"env": 5}, SettingsError, "env="),
    ({"strict": "yes"}, SettingsError, "strict="),
    ({"require_bound": 1}, SettingsError, "require_bound="),
    ({"label": 5}, SettingsError, "label="),
    ({"ray": 5}, GpuResolutionError, "ray="),
    ({"ray": SimpleNamespace(get_gpu_ids=lambda: range(10**12))}, GpuResolutionError, "ray="),
    ({"policy": "node"}, PolicyError, "policy="),
    ({"source": 5}, UnknownSourceError, "source="),
]


@pytest.mark.parametrize(("given", "error", "named"), BIND_MISUSE, ids=lambda value: repr(value)[:40])
def test_bind_to_gpu_misuse_raises_the_typed_error_even_in_best_effort_mode(on_dgx, given, error, named):
    arguments = {"env": {}, **on_dgx, **given}
    if "source" in given:
        del arguments["binder"]

    with pytest.raises(error) as caught:
        gpunuma.bind_to_gpu(**{"gpu": 0, **arguments} if not {"physical", "ray"} & set(given) else arguments)

    assert str(caught.value).startswith(named) and len(str(caught.value)) < 300


@pytest.mark.parametrize(("given", "error", "named"),
                         [m for m in BIND_MISUSE if not {"strict", "require_bound", "label"} & set(m[0])],
                         ids=lambda value: repr(value)[:40])
def test_plan_for_misuse_raises_the_same_typed_error(on_dgx, given, error, named):
    arguments = {"env": {}, "source": on_dgx["source"], **given}

    with pytest.raises(error, match=f"^{named.replace('[', '.')}"):
        gpunuma.plan_for(**{"gpu": 0, **arguments} if not {"physical", "ray"} & set(given) else arguments)


@pytest.mark.parametrize("node", ["1", 1.0, None, True, b"0"])
def test_a_node_of_the_wrong_type_raises_even_in_best_effort_mode(on_dgx, node):
    with pytest.raises(InvalidNodeError, match="a node id is an int"):
        gpunuma.bind_to_node(node, env={}, **on_dgx)


@pytest.mark.parametrize(
    ("arguments", "error", "named"),
    [({"pid": "../1"}, TopologyUnavailableError, "pid="), ({"pid": 0}, TopologyUnavailableError, "pid="),
     ({"pid": 1.5}, TopologyUnavailableError, "pid="), ({"pid": True}, TopologyUnavailableError, "pid="),
     ({"gpus": range(10**12)}, GpuResolutionError, "gpus="), ({"physical": [None]}, GpuResolutionError, "physical="),
     ({"share": 5}, PolicyError, "share="), ({"reserve": "2"}, PolicyError, "reserve="),
     ({"root": 5}, SettingsError, "root="), ({"node": "0"}, InvalidNodeError, "NUMA node"),
     ({"policy": "node"}, PolicyError, "policy=")],
    ids=lambda value: repr(value)[:40],
)
def test_check_process_misuse_raises_before_any_file_is_read(arguments, error, named):
    with pytest.raises(error) as caught:
        gpunuma.check_process(**arguments)

    assert str(caught.value).startswith(named)


def test_machine_and_environment_problems_stay_best_effort(on_dgx):
    """The other side of the line: the right types naming what this machine lacks give "not bound", with why."""
    gpu = gpunuma.bind_to_gpu(9, env={}, **on_dgx)
    node = gpunuma.bind_to_node(7, env={}, **on_dgx)
    setting = gpunuma.bind_to_gpu(0, env={"GPUNUMA_MEMORY": "fast"}, **on_dgx)

    assert not gpu.bound and codes(gpu.reasons) == ("plan_failed",)
    assert not node.bound and codes(node.reasons) == ("plan_failed",)
    assert setting.bound and setting.plan.memory_policy.value == "preferred"


@pytest.mark.parametrize(
    ("call", "error", "named"),
    [(lambda plan: gpunuma.exec_argv(plan, "python app.py"), CommandError, "cannot run 'python app.py'"),
     (lambda plan: gpunuma.exec_argv(plan, ["python", 3]), CommandError, "cannot run \"['python', 3]\""),
     (lambda plan: gpunuma.exec_argv(plan, range(10**12)), CommandError, "cannot run 'range("),
     (lambda plan: gpunuma.bound_command(plan, []), CommandError, "cannot run '[]'"),
     (lambda plan: gpunuma.bound_command(5, ["true"]), PlanError, "plan="),
     (lambda plan: gpunuma.run_bound(None, ["true"]), PlanError, "plan="),
     (lambda plan: gpunuma.exec_bound(plan, "true"), CommandError, "cannot run 'true'"),
     (lambda plan: gpunuma.start_bound_process(plan, 5), CommandError, "cannot run '5'"),
     (lambda plan: gpunuma.start_bound_process("plan", print), PlanError, "plan="),
     (lambda plan: gpunuma.apply_plan({"cpus": "0-3"}), PlanError, "plan=")],
    ids=["exec_argv str", "exec_argv int word", "exec_argv range", "empty", "bound_command plan", "run_bound plan",
         "exec_bound str", "target", "start plan", "apply_plan dict"],
)
def test_the_launch_helpers_refuse_misuse_before_anything_starts_or_changes(on_dgx, call, error, named):
    plan = gpunuma.plan_for(0, source=on_dgx["source"], env={})

    with pytest.raises(error) as caught:
        call(plan)

    assert str(caught.value).startswith(named) and len(str(caught.value)) < 300
