"""PCIe ancestry of PCI functions and the RDMA NICs, from sysfs.

``/sys/bus/pci/devices/<bdf>`` and ``/sys/class/infiniband/<name>/device`` are symlinks into
``/sys/devices/pciDDDD:BB/<root port>/<switch ports>.../<bdf>``: the resolved path is the device's
place in the PCIe tree, which is what the NIC ranking compares.
"""

from __future__ import annotations

import os

from gpunuma.adapters.procfs import parse_int, read_value
from gpunuma.core.cpuset import BLANK
from gpunuma.core.model import Nic
from gpunuma.core.numbers import digits

TYPE_CHECKING = False
if TYPE_CHECKING:
    from os import PathLike


def pci_path(root: str | PathLike[str], device: str | PathLike[str]) -> tuple[str, ...]:
    """The components of ``device``'s resolved path below ``root/sys/devices``, host bridge first.

    ``()`` when the path does not resolve into ``sys/devices/pci*`` (a flat tree, a virtual device).
    """
    devices = os.path.realpath(os.path.join(root, "sys/devices"))
    resolved = os.path.realpath(device)
    if not resolved.startswith(devices + os.sep):
        return ()
    parts = tuple(resolved[len(devices) + 1 :].split(os.sep))
    return parts if parts[0].startswith("pci") else ()


def _numa_node(path: str) -> int | None:
    text = read_value(path)
    if text is None:
        return None
    value = parse_int(path, text)
    return None if value < 0 else value


def _entries(folder: str) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []


def read_nics(root: str | PathLike[str], notes: list[str]) -> tuple[Nic, ...]:
    """Every RDMA device under ``/sys/class/infiniband`` with its PCI function, ports and net interfaces.

    A machine without RDMA devices (no ``infiniband`` class) has none, silently.
    """
    class_dir = os.path.join(root, "sys/class/infiniband")
    nics: list[Nic] = []
    for name in _entries(class_dir):
        device = f"{class_dir}/{name}/device"
        path = pci_path(root, device)
        if not path:
            notes.append(f"{device} does not lead to a PCI device: RDMA device {name} left out")
            continue
        ports_dir = f"{class_dir}/{name}/ports"
        ports = tuple(sorted(int(port) for port in _entries(ports_dir) if digits(port)))
        link = read_value(f"{ports_dir}/{ports[0]}/link_layer") if ports else None
        nics.append(
            Nic(
                name=name,
                pci_bus_id=path[-1],
                numa_node=_numa_node(f"{device}/numa_node"),
                ports=ports,
                netdevs=tuple(_entries(f"{device}/net")),
                link_layer=link.strip(BLANK) if link is not None else None,
                pci_path=path,
            )
        )
    return tuple(sorted(nics, key=lambda nic: (nic.pci_path[-1], nic.name)))
