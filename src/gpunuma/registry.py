"""The one table of adapter names: name -> class, imported lazily so ``import gpunuma`` loads no backend.

The CLI's ``--source`` choices, the ``GPUNUMA_SOURCE`` check in :mod:`gpunuma.settings` and
:mod:`gpunuma.compose` all read these tables.
"""

from __future__ import annotations

import importlib
from typing import Any

from gpunuma.errors import UnknownSourceError

#: Topology sources a user chooses by name (``--source``, ``GPUNUMA_SOURCE``): (module, class).
TOPOLOGY_SOURCES: dict[str, tuple[str, str]] = {
    "auto": ("gpunuma.adapters.auto", "AutoTopology"),
    "nvml": ("gpunuma.adapters.nvml", "NvmlTopology"),
    "sysfs": ("gpunuma.adapters.sysfs", "SysfsTopology"),
}

#: Binders by name: (module, class).
BINDERS: dict[str, tuple[str, str]] = {
    "libnuma": ("gpunuma.adapters.libnuma", "LibnumaBinder"),
    "syscall": ("gpunuma.adapters.syscall", "SyscallBinder"),
    "noop": ("gpunuma.adapters.noop", "NoopBinder"),
}

#: The names, in the order help texts and error messages list them.
SOURCE_NAMES: tuple[str, ...] = tuple(TOPOLOGY_SOURCES)
BINDER_NAMES: tuple[str, ...] = tuple(BINDERS)

#: A catalogue machine read through a named source (``--simulate NAME``). It lives in the
#: ``gpunuma_fakes`` test package, imported only when a simulated machine is asked for.
SIMULATED_SOURCE = ("gpunuma_fakes.source", "SimulatedTopology")


def _load(table: dict[str, tuple[str, str]], kind: str, name: str) -> type[Any]:
    try:
        module, attr = table[name]
    except KeyError:
        raise UnknownSourceError(f"unknown {kind} {name!r}; known: {', '.join(table)}") from None
    return getattr(importlib.import_module(module), attr)


def topology_source_class(name: str) -> type[Any]:
    """The topology source class registered as ``name`` (``auto``, ``nvml``, ``sysfs``)."""
    return _load(TOPOLOGY_SOURCES, "topology source", name)


def binder_class(name: str) -> type[Any]:
    """The binder class registered as ``name`` (``libnuma``, ``syscall``, ``noop``)."""
    return _load(BINDERS, "binder", name)


def simulated_source_class() -> type[Any]:
    """The simulated-machine source (the ``gpunuma-fakes`` distribution, ``fakes/`` here, must be installed)."""
    module, attr = SIMULATED_SOURCE
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as err:
        raise UnknownSourceError(
            "simulated machines need the gpunuma-fakes package "
            "(pip install gpunuma-fakes; in the source tree: pip install -e ./fakes)"
        ) from err
