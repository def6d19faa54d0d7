"""PCIe ancestry of PCI functions and the RDMA NICs, from sysfs.

``/sys/bus/pci/devices/<bdf>`` and ``/sys/class/infiniband/<name>/device`` are symlinks into
``/sys/devices/pciDDDD:BB/<root port>/<switch ports>.../<bdf>``: the resolved path is the device's
place in the PCIe tree, which is what the NIC ranking compares.
"""

from __future__ import annotations

import os
from os import PathLike

from gpunuma.adapters.files import HOST
from gpunuma.adapters.procfs import parse_node_id, read_value
from gpunuma.core.cpuset import BLANK
from gpunuma.core.model import Nic
from gpunuma.core.numbers import decimal
from gpunuma.core.ports import KernelFiles
from gpunuma.core.reasons import Reason


class PciPaths:
    """PCIe ancestries of the devices under one ``root``, for one read.

    Paths resolve as :func:`os.path.realpath` resolves them: ``files`` names the folder an existing path leads
    to (on this host the kernel does, through ``/proc/self/fd``); a path it cannot resolve has its symlinks
    followed here, each folder once (``realpath`` checks every component of every path: ~400 ``lstat`` calls
    for a DGX's GPUs and NICs).
    """

    def __init__(self, root: str | PathLike[str], files: KernelFiles = HOST) -> None:
        self._real: dict[str, str] = {}
        self._files = files
        devices = os.path.join(os.fspath(root), "sys/devices")
        self._devices = files.resolve(devices) or self._resolve(os.path.abspath(devices))

    def of(self, device: str | PathLike[str]) -> tuple[str, ...]:
        """The components of ``device``'s resolved path below ``root/sys/devices``, host bridge first.

        ``()`` when the path does not resolve into ``sys/devices/pci*`` (a flat tree, a virtual device).
        """
        path = os.fspath(device)
        resolved = self._files.resolve(path) or self._resolve(os.path.abspath(path))
        if not resolved.startswith(self._devices + os.sep):
            return ()
        parts = tuple(resolved[len(self._devices) + 1 :].split(os.sep))
        return parts if parts[0].startswith("pci") else ()

    def _resolve(self, path: str, hops: int = 0) -> str:
        """``path`` (absolute, no ``..`` before a link) with every symlink in it followed."""
        known = self._real.get(path)
        if known is not None:
            return known
        head, tail = os.path.split(path)
        if not tail or head == path:
            return path
        base = self._resolve(head, hops)
        candidate = os.path.join(base, tail)
        target = self._files.readlink(candidate)
        if target is None:  # not a link, or not there: realpath keeps it as it is
            real = candidate
        else:
            if hops > 40:  # a symlink loop: as realpath, give the path up unresolved
                return os.path.realpath(path)
            # ``base`` holds no link, so ".." in the target walks real directories.
            real = self._resolve(os.path.normpath(os.path.join(base, target)), hops + 1)
        self._real[path] = real
        return real


def pci_path(
    root: str | PathLike[str], device: str | PathLike[str], files: KernelFiles = HOST
) -> tuple[str, ...]:
    """The components of ``device``'s resolved path below ``root/sys/devices``, host bridge first (one lookup)."""
    return PciPaths(root, files).of(device)


def _numa_node(path: str, files: KernelFiles) -> int | None:
    text = read_value(path, files)
    return None if text is None else parse_node_id(path, text)


def _entries(folder: str, files: KernelFiles) -> list[str]:
    return sorted(files.listdir(folder) or [])


def read_nics(
    root: str | PathLike[str], notes: list[str], paths: PciPaths | None = None, files: KernelFiles = HOST
) -> tuple[Nic, ...]:
    """Every RDMA device under ``/sys/class/infiniband`` with its PCI function, ports and net interfaces.

    A machine without RDMA devices (no ``infiniband`` class) has none, silently. ``paths`` resolves PCIe
    ancestries (one per read, shared with the GPUs').
    """
    paths = paths if paths is not None else PciPaths(root, files)
    class_dir = os.path.join(os.fspath(root), "sys/class/infiniband")
    nics: list[Nic] = []
    for name in _entries(class_dir, files):
        device = f"{class_dir}/{name}/device"
        path = paths.of(device)
        if not path:
            notes.append(Reason.of("sysfs_rdma_without_pci", path=device, name=name))
            continue
        ports_dir = f"{class_dir}/{name}/ports"
        ports = tuple(sorted(n for port in _entries(ports_dir, files) if (n := decimal(port)) is not None))
        link = read_value(f"{ports_dir}/{ports[0]}/link_layer", files) if ports else None
        nics.append(
            Nic(
                name=name,
                pci_bus_id=path[-1],
                numa_node=_numa_node(f"{device}/numa_node", files),
                ports=ports,
                netdevs=tuple(_entries(f"{device}/net", files)),
                link_layer=link.strip(BLANK) if link is not None else None,
                pci_path=path,
            )
        )
    return tuple(sorted(nics, key=lambda nic: (nic.pci_path[-1], nic.name)))
