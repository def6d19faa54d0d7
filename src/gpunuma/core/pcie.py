"""How near a NIC is to a GPU on the PCIe tree, and which NICs are a GPU's nearest.

Pure: it compares the PCIe ancestries the topology adapters read (``Gpu.pci_path``,
``Nic.pci_path``) and the NUMA nodes they report. The classes follow ``nvidia-smi topo -m``:
``switch`` is its PIX/PXB (a common PCIe bridge, no host bridge crossed), ``host-bridge`` its PHB,
``node`` its NODE and ``system`` its SYS.
"""

from __future__ import annotations

from gpunuma.core.value import Choice, Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from gpunuma.core.model import Gpu, Nic, Topology

#: The link layer NCCL's IB transport and UCX's ``rc`` transports want; storage and management
#: ports are usually Ethernet.
INFINIBAND = "InfiniBand"


class PcieDistance(str, Choice):
    """How far apart two PCI functions are, nearest first."""

    SWITCH = "switch"
    """Behind a common PCIe switch or root port: traffic never reaches the host bridge."""
    HOST_BRIDGE = "host-bridge"
    """Under the same host bridge (root complex), through it."""
    NODE = "node"
    """On the same NUMA node, under different host bridges."""
    SYSTEM = "system"
    """Across sockets, or where locality is unknown."""

    @property
    def rank(self) -> int:
        return _ORDER.index(self)


_ORDER = (PcieDistance.SWITCH, PcieDistance.HOST_BRIDGE, PcieDistance.NODE, PcieDistance.SYSTEM)


class NearNic(Value):
    """A NIC as seen from one GPU: how far it is and how many PCIe links lie between (None: not one tree)."""

    nic: Nic
    distance: PcieDistance
    hops: int | None

    def key(self) -> tuple[int, int, int, str]:
        """Nearest first: class, links, InfiniBand before Ethernet, then bus id."""
        return (
            self.distance.rank,
            self.hops if self.hops is not None else 1 << 16,
            0 if self.nic.link_layer in (None, INFINIBAND) else 1,
            self.nic.pci_bus_id,
        )

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "pci_bus_id", "numa_node", "ports", "netdevs", "link_layer", "distance", "hops"}``."""
        return {**nic_dict(self.nic), "distance": self.distance.value, "hops": self.hops}


def nic_dict(nic: Nic) -> dict[str, Any]:
    """A NIC in the JSON shapes of ``gpunuma topo`` and ``gpunuma plan``."""
    return {
        "name": nic.name,
        "pci_bus_id": nic.pci_bus_id,
        "numa_node": nic.numa_node,
        "ports": list(nic.ports),
        "netdevs": list(nic.netdevs),
        "link_layer": nic.link_layer,
    }


def pcie_distance(
    first: Sequence[str], first_node: int | None, second: Sequence[str], second_node: int | None
) -> tuple[PcieDistance, int | None]:
    """The class and link count between two PCI functions given their ancestries (root first) and nodes.

    An ancestry starts with the host bridge (``pci0000:15``) and ends with the function itself;
    sharing more than the host bridge means sharing a PCIe bridge (a root port or a switch port).
    """
    if first and second and first[0] == second[0]:
        common = 0
        for mine, theirs in zip(first, second, strict=False):
            if mine != theirs:
                break
            common += 1
        hops = (len(first) - common) + (len(second) - common)
        return (PcieDistance.SWITCH if common > 1 else PcieDistance.HOST_BRIDGE), hops
    if first_node is not None and first_node == second_node:
        return PcieDistance.NODE, None
    return PcieDistance.SYSTEM, None


def ranked_nics(topology: Topology, gpu: Gpu) -> tuple[NearNic, ...]:
    """Every NIC of ``topology``, nearest to ``gpu`` first."""
    near = [
        NearNic(nic, *pcie_distance(gpu.pci_path, gpu.numa_node, nic.pci_path, nic.numa_node)) for nic in topology.nics
    ]
    return tuple(sorted(near, key=NearNic.key))


def nearest_nics(topology: Topology, gpu: Gpu) -> tuple[NearNic, ...]:
    """The NICs tied for nearest to ``gpu`` (same class, link count and link layer), by bus id."""
    ranked = ranked_nics(topology, gpu)
    if not ranked:
        return ()
    best = ranked[0].key()[:3]
    return tuple(near for near in ranked if near.key()[:3] == best)
