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
        return _RANK[self]


_ORDER = (PcieDistance.SWITCH, PcieDistance.HOST_BRIDGE, PcieDistance.NODE, PcieDistance.SYSTEM)
_RANK = {distance: rank for rank, distance in enumerate(_ORDER)}
#: The link count that sorts after every measured one (no common PCIe tree).
_FAR = 1 << 16


class NearNic(Value):
    """A NIC as seen from one GPU: how far it is and how many PCIe links lie between (None: not one tree)."""

    nic: Nic
    distance: PcieDistance
    hops: int | None

    def key(self) -> tuple[int, int, int, str]:
        """Nearest first: class, links, InfiniBand before Ethernet, then bus id."""
        return _key(self.nic, self.distance, self.hops)

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


def _key(nic: Nic, distance: PcieDistance, hops: int | None) -> tuple[int, int, int, str]:
    return (
        _RANK[distance],
        hops if hops is not None else _FAR,
        0 if nic.link_layer in (None, INFINIBAND) else 1,
        nic.pci_bus_id,
    )


def _scored(nics: Sequence[Nic], gpu: Gpu) -> list[tuple[tuple[int, int, int, str], Nic, PcieDistance, int | None]]:
    """Each of ``nics`` with its sort key, class and link count as seen from ``gpu``, nearest first."""
    scored = []
    for nic in nics:
        distance, hops = pcie_distance(gpu.pci_path, gpu.numa_node, nic.pci_path, nic.numa_node)
        scored.append((_key(nic, distance, hops), nic, distance, hops))
    scored.sort(key=lambda entry: entry[0])
    return scored


def ranked_nics(topology: Topology, gpu: Gpu) -> tuple[NearNic, ...]:
    """Every NIC of ``topology``, nearest to ``gpu`` first."""
    return tuple(NearNic(nic, distance, hops) for _, nic, distance, hops in _scored(topology.nics, gpu))


def nearest_nics(topology: Topology, gpu: Gpu) -> tuple[NearNic, ...]:
    """The NICs tied for nearest to ``gpu`` (same class, link count and link layer), by bus id.

    Only those become :class:`NearNic` values: a plan ranks the NICs for each of its GPUs. A NIC under the GPU's
    own host bridge (``switch`` or ``host-bridge``) is nearer than any other, so when there are some only they
    are ranked.
    """
    bridge = gpu.pci_path[0] if gpu.pci_path else None
    local = [nic for nic in topology.nics if nic.pci_path and nic.pci_path[0] == bridge] if bridge else []
    scored = _scored(local or topology.nics, gpu)
    if not scored:
        return ()
    best = scored[0][0][:3]
    return tuple(NearNic(nic, distance, hops) for key, nic, distance, hops in scored if key[:3] == best)
