"""Reasons as data: every reason gpunuma gives has a code and values, and its text comes from one table."""

from __future__ import annotations

import json
import pickle
import string

import pytest

from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.api import plan_for
from gpunuma.core.policy import CpuScope, MemoryPolicy, Policy
from gpunuma.core.reasons import TEMPLATES, Reason, codes
from gpunuma_fakes import names


def _fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


@pytest.mark.parametrize("code", sorted(TEMPLATES))
def test_every_code_renders_from_its_template_with_its_own_fields(code):
    values = {field: f"<{field}>" for field in _fields(TEMPLATES[code])}
    reason = Reason.of(code, **values)
    assert (reason.code, reason.values) == (code, values)
    assert "{" not in reason and all(value in reason for value in values.values() if "!r" not in TEMPLATES[code])


def test_an_empty_value_reads_none_in_the_text_and_stays_empty_in_the_data():
    for code, template in TEMPLATES.items():
        values = {field: "" for field in _fields(template)}
        reason = Reason.of(code, **values)
        assert reason == template.format(**dict.fromkeys(values, "none")) and reason.values == values, code
    assert "GPUs none" in Reason.of("no_gpu_placeable", gpus=[])


def test_an_unknown_code_or_a_missing_value_is_an_error_not_a_silent_text():
    with pytest.raises(KeyError):
        Reason.of("no_such_code")
    with pytest.raises(KeyError):
        Reason.of("gpu_on_node", gpu="GPU 0")  # node missing


def test_a_reason_is_its_text_and_survives_pickling_and_json():
    reason = Reason.of("gpu_memory_node_nearest", gpu="GPU 0 (0000:01:00.0)", memory_node=1, node=0,
                       distance=Reason.of("distance", distance=80))
    assert reason == ("GPU 0 (0000:01:00.0) reports numa_node -1; its GPU memory is node 1 "
                      "(nvmlDeviceGetNumaNodeId); using node 0, the nearest node with CPUs (distance 80)")
    copy = pickle.loads(pickle.dumps(reason))  # reports travel to Ray actors and back by pickling
    assert (copy, copy.code, copy.values) == (reason, reason.code, reason.values)
    assert json.loads(json.dumps(reason.to_dict()))["values"]["distance"] == {
        "code": "distance", "values": {"distance": 80}}


def test_plain_text_from_outside_gpunuma_reads_as_an_uncoded_note():
    # An injected StaticTopology's notes, or a caller's own text: gpunuma's adapters give coded reasons.
    assert codes(("libnuma not used (missing); bound through raw syscalls",)) == ("note",)


def test_plan_json_carries_each_reason_as_text_and_as_data(rendered):
    plan = plan_for(5, source=SysfsTopology(root=rendered("dgx-h100")), env={})
    shape = plan.to_dict()
    assert shape["reasons"] == list(plan.reasons)
    assert [detail["code"] for detail in shape["reason_details"]] == list(plan.reason_codes)
    assert plan.reason_codes == ("gpu_local_ordinal", "gpu_on_node", "threads_shared", "memory_on_nodes")


POLICIES = [Policy(), Policy(cpu_scope=CpuScope.SOCKET, memory=MemoryPolicy.BIND),
            Policy(cpu_scope=CpuScope.EXCLUSIVE, memory=MemoryPolicy.NONE, spread_unknown=True)]


@pytest.mark.parametrize("name", names())
def test_every_reason_on_every_simulated_machine_has_a_code(rendered, name):
    source = SysfsTopology(root=rendered(name))
    gpus = [gpu.index for gpu in source.read().gpus]
    plans = [plan_for(source=source, policy=policy, env={}) for policy in POLICIES]
    plans += [plan_for(gpu, source=source, policy=policy, env={}) for gpu in gpus for policy in POLICIES]
    plans += [plan_for(gpus[:2], source=source, env={}), plan_for(node=0, source=source, env={})] if gpus else []
    uncoded = {reason for plan in plans for reason in plan.reasons if Reason.coerce(reason).code == "note"}
    assert uncoded == set()
    assert all(code in TEMPLATES for plan in plans for code in plan.reason_codes)
