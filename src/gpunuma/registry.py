"""The one table of adapter names: name -> class, imported on first use so ``import gpunuma`` loads no backend.

The CLI's ``--source`` choices, the ``GPUNUMA_SOURCE`` check in :mod:`gpunuma.settings` and
:mod:`gpunuma.compose` all read these tables.
"""

from __future__ import annotations

import importlib
from typing import Any

from gpunuma.errors import UnknownSourceError

#: Topology sources by name: (module, class). ``simulated`` reads a simulated machine or a captured host's
#: snapshot (:class:`gpunuma.settings.Simulated`: ``GPUNUMA_SIMULATE``, ``--simulate``) through one of the
#: others; it lives in the ``gpunuma-fakes`` distribution, imported only when a simulated machine is asked for.
TOPOLOGY_SOURCES: dict[str, tuple[str, str]] = {
    "auto": ("gpunuma.adapters.auto", "AutoTopology"),
    "nvml": ("gpunuma.adapters.nvml", "NvmlTopology"),
    "sysfs": ("gpunuma.adapters.sysfs", "SysfsTopology"),
    "simulated": ("gpunuma_fakes.source", "SimulatedTopology"),
}

#: Binders by name: (module, class).
BINDERS: dict[str, tuple[str, str]] = {
    "libnuma": ("gpunuma.adapters.libnuma", "LibnumaBinder"),
    "syscall": ("gpunuma.adapters.syscall", "SyscallBinder"),
    "noop": ("gpunuma.adapters.noop", "NoopBinder"),
}

#: The sources that read a machine's own files, which a user names (``--source``, ``GPUNUMA_SOURCE``), in the
#: order help texts and error messages list them.
SOURCE_NAMES: tuple[str, ...] = ("auto", "nvml", "sysfs")
BINDER_NAMES: tuple[str, ...] = tuple(BINDERS)

#: How to install what a registered adapter lives in, when it is not part of gpunuma itself.
_INSTALL = {"gpunuma_fakes": "pip install gpunuma-fakes; in the source tree: pip install -e ./fakes"}


def _load(table: dict[str, tuple[str, str]], kind: str, name: str) -> type[Any]:
    try:
        module, attr = table[name]
    except KeyError:
        raise UnknownSourceError(f"unknown {kind} {name!r}; known: {', '.join(table)}") from None
    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as err:
        if err.name != module.split(".")[0]:
            raise
        hint = _INSTALL.get(err.name, f"pip install {err.name}")
        raise UnknownSourceError(f"the {name} {kind} needs {err.name}, which is not installed: {hint}") from err


def topology_source_class(name: str) -> type[Any]:
    """The topology source class registered as ``name`` (``auto``, ``nvml``, ``sysfs``, ``simulated``)."""
    return _load(TOPOLOGY_SOURCES, "topology source", name)


def binder_class(name: str) -> type[Any]:
    """The binder class registered as ``name`` (``libnuma``, ``syscall``, ``noop``)."""
    return _load(BINDERS, "binder", name)
