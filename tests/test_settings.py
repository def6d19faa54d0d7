"""GPUNUMA_* switches: read in one place, with documented defaults and clear errors."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpunuma.core.policy import CpuScope, MemoryPolicy, Policy
from gpunuma.settings import Settings, SettingsError


def test_defaults_are_node_scope_preferred_memory_best_effort_enabled():
    settings = Settings.from_env({})
    assert settings == Settings(enabled=True, strict=False, source="auto", policy=Policy())
    assert settings.policy.cpu_scope is CpuScope.NODE and settings.policy.memory is MemoryPolicy.PREFERRED


@pytest.mark.parametrize("value", ["0", "false", "OFF", "no"])
def test_bind_can_be_switched_off(value):
    assert Settings.from_env({"GPUNUMA_BIND": value}).enabled is False


def test_every_switch_is_read():
    settings = Settings.from_env({
        "GPUNUMA_BIND": "1", "GPUNUMA_STRICT": "yes", "GPUNUMA_CPU_SCOPE": "Exclusive",
        "GPUNUMA_MEMORY": "bind", "GPUNUMA_SOURCE": "sysfs", "GPUNUMA_OVERRIDE": "true", "GPUNUMA_SPREAD": "1",
    })
    assert settings.strict and settings.source == "sysfs"
    assert settings.policy == Policy(cpu_scope="exclusive", memory="bind", override_affinity=True, spread_unknown=True)


BAD = [
    ("GPUNUMA_BIND", "maybe"), ("GPUNUMA_CPU_SCOPE", "core"), ("GPUNUMA_MEMORY", "interleave"),
    ("GPUNUMA_SOURCE", "dcgm"), ("GPUNUMA_OVERRIDE", "\u0661"), ("GPUNUMA_SPREAD", "9" * 10_000),
    ("GPUNUMA_STRICT", "sure"), ("GPUNUMA_REQUIRE", "\x00"),
]


@pytest.mark.parametrize(("name", "value"), BAD)
def test_an_unknown_value_in_strict_mode_raises_naming_the_variable(name, value):
    with pytest.raises(SettingsError, match=name) as caught:
        Settings.from_env({name: value}, strict=True)
    assert len(str(caught.value)) < 200  # a huge value is cut short in the message
    if name != "GPUNUMA_STRICT":
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value, "GPUNUMA_STRICT": "1"})


@pytest.mark.parametrize(("name", "value"), BAD)
def test_an_unknown_value_in_best_effort_mode_warns_and_keeps_the_default(name, value, caplog):
    with caplog.at_level("WARNING", logger="gpunuma"):
        settings = Settings.from_env({name: value})

    assert replace(settings, problems=()) == Settings()
    assert [(problem.code, problem.values["variable"]) for problem in settings.problems] == [
        ("setting_not_understood", name)]
    assert [r.levelname for r in caplog.records] == ["WARNING"] and name in caplog.records[0].getMessage()


def test_a_variable_an_argument_replaces_is_not_read_at_all(caplog):
    env = {"GPUNUMA_MEMORY": "banana", "GPUNUMA_STRICT": "1"}

    with caplog.at_level("WARNING", logger="gpunuma"):
        settings = Settings.from_env(env, ignore={"GPUNUMA_MEMORY"})

    assert settings.strict and settings.policy.memory is MemoryPolicy.PREFERRED and caplog.records == []
