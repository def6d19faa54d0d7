"""Name -> adapter class, imported lazily so that ``import gpunuma`` loads no backend."""

from __future__ import annotations

import importlib
from typing import Any

from gpunuma.errors import UnknownSourceError

#: Topology sources by name: (module, class).
TOPOLOGY_SOURCES: dict[str, tuple[str, str]] = {
    "sysfs": ("gpunuma.adapters.sysfs", "SysfsTopology"),
    "nvml": ("gpunuma.adapters.nvml", "NvmlTopology"),
    "auto": ("gpunuma.adapters.auto", "AutoTopology"),
}

#: Binders by name: (module, class).
BINDERS: dict[str, tuple[str, str]] = {
    "libnuma": ("gpunuma.adapters.libnuma", "LibnumaBinder"),
    "syscall": ("gpunuma.adapters.syscall", "SyscallBinder"),
    "noop": ("gpunuma.adapters.noop", "NoopBinder"),
}


def _load(table: dict[str, tuple[str, str]], kind: str, name: str) -> type[Any]:
    try:
        module, attr = table[name]
    except KeyError:
        known = ", ".join(sorted(table))
        raise UnknownSourceError(f"unknown {kind} {name!r}; known: {known}") from None
    return getattr(importlib.import_module(module), attr)


def topology_source_class(name: str) -> type[Any]:
    """The topology source class registered as ``name`` (``sysfs``, ``nvml``, ``auto``)."""
    return _load(TOPOLOGY_SOURCES, "topology source", name)


def binder_class(name: str) -> type[Any]:
    """The binder class registered as ``name`` (``libnuma``, ``syscall``, ``noop``)."""
    return _load(BINDERS, "binder", name)
