"""Read what a container gave this process: the NVIDIA driver's ``/proc`` listing, ``/dev`` nodes, DRM nodes.

Every path is under the filesystem ``root`` (``/`` on a live system, a rendered tree in tests). A
directory that is missing or unreadable (EACCES under AppArmor, ELOOP, ENOTDIR) is "no evidence",
never an error: the decision in :mod:`gpunuma.core.exposure` then narrows nothing on its account.
"""

from __future__ import annotations

import os
from pathlib import Path

from gpunuma.adapters.files import HOST
from gpunuma.core.exposure import DeviceAccess
from gpunuma.core.numbers import decimal
from gpunuma.core.ports import KernelFiles


def _names(folder: str | Path, files: KernelFiles) -> frozenset[str] | None:
    """The entry names of ``folder``, or None when it is not a readable directory."""
    try:
        names = files.listdir(os.fspath(folder))
    except (OSError, ValueError):
        return None
    return None if names is None else frozenset(names)


def read_device_access(
    root: str | Path = "/", nvidia_visible_devices: str | None = None, files: KernelFiles = HOST
) -> DeviceAccess:
    """The GPU evidence under ``root``: ``proc/driver/nvidia/gpus``, ``dev`` and ``dev/dri``.

    ``nvidia_visible_devices`` is the ``NVIDIA_VISIBLE_DEVICES`` value the composition root read.
    """
    dev = _names(os.path.join(root, "dev"), files)
    if dev is not None:
        dri = _names(os.path.join(root, "dev/dri"), files) or frozenset()
        dev = dev | {f"dri/{name}" for name in dri}
    return DeviceAccess(
        nvidia_listed=_names(os.path.join(root, "proc/driver/nvidia/gpus"), files),
        dev_nodes=dev,
        nvidia_visible_devices=nvidia_visible_devices,
    )


def render_nodes(pci_folder: str | Path, files: KernelFiles = HOST) -> tuple[str, ...]:
    """The DRM render nodes (``renderD128``) the driver registered for one PCI function, sorted."""
    names = _names(os.path.join(pci_folder, "drm"), files) or frozenset()
    return tuple(sorted(name for name in names if name.startswith("renderD")))


def device_minor(text: str | None) -> int | None:
    """The ``Device Minor`` value of the NVIDIA driver's ``information`` text (ASCII digits), else None."""
    if not text:
        return None
    return decimal(text.strip())
