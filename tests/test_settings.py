"""GPUNUMA_* switches: read in one place, with documented defaults and clear errors."""

from __future__ import annotations

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


@pytest.mark.parametrize(("name", "value"), [
    ("GPUNUMA_BIND", "maybe"), ("GPUNUMA_CPU_SCOPE", "core"), ("GPUNUMA_MEMORY", "interleave"),
    ("GPUNUMA_SOURCE", "dcgm"),
])
def test_unknown_values_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
