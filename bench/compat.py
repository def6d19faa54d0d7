"""The library names the rows use, found in either layout: this tree's and the pre-refactor one (7351f00).

``run.py --compare OLD_TREE`` runs the same rows against an older checkout; its modules had other homes.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Name -> the modules that may define it, the current layout first.
_HOMES: dict[str, tuple[str, ...]] = {
    "SysfsTopology": ("gpunuma.adapters.sysfs", "gpunuma.topology.sysfs"),
    "NvmlTopology": ("gpunuma.adapters.nvml", "gpunuma.topology.nvml"),
    "AutoTopology": ("gpunuma.adapters.auto", "gpunuma.topology.auto"),
    "plan_binding": ("gpunuma.core.planner", "gpunuma.planner"),
    "CpuSet": ("gpunuma.core.cpuset", "gpunuma.cpuset"),
    "LibnumaBinder": ("gpunuma.adapters.libnuma", "gpunuma.binder.libnuma"),
    "SyscallBinder": ("gpunuma.adapters.syscall", "gpunuma.binder.syscall"),
    "GpuBoundActor": ("gpunuma.integrations.ray",),
}


def load(name: str) -> Any:
    """The object ``name`` from whichever of its homes this tree has."""
    for module in _HOMES[name]:
        try:
            return getattr(importlib.import_module(module), name)
        except ModuleNotFoundError as err:
            if err.name is None or not module.startswith(err.name):
                raise  # a module that exists failed to import something else
    raise ImportError(f"no home of {name} in this tree: {', '.join(_HOMES[name])}")
