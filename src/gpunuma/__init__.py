"""gpunuma: put every GPU worker process on the NUMA node and CPUs local to its GPU.

Importing the package is cheap: every public name below loads its module on first use (PEP 562),
so Ray, pynvml and ctypes libraries load only when used. Type checkers see the real names through
the ``TYPE_CHECKING`` imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

#: The one statement of the version (pyproject.toml reads it: ``dynamic = ["version"]``).
__version__ = "0.1.0"

if TYPE_CHECKING:
    from gpunuma.api import apply_plan, bind_to_gpu, bind_to_node, last_report, plan_for
    from gpunuma.core.cpuset import CpuSet
    from gpunuma.core.model import CacheDomain, Cpu, Gpu, Nic, NumaNode, Topology
    from gpunuma.core.plan import Allowed, BindingPlan
    from gpunuma.core.planner import plan_binding
    from gpunuma.core.policy import CpuScope, Fallback, MemoryPolicy, Policy, Share
    from gpunuma.core.readback import Drift
    from gpunuma.core.reasons import Reason
    from gpunuma.core.report import BindingReport
    from gpunuma.errors import (
        BindError,
        BusIdError,
        CommandError,
        CpuSetParseError,
        FileWriteError,
        FleetError,
        GpunumaError,
        GpuResolutionError,
        HalfBoundError,
        InvalidNodeError,
        LibraryNotFoundError,
        MissingDependencyError,
        NotBoundError,
        NvmlError,
        PlanError,
        PolicyError,
        SettingsError,
        SnapshotError,
        SysfsFormatError,
        SysfsReadError,
        TopologyError,
        TopologyUnavailableError,
        UnknownSourceError,
    )
    from gpunuma.launch import bound_command, exec_argv, exec_bound, run_bound, start_bound_process
    from gpunuma.settings import Options, configure
    from gpunuma.tools.check import CheckResult, Verdict, check_process
    from gpunuma.tools.verify import verify

#: Public name -> module that defines it, imported on first access.
_EXPORTS = {
    # entry points
    "bind_to_gpu": "gpunuma.api",
    "bind_to_node": "gpunuma.api",
    "plan_for": "gpunuma.api",
    "apply_plan": "gpunuma.api",
    "last_report": "gpunuma.api",
    "check_process": "gpunuma.tools.check",
    "verify": "gpunuma.tools.verify",
    "CheckResult": "gpunuma.tools.check",
    "Verdict": "gpunuma.tools.check",
    "exec_bound": "gpunuma.launch",
    "start_bound_process": "gpunuma.launch",
    "run_bound": "gpunuma.launch",
    "bound_command": "gpunuma.launch",
    "exec_argv": "gpunuma.launch",
    # options
    "Options": "gpunuma.settings",
    "configure": "gpunuma.settings",
    "Policy": "gpunuma.core.policy",
    "CpuScope": "gpunuma.core.policy",
    "MemoryPolicy": "gpunuma.core.policy",
    "Fallback": "gpunuma.core.policy",
    "Share": "gpunuma.core.policy",
    # values
    "CpuSet": "gpunuma.core.cpuset",
    "Topology": "gpunuma.core.model",
    "NumaNode": "gpunuma.core.model",
    "Cpu": "gpunuma.core.model",
    "Gpu": "gpunuma.core.model",
    "Nic": "gpunuma.core.model",
    "CacheDomain": "gpunuma.core.model",
    "Allowed": "gpunuma.core.plan",
    "BindingPlan": "gpunuma.core.plan",
    "BindingReport": "gpunuma.core.report",
    "Reason": "gpunuma.core.reasons",
    "Drift": "gpunuma.core.readback",
    "plan_binding": "gpunuma.core.planner",
    # errors
    "GpunumaError": "gpunuma.errors",
    "CpuSetParseError": "gpunuma.errors",
    "BusIdError": "gpunuma.errors",
    "TopologyError": "gpunuma.errors",
    "SysfsFormatError": "gpunuma.errors",
    "SysfsReadError": "gpunuma.errors",
    "TopologyUnavailableError": "gpunuma.errors",
    "NvmlError": "gpunuma.errors",
    "UnknownSourceError": "gpunuma.errors",
    "GpuResolutionError": "gpunuma.errors",
    "PlanError": "gpunuma.errors",
    "PolicyError": "gpunuma.errors",
    "InvalidNodeError": "gpunuma.errors",
    "BindError": "gpunuma.errors",
    "HalfBoundError": "gpunuma.errors",
    "LibraryNotFoundError": "gpunuma.errors",
    "SettingsError": "gpunuma.errors",
    "SnapshotError": "gpunuma.errors",
    "FileWriteError": "gpunuma.errors",
    "NotBoundError": "gpunuma.errors",
    "CommandError": "gpunuma.errors",
    "MissingDependencyError": "gpunuma.errors",
    "FleetError": "gpunuma.errors",
}

#: The public names (the same as ``_EXPORTS``, which tests/test_imports.py checks), spelled out for linters.
__all__ = [
    "__version__",
    "bind_to_gpu", "bind_to_node", "plan_for", "apply_plan", "last_report", "check_process", "verify", "CheckResult",
    "Verdict",
    "exec_bound", "start_bound_process", "run_bound", "bound_command", "exec_argv",
    "Options", "configure", "Policy", "CpuScope", "MemoryPolicy", "Fallback", "Share",
    "CpuSet", "Topology", "NumaNode", "Cpu", "Gpu", "Nic", "CacheDomain", "Allowed", "BindingPlan", "BindingReport",
    "Reason", "Drift",
    "plan_binding",
    "GpunumaError", "CpuSetParseError", "BusIdError", "TopologyError", "SysfsFormatError", "SysfsReadError",
    "TopologyUnavailableError", "NvmlError", "UnknownSourceError", "GpuResolutionError", "PlanError", "PolicyError",
    "InvalidNodeError", "BindError", "HalfBoundError", "LibraryNotFoundError", "SettingsError", "SnapshotError",
    "NotBoundError", "CommandError", "FileWriteError", "MissingDependencyError", "FleetError",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gpunuma' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
