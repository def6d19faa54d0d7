"""Simulated multi-socket GPU machines for CPU-only CI (the ``gpunuma-fakes`` distribution; see fakes/README.md).

``machine("dgx-h100").source()`` reads the machine's kernel-format sysfs/procfs tree, held in memory, through
the real adapters; ``render_sysfs(machine("dgx-h100"), tmp_path)`` writes the same tree to a folder.

Names load on first access: a Ray worker that unpickles a ``FakeNvml`` or ``SimulatedKernel``
imports only the modules those need, not the whole catalogue.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from gpunuma.adapters.static import StaticTopology

if TYPE_CHECKING:
    from gpunuma_fakes.spec import Machine

#: Released with gpunuma, at its version (fakes/pyproject.toml pins it).
__version__ = "0.1.0"

#: Public name -> module that defines it, imported on first access.
_EXPORTS = {
    "MACHINES": "gpunuma_fakes.catalogue",
    "UnknownMachineError": "gpunuma_fakes.catalogue",
    "build": "gpunuma_fakes.builder",
    "gpu": "gpunuma_fakes.builder",
    "machine": "gpunuma_fakes.catalogue",
    "names": "gpunuma_fakes.catalogue",
    "render_sysfs": "gpunuma_fakes.render",
    "split_host": "gpunuma_fakes.host",
    "HostTooSmallError": "gpunuma_fakes.host",
    "GpuSpec": "gpunuma_fakes.spec",
    "Machine": "gpunuma_fakes.spec",
    "NodeSpec": "gpunuma_fakes.spec",
    "Snapshot": "gpunuma_fakes.snapshot",
    "load_snapshot": "gpunuma_fakes.snapshot",
}


def static_topology(simulated: Machine) -> StaticTopology:
    """The in-memory topology source a machine's spec declares (what the sysfs adapter must read)."""
    return StaticTopology(simulated.topology(), simulated.allowed())


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gpunuma_fakes' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "MACHINES",
    "GpuSpec",
    "HostTooSmallError",
    "Machine",
    "NodeSpec",
    "Snapshot",
    "UnknownMachineError",
    "build",
    "gpu",
    "load_snapshot",
    "machine",
    "names",
    "render_sysfs",
    "split_host",
    "static_topology",
]
