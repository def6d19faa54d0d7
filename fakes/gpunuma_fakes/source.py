"""A simulated machine as a topology source: what ``gpunuma ... --simulate NAME|PATH`` reads.

``NAME`` is a catalogue machine: its sysfs/procfs tree is built in memory, once per process.
``PATH`` is a captured host (a ``gpunuma snapshot`` or ``hwloc-gather-topology`` archive, or its
unpacked folder): its tree is read into memory (nothing unpacked) and its recorded NVML answers replayed.
Either is read once by the real adapter the kind chooses (``sysfs``; ``nvml`` or ``auto`` with a fake
NVML), so the command runs the production parsing path without a file written.

A named machine has one simulated kernel per process (:meth:`SimulatedTopology.kernel`): every binding
under ``GPUNUMA_SIMULATE`` goes through it and every check of this process reads it back, as one Linux
kernel serves both on a real host.
"""

from __future__ import annotations

import functools
import os

from gpunuma.core.model import Topology
from gpunuma.core.plan import Allowed
from gpunuma.core.report import KernelView
from gpunuma.registry import topology_source_class
from gpunuma_fakes.catalogue import machine, names
from gpunuma_fakes.kernel import SimulatedKernel
from gpunuma_fakes.nvml import FakeNvml
from gpunuma_fakes.render import machine_tree, write_tree
from gpunuma_fakes.snapshot import ARCHIVE_SUFFIXES, load_snapshot
from gpunuma_fakes.spec import Machine

#: The process's simulated kernel of each machine named by a string (``GPUNUMA_SIMULATE``).
_PROCESS_KERNELS: dict[str, SimulatedKernel] = {}


def forget_process_kernels() -> None:
    """Drop the process's simulated kernels: the next binding meets a process no simulated kernel has changed
    (a test's own fresh start; the plugin does it around each test it simulates a machine for)."""
    _PROCESS_KERNELS.clear()


def is_captured(simulated: str) -> bool:
    """Whether ``--simulate`` names a captured host (a path) rather than a catalogue machine."""
    if simulated in names():
        return False
    return os.path.exists(simulated) or "/" in simulated or simulated.endswith(ARCHIVE_SUFFIXES)


@functools.cache
def _catalogue_read(name: str, kind: str) -> tuple[Topology, Allowed]:
    """Catalogue machine ``name`` as source ``kind`` reads it (frozen values: every reader of a process shares them,
    so a process that checks many workers, ``gpunuma fleet`` on a node, reads the machine once)."""
    return _read(machine(name), kind)


def _read(simulated: Machine, kind: str) -> tuple[Topology, Allowed]:
    """``simulated``'s tree (held in memory) read by the real adapter ``kind`` names, with its fake NVML."""
    sysfs = topology_source_class("sysfs")(root=machine_tree(simulated))
    source = sysfs if kind == "sysfs" else topology_source_class(kind)(nvml=FakeNvml(simulated), sysfs=sysfs)
    return source.read(), source.allowed()


class SimulatedTopology:
    """A :class:`~gpunuma.core.ports.TopologySource` for a simulated machine, read through source ``kind``."""

    def __init__(self, simulated: str | Machine, kind: str = "auto") -> None:
        self.captured: str | None = None
        self.machine: Machine | None = None
        #: The name this machine was asked for by (a catalogue name or a snapshot path), None for a Machine.
        self.named = simulated if isinstance(simulated, str) else None
        if isinstance(simulated, str) and is_captured(simulated):
            self.captured = simulated
        else:
            self.machine = machine(simulated) if isinstance(simulated, str) else simulated
        self.kind = kind
        self.name = kind
        topology_source_class(kind)  # an unknown kind fails here, not on the first read
        self._read: tuple[Topology, Allowed] | None = None

    @staticmethod
    def catalogue() -> tuple[tuple[str, str], ...]:
        """(name, description) of every machine ``--simulate`` accepts, for ``gpunuma machines``."""
        return tuple((name, machine(name).description) for name in names())

    @staticmethod
    def render(name: str, folder: str) -> int:
        """Write catalogue machine ``name``'s kernel files into ``folder`` (``gpunuma machines NAME --render``).

        ``folder`` is made (its parent must exist) or must be an empty folder: nothing of anyone else's is
        written over. Returns how many files and links were written.
        """
        tree = machine_tree(machine(name))
        try:
            os.mkdir(folder, 0o755)
        except FileExistsError:
            if not os.path.isdir(folder) or os.path.islink(folder) or os.listdir(folder):
                raise FileExistsError(f"{folder}: exists and is not an empty folder; name a new or empty one") from None
        write_tree(tree, folder)
        return len(tree)

    def _load(self) -> tuple[Topology, Allowed]:
        if self._read is None:
            self._read = self._load_captured(self.captured) if self.captured else self._load_machine()
        return self._read

    def _load_machine(self) -> tuple[Topology, Allowed]:
        assert self.machine is not None
        if self.named is not None:  # a catalogue machine: read once per process, as its tree is built once
            return _catalogue_read(self.named, self.kind)
        return _read(self.machine, self.kind)

    def _load_captured(self, path: str) -> tuple[Topology, Allowed]:
        source = load_snapshot(path).source(kind=self.kind)
        return source.read(), source.allowed()

    def read(self) -> Topology:
        """The machine's topology as the ``kind`` adapter reads its tree."""
        return self._load()[0]

    def kernel(self) -> SimulatedKernel:
        """The simulated kernel of this machine (what ``GPUNUMA_SIMULATE`` binds through).

        For a machine named by a string, the process's one kernel of that machine: it keeps what every
        binding in this process did, hands it down to children and shows it to other processes.
        """
        if self.named is None:
            topology, allowed = self._load()
            return SimulatedKernel(topology, allowed)
        kernel = _PROCESS_KERNELS.get(self.named)
        if kernel is None:
            topology, allowed = self._load()
            kernel = _PROCESS_KERNELS[self.named] = SimulatedKernel(topology, allowed, machine=self.named)
        return kernel

    def process(self, pid: int | str) -> KernelView:
        """What this machine's simulated kernel holds for process ``pid`` (``self``: this process).

        This process's threads are read from its own kernel; another process's from what its simulated kernel
        shows (see :meth:`SimulatedKernel.view_of`).
        """
        kernel = self.kernel()
        if str(pid) in ("self", str(os.getpid())):
            return kernel.view()
        return kernel.view_of(int(pid))

    def numa_maps(self, pid: int | str) -> str | None:
        """Process ``pid``'s ``numa_maps`` as this machine's simulated kernel shows it (``self``: this process's);
        None for another process that published nothing."""
        kernel = self.kernel()
        if str(pid) in ("self", str(os.getpid())):
            return kernel.numa_maps()
        return kernel.numa_maps_of(int(pid))

    def allowed(self) -> Allowed:
        """What the simulated process may use (its cgroup and affinity)."""
        return self._load()[1]
