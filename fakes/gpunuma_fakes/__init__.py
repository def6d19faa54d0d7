"""Simulated multi-socket GPU machines for CPU-only CI (see fakes/README.md).

``render_sysfs(machine("dgx-h100"), tmp_path)`` writes a kernel-format sysfs/procfs tree that
``SysfsTopology(root=tmp_path)`` reads like a real one.
"""

from __future__ import annotations

from gpunuma.topology.static import StaticTopology

from gpunuma_fakes.catalogue import MACHINES, UnknownMachineError, machine, names
from gpunuma_fakes.render import render_sysfs
from gpunuma_fakes.spec import GpuSpec, Machine, NodeSpec


def static_topology(simulated: Machine) -> StaticTopology:
    """The in-memory topology source a machine's spec declares (what the sysfs adapter must read)."""
    return StaticTopology(simulated.topology(), simulated.allowed())


__all__ = [
    "MACHINES",
    "GpuSpec",
    "Machine",
    "NodeSpec",
    "UnknownMachineError",
    "machine",
    "names",
    "render_sysfs",
    "static_topology",
]
