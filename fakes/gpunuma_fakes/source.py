"""A catalogue machine as a topology source: what ``gpunuma ... --simulate NAME`` reads.

The machine's sysfs/procfs tree is rendered to a temporary directory and read once by the real
adapter the name chooses (``sysfs``; ``nvml`` or ``auto`` with :class:`FakeNvml`), so the
command runs the production parsing path; the directory is gone when the read returns.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from gpunuma.core.model import Topology
from gpunuma.core.plan import Allowed
from gpunuma.registry import topology_source_class
from gpunuma_fakes.catalogue import machine, names
from gpunuma_fakes.nvml import FakeNvml
from gpunuma_fakes.render import render_sysfs
from gpunuma_fakes.spec import Machine


class SimulatedTopology:
    """A :class:`~gpunuma.core.ports.TopologySource` for a simulated machine, read through source ``kind``."""

    def __init__(self, simulated: str | Machine, kind: str = "auto") -> None:
        self.machine = machine(simulated) if isinstance(simulated, str) else simulated
        self.kind = kind
        self.name = kind
        topology_source_class(kind)  # an unknown kind fails here, not on the first read
        self._read: tuple[Topology, Allowed] | None = None

    @staticmethod
    def catalogue() -> tuple[tuple[str, str], ...]:
        """(name, description) of every machine ``--simulate`` accepts, for ``gpunuma machines``."""
        return tuple((name, machine(name).description) for name in names())

    def _load(self) -> tuple[Topology, Allowed]:
        if self._read is None:
            with tempfile.TemporaryDirectory(prefix=f"gpunuma-{self.machine.name}-") as tmp:
                root = render_sysfs(self.machine, Path(tmp))
                sysfs = topology_source_class("sysfs")(root=root)
                source = sysfs if self.kind == "sysfs" else topology_source_class(self.kind)(
                    nvml=FakeNvml(self.machine), sysfs=sysfs
                )
                self._read = (source.read(), source.allowed())
        return self._read

    def read(self) -> Topology:
        """The machine's topology as the ``kind`` adapter reads its rendered tree."""
        return self._load()[0]

    def allowed(self) -> Allowed:
        """What the simulated process may use (its rendered cgroup and affinity)."""
        return self._load()[1]
