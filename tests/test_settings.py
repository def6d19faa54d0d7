"""GPUNUMA_* switches: decided in one place, with one precedence rule, documented defaults and clear errors."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpunuma.core.policy import CpuScope, MemoryPolicy, Policy, Share
from gpunuma.settings import Options, SettingsError, Simulated, configure


def test_defaults_are_node_scope_preferred_memory_best_effort_enabled():
    options = configure({})
    assert options == Options(enabled=True, strict=False, source="auto", policy=Policy())
    assert options.policy.cpu_scope is CpuScope.NODE and options.policy.memory is MemoryPolicy.PREFERRED


@pytest.mark.parametrize("value", ["0", "false", "OFF", "no"])
def test_bind_can_be_switched_off(value):
    assert configure({"GPUNUMA_BIND": value}).enabled is False


def test_every_switch_is_read():
    options = configure({
        "GPUNUMA_BIND": "1", "GPUNUMA_STRICT": "yes", "GPUNUMA_CPU_SCOPE": "Exclusive",
        "GPUNUMA_MEMORY": "bind", "GPUNUMA_SOURCE": "sysfs", "GPUNUMA_OVERRIDE": "true", "GPUNUMA_SPREAD": "1",
        "GPUNUMA_REQUIRE": "on", "GPUNUMA_SHARE": "1/4", "GPUNUMA_RESERVE": "2", "GPUNUMA_SIMULATE": " dgx-h100 ",
    })
    assert options.strict and options.require and options.source == "sysfs"
    assert options.machine == Simulated("dgx-h100")
    assert options.policy == Policy(cpu_scope="exclusive", memory="bind", override_affinity=True, spread_unknown=True,
                                    share=Share(1, 4), reserve=2)


BAD = [
    ("GPUNUMA_BIND", "maybe"), ("GPUNUMA_CPU_SCOPE", "core"), ("GPUNUMA_MEMORY", "interleave"),
    ("GPUNUMA_SOURCE", "dcgm"), ("GPUNUMA_OVERRIDE", "\u0661"), ("GPUNUMA_SPREAD", "9" * 10_000),
    ("GPUNUMA_STRICT", "sure"), ("GPUNUMA_REQUIRE", "\x00"),
]


@pytest.mark.parametrize(("name", "value"), BAD)
def test_an_unknown_value_in_strict_mode_raises_naming_the_variable(name, value):
    if name == "GPUNUMA_STRICT":  # an explicit strict replaces the variable: it is not read at all
        assert configure({name: value}, strict=True).problems == ()
        return
    with pytest.raises(SettingsError, match=name) as caught:
        configure({name: value}, strict=True)
    assert len(str(caught.value)) < 200  # a huge value is cut short in the message
    with pytest.raises(SettingsError, match=name):
        configure({name: value, "GPUNUMA_STRICT": "1"})


@pytest.mark.parametrize(("name", "value"), BAD)
def test_an_unknown_value_in_best_effort_mode_warns_and_keeps_the_default(name, value, caplog):
    with caplog.at_level("WARNING", logger="gpunuma"):
        options = configure({name: value})

    assert replace(options, problems=()) == Options()
    assert [(problem.code, problem.values["variable"]) for problem in options.problems] == [
        ("setting_not_understood", name)]
    assert [r.levelname for r in caplog.records] == ["WARNING"] and name in caplog.records[0].getMessage()


def test_a_variable_a_flag_or_an_argument_replaces_is_not_read_at_all(caplog):
    env = {"GPUNUMA_MEMORY": "banana", "GPUNUMA_SOURCE": "dcgm", "GPUNUMA_STRICT": "1"}

    with caplog.at_level("WARNING", logger="gpunuma"):
        options = configure(env, flags={"memory": "bind"}, source="sysfs")

    assert options.strict and options.policy.memory is MemoryPolicy.BIND and options.source == "sysfs"
    assert options.problems == () and caplog.records == []


def test_an_argument_wins_over_a_flag_which_wins_over_its_variable():
    env = {"GPUNUMA_SHARE": "0/2", "GPUNUMA_SOURCE": "nvml", "GPUNUMA_RESERVE": "1"}
    flags = {"share": "1/2", "source": "sysfs"}

    options = configure(env, flags=flags, share=Share(2, 4))

    assert options.policy.share == Share(2, 4)  # argument
    assert options.source == "sysfs"  # flag
    assert options.policy.reserve == 1  # variable
    assert options.policy.cpu_scope is CpuScope.NODE  # default


def test_a_policy_argument_gives_every_policy_switch():
    env = {"GPUNUMA_CPU_SCOPE": "socket", "GPUNUMA_RESERVE": "two", "GPUNUMA_STRICT": "1"}
    assert configure(env, policy=Policy(memory="none")).policy == Policy(memory="none")


def test_a_bad_flag_is_an_error_even_in_best_effort_mode():
    with pytest.raises(SettingsError, match="argument --share: share 4/4"):
        configure({}, flags={"share": "4/4"})


def test_a_command_that_binds_nothing_reads_no_switch_of_binding(caplog):
    env = {"GPUNUMA_BIND": "0", "GPUNUMA_MEMORY": "banana", "GPUNUMA_SOURCE": "sysfs", "GPUNUMA_STRICT": "1"}

    options = configure(env, binding=False)

    assert options.enabled and options.policy == Policy() and options.problems == ()
    assert options.source == "sysfs" and options.strict  # read: a topology or a check uses them
