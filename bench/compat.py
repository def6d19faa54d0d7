"""The library names the rows use, found in either layout: this tree's and the pre-refactor one (7351f00).

``run.py --compare OLD_TREE`` runs the same rows against an older checkout; its modules had other homes.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
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
    """The object ``name`` from whichever of its homes this tree has.

    Only modules of the tree ``gpunuma`` itself was imported from count: an editable install of another
    checkout in the bench's interpreter would otherwise answer for a module this tree lacks.
    """
    import gpunuma

    tree = os.path.dirname(os.path.abspath(gpunuma.__file__)) + os.sep
    for module in _HOMES[name]:
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            continue  # its package is not in this tree either
        if spec is not None and os.path.abspath(spec.origin or "").startswith(tree):
            return getattr(importlib.import_module(module), name)
    raise ImportError(f"no home of {name} in the tree at {tree}: {', '.join(_HOMES[name])}")
