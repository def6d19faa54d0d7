"""gpunuma: put every GPU worker process on the NUMA node and CPUs local to its GPU.

Importing the package is cheap: Ray, pynvml and ctypes libraries load only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> module that defines it, imported on first access.
_EXPORTS = {
    "CpuSet": "gpunuma.core.cpuset",
    "Topology": "gpunuma.core.model",
    "NumaNode": "gpunuma.core.model",
    "Cpu": "gpunuma.core.model",
    "Gpu": "gpunuma.core.model",
    "Policy": "gpunuma.core.policy",
    "CpuScope": "gpunuma.core.policy",
    "MemoryPolicy": "gpunuma.core.policy",
    "Fallback": "gpunuma.core.policy",
    "Allowed": "gpunuma.core.plan",
    "BindingPlan": "gpunuma.core.plan",
    "BindingReport": "gpunuma.core.report",
    "plan_binding": "gpunuma.core.planner",
    "GpunumaError": "gpunuma.errors",
    "bind_to_gpu": "gpunuma.api",
    "bind_to_node": "gpunuma.api",
    "plan_for": "gpunuma.api",
    "Settings": "gpunuma.settings",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gpunuma' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
