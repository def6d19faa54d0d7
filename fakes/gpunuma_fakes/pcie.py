"""Where every PCI function of a simulated machine hangs in the PCIe tree.

Linux shows each function under ``/sys/devices/pciDDDD:BB/<root port>/<switch ports>.../<bdf>``
and links it from ``/sys/bus/pci/devices/<bdf>``. This module decides those paths: every endpoint
(GPU, NIC, decoy) not on a root bus gets a root port; endpoints that name the same PCIe switch
(``switches``) share its upstream port, each behind a downstream port of its own. A switch takes two
bus numbers (its upstream port's bus and its downstream ports' bus), taken from the free buses just
below its devices, as firmware numbers them depth-first; root ports sit on the next free bus below
and may share it (several root ports of one host bridge).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # spec builds this module's objects: it imports this module
    from gpunuma_fakes.spec import Machine


#: (vendor, device, PCI class) of the functions every simulated server carries besides GPUs.
HOST_BRIDGE = (0x8086, 0x09A2, 0x060000)
ROOT_PORT = (0x8086, 0x352A, 0x060400)
SWITCH_PORT = (0x1000, 0xC030, 0x060400)  # a Broadcom PEX89000-series switch port
BMC_VGA = (0x1A03, 0x2000, 0x030000)
ETHERNET = (0x15B3, 0x1021, 0x020000)
NVSWITCH = (0x10DE, 0x22A3, 0x068000)
HDMI_AUDIO = (0x10DE, 0x22BA, 0x040300)


@dataclass(frozen=True)
class Function:
    """A PCI function that is not a GPU or an RDMA NIC: a bridge, a switch port or a decoy."""

    bdf: str
    ids: tuple[int, int, int]
    node: int


@dataclass(frozen=True)
class PcieLayout:
    """Every function's sysfs path below ``sys/devices`` (host bridge first) and the other functions."""

    paths: Mapping[str, tuple[str, ...]]
    functions: tuple[Function, ...] = field(default=())


def _split(bdf: str) -> tuple[str, int]:
    domain, bus, _ = bdf.split(":")
    return domain, int(bus, 16)


class _Buses:
    """Bus numbers of one machine: endpoint buses are taken; bridges take free ones below their devices."""

    def __init__(self, taken: set[tuple[str, int]], functions: set[str]) -> None:
        self.taken = set(taken)
        self.functions = set(functions)  # bdfs in use
        self.roots: set[tuple[str, int]] = set()

    def below(self, domain: str, bus: int, count: int) -> list[int]:
        found: list[int] = []
        candidate = bus - 1
        while len(found) < count:
            if candidate < 0:
                raise ValueError(f"no free PCI bus below {domain}:{bus:02x} for a PCIe switch")
            if (domain, candidate) not in self.taken and (domain, candidate) not in self.roots:
                found.append(candidate)
            candidate -= 1
        self.taken.update((domain, b) for b in found)
        return sorted(found)

    def root_port(self, domain: str, bus: int) -> tuple[str, str]:
        """A root port above bus ``bus``: (its host bridge ``pciDDDD:RR``, its bdf).

        Bus 0 is a root bus even when integrated functions (the host bridge, an iGPU) sit on it.
        """
        candidate = bus - 1
        while candidate > 0 and (domain, candidate) in self.taken:
            candidate -= 1
        if candidate < 0:
            raise ValueError(f"no free PCI bus below {domain}:{bus:02x} for a root port")
        self.roots.add((domain, candidate))
        slot = 1
        while (bdf := f"{domain}:{candidate:02x}:{slot:02x}.0") in self.functions:
            slot += 1
        self.functions.add(bdf)
        return f"pci{domain}:{candidate:02x}", bdf


def _decoys(machine: Machine, taken: set[tuple[str, int]]) -> list[Function]:
    """The host bridge, the BMC's VGA, an Ethernet NIC, NVSwitches (NVIDIA boards), the machine's own decoys."""
    node = -1 if machine.no_numa_dir else min(n.id for n in machine.nodes if n.cpus)
    kinds = [BMC_VGA, ETHERNET]
    if sum(1 for g in machine.gpus if g.vendor == "nvidia") > 1:
        kinds += [NVSWITCH, NVSWITCH]
    functions = [Function("0000:00:00.0", HOST_BRIDGE, node)]
    bus = 0xE8  # high buses, clear of the GPUs and NICs that the catalogue places low
    for kind in kinds:
        while ("0000", bus) in taken:
            bus += 1
        functions.append(Function(f"0000:{bus:02x}:00.0", kind, node))
        taken.add(("0000", bus))
    for bdf, vendor, klass in machine.decoys:
        functions.append(Function(bdf, (vendor, 0x0001, klass), node))
    return functions


def pcie_layout(machine: Machine) -> PcieLayout:
    """The PCIe tree of ``machine``: a path for every function, and every non-GPU, non-NIC function."""
    endpoints: dict[str, tuple[tuple[str, ...], int]] = {}
    for gpu in machine.gpus:
        endpoints[gpu.bus_id] = (gpu.switches, gpu.sysfs_numa_node)
    for nic in machine.nics:
        endpoints[nic.bus_id] = (nic.switches, nic.numa_node)
    taken = {_split(bdf) for bdf in endpoints} | {_split(bdf) for bdf, _, _ in machine.decoys}
    decoys = _decoys(machine, taken)
    for decoy in decoys:
        endpoints.setdefault(decoy.bdf, ((), decoy.node))
    buses = _Buses(taken, set(endpoints))
    paths: dict[str, tuple[str, ...]] = {}
    functions = list(decoys)

    groups: dict[str, list[str]] = {}
    for bdf, (switches, _) in endpoints.items():
        # Functions of one device (``.0``, ``.1``) share its port.
        groups.setdefault(switches[0] if switches else bdf[:-2], []).append(bdf)
    for members in sorted(groups.values(), key=lambda bdfs: min(_split(b) for b in bdfs)):
        _place_group(sorted(members), endpoints, buses, paths, functions)
    return PcieLayout(paths=paths, functions=tuple(functions))


def _place_group(
    members: list[str],
    endpoints: Mapping[str, tuple[tuple[str, ...], int]],
    buses: _Buses,
    paths: dict[str, tuple[str, ...]],
    functions: list[Function],
) -> None:
    """Root port, switches and endpoints of the devices below one root port."""
    domain, lowest = min(_split(b) for b in members)
    node = endpoints[members[0]][1]
    if lowest == 0 and not any(endpoints[b][0] for b in members):
        for bdf in members:
            paths[bdf] = (f"pci{domain}:00", bdf)  # an integrated function on the root bus
        return
    # Every switch once, parents before children (tuple order is pre-order).
    chains = sorted({endpoints[b][0][: depth + 1] for b in members for depth in range(len(endpoints[b][0]))})
    internal = buses.below(domain, lowest, 2 * len(chains))
    host, root = buses.root_port(domain, internal[0] if internal else lowest)
    paths[root] = (host, root)
    functions.append(Function(root, ROOT_PORT, node))
    below: dict[tuple[str, ...], tuple[str, ...]] = {(): paths[root]}  # chain -> path its children hang from
    slots: dict[tuple[str, ...], int] = {}

    def port_under(chain: tuple[str, ...]) -> tuple[str, ...]:
        """A new downstream port of switch ``chain`` (the root port itself for the empty chain)."""
        if not chain:
            return below[()]
        down_bus = internal[2 * chains.index(chain) + 1]
        slot = slots.get(chain, 0)
        slots[chain] = slot + 1
        port = f"{domain}:{down_bus:02x}:{slot:02x}.0"
        functions.append(Function(port, SWITCH_PORT, node))
        paths[port] = (*below[chain], port)
        return paths[port]

    for position, chain in enumerate(chains):
        up = f"{domain}:{internal[2 * position]:02x}:00.0"
        functions.append(Function(up, SWITCH_PORT, node))
        paths[up] = (*port_under(chain[:-1]), up)
        below[chain] = paths[up]
    for bdf in members:
        paths[bdf] = (*port_under(endpoints[bdf][0]), bdf)
