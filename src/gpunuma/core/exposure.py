"""Which of the host's GPUs this process can open, numbered as its runtime numbers them (pure: no I/O).

sysfs is not namespaced: inside a container ``/sys/bus/pci`` still lists every GPU of the host.
What the process may use is what the container runtime put into its own filesystem:

* NVIDIA: the runtime mounts a tmpfs over ``/proc/driver/nvidia`` and binds in only the
  container's ``gpus/<bus id>`` entries, plus only their ``/dev/nvidiaN`` nodes
  (libnvidia-container, ``nvc_mount.c``). CDI injection narrows only the device nodes, and sets
  ``NVIDIA_VISIBLE_DEVICES=void``. With neither file evidence, ``NVIDIA_VISIBLE_DEVICES`` (host
  indices or UUIDs, ``all``, ``none``) is read.
* AMD: ROCm needs ``/dev/kfd`` and opens a GPU through its ``/dev/dri/renderDN`` node; ``docker
  --device`` passes only the nodes named. Intel: Level Zero opens the render node alone.

CUDA numbers NVIDIA GPUs only and ROCm AMD GPUs only, each in PCI bus order, so a GPU of another
vendor between two NVIDIA GPUs never shifts their numbers: the NVIDIA GPUs this process can open
are numbered 0, 1, ... in bus order, and the AMD ones after them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from gpunuma.core.model import Gpu
from gpunuma.core.numbers import digits
from gpunuma.core.pci import BusId, is_sysfs_form
from gpunuma.core.reasons import Reason
from gpunuma.errors import TopologyError

#: The NVIDIA container runtime's variable: which host GPUs the container was given.
NVIDIA_VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"

#: Values of NVIDIA_VISIBLE_DEVICES that name no particular GPUs (``void``/empty: not a GPU container
#: as far as the runtime goes; ``all``: every GPU).
_NO_FILTER = frozenset({"", "all", "void"})


def _host_index(entry: str) -> str | None:
    """The GPU index of a host index (``3``) or MIG index pair (``3:1``), as ASCII digits; else None."""
    first, colon, second = entry.partition(":")
    if digits(first) and (not colon or digits(second)):
        return first.lstrip("0") or "0"
    return None


@dataclass(frozen=True)
class DeviceAccess:
    """What this process's own filesystem and environment show about the GPUs it may open.

    None means "no evidence either way" (the file is not there or could not be read): such a
    field never narrows anything.
    """

    #: Bus ids listed under ``/proc/driver/nvidia/gpus`` (None: no such directory).
    nvidia_listed: frozenset[str] | None = None
    #: Names in ``/dev``, with ``/dev/dri`` entries as ``dri/renderD128`` (None: no ``/dev``).
    dev_nodes: frozenset[str] | None = None
    #: The value of ``NVIDIA_VISIBLE_DEVICES`` (None: unset).
    nvidia_visible_devices: str | None = None

    @cached_property
    def nvidia_buses(self) -> frozenset[str]:
        """``nvidia_listed`` in sysfs form (``0000:1b:00.0``), normalized once for every GPU checked."""
        return frozenset(_bus(bus) for bus in self.nvidia_listed or ())


@dataclass(frozen=True, slots=True)
class DeviceIds:
    """The driver's names for one GPU: NVIDIA's ``Device Minor`` and the DRM render nodes (AMD)."""

    minor: int | None = None
    render_nodes: tuple[str, ...] = ()


def usable_gpus(
    gpus: Sequence[Gpu], access: DeviceAccess, ids: Mapping[str, DeviceIds] | None = None
) -> tuple[tuple[Gpu, ...], tuple[str, ...]]:
    """The GPUs this process can open, renumbered (NVIDIA in bus order, then the others), and a note per GPU left out.

    ``gpus`` are the host's GPUs as the PCI bus shows them; ``ids`` maps a bus id to its driver
    names. Other vendors' functions never appear in ``gpus`` (the sysfs adapter leaves them out).
    """
    ids = ids or {}
    by_bus = sorted(gpus, key=lambda g: _bus(g.pci_bus_id))
    nvidia = [g for g in by_bus if g.vendor == "nvidia"]
    _check_listed(access, nvidia)
    kept: list[Gpu] = []
    left_out: dict[tuple[str, str], list[str]] = {}  # (vendor, why) -> bus ids, in first-seen order
    for host_index, gpu in enumerate(nvidia):
        why = _nvidia_refusal(gpu, host_index, access, ids.get(gpu.pci_bus_id, DeviceIds()))
        _sort(gpu, why, kept, left_out)
    for gpu in by_bus:
        if gpu.vendor != "nvidia":
            gpu_ids = ids.get(gpu.pci_bus_id, DeviceIds())
            why = _amd_refusal(access, gpu_ids) if gpu.vendor == "amd" else _render_refusal(access, gpu_ids)
            _sort(gpu, why, kept, left_out)
    numbered = tuple(replace(gpu, index=index) if gpu.index != index else gpu for index, gpu in enumerate(kept))
    notes = tuple(
        Reason.of("gpus_not_openable", vendor=vendor.upper(), buses=", ".join(buses), why=why)
        for (vendor, why), buses in left_out.items()
    )
    return numbered, notes


def _check_listed(access: DeviceAccess, nvidia: Sequence[Gpu]) -> None:
    """Every GPU the NVIDIA driver lists must be one the PCI bus shows as NVIDIA's, or the numbering is a guess.

    The listing comes from the driver itself; a listed GPU whose ``class`` or ``vendor`` file is missing,
    blank or another's would be dropped, and each NVIDIA GPU after it would take the wrong number (CUDA
    counts it). :class:`~gpunuma.errors.TopologyError`: no plan may name a GPU by a number it does not have.
    """
    if access.nvidia_listed is None:
        return
    seen = {_bus(gpu.pci_bus_id) for gpu in nvidia}
    unseen = [bus for bus in access.nvidia_buses - seen if is_sysfs_form(bus)]  # names that are bus ids
    if unseen:
        raise TopologyError(
            f"the NVIDIA driver lists {', '.join(sorted(unseen))} (/proc/driver/nvidia/gpus) but the PCI bus in "
            "sysfs shows no NVIDIA GPU there (its class or vendor file is missing, blank or another's): "
            "the GPUs cannot be numbered as CUDA numbers them"
        )


def _sort(gpu: Gpu, why: str | None, kept: list[Gpu], left_out: dict[tuple[str, str], list[str]]) -> None:
    if why is None:
        kept.append(gpu)
    else:
        left_out.setdefault((gpu.vendor, why), []).append(gpu.pci_bus_id)


def _bus(bus_id: str) -> str:
    """``bus_id`` in sysfs form; a name that is no bus id stays as it is (it then matches no GPU)."""
    if is_sysfs_form(bus_id):  # what sysfs and the driver's listing give: no value built for each
        return bus_id
    parsed = BusId.parse(bus_id)
    return bus_id if parsed is None else parsed.sysfs


def _nvidia_refusal(gpu: Gpu, host_index: int, access: DeviceAccess, ids: DeviceIds) -> str | None:
    """Why this process cannot open ``gpu`` (None: it can, or nothing says it cannot)."""
    listed = access.nvidia_listed
    if listed is not None and _bus(gpu.pci_bus_id) not in access.nvidia_buses:
        return Reason.of("nvidia_not_listed")
    dev = access.dev_nodes
    if dev is not None and "nvidiactl" in dev:
        if ids.minor is not None and f"nvidia{ids.minor}" not in dev:
            return Reason.of("nvidia_device_node_missing", minor=ids.minor)
        return None
    if dev is not None and listed is not None:
        # The driver is loaded but its control node is absent: a container without the NVIDIA runtime.
        return Reason.of("nvidiactl_missing")
    if listed is not None:
        return None
    return _visible_devices_refusal(gpu, host_index, access.nvidia_visible_devices)


def _visible_devices_refusal(gpu: Gpu, host_index: int, value: str | None) -> str | None:
    """NVIDIA_VISIBLE_DEVICES, read only when neither ``/proc/driver/nvidia`` nor ``/dev`` says anything."""
    if value is None or value.strip().lower() in _NO_FILTER:
        return None
    text = value.strip()
    if text.lower() == "none":
        return Reason.of("nvidia_visible_none")
    for entry in (e.strip() for e in text.split(",")):
        index = _host_index(entry)
        if index is not None:
            # Compared as text: a 5000-digit index names no GPU, and int() would refuse to parse it.
            if index == str(host_index):
                return None
        elif entry.upper().startswith("GPU-") and gpu.uuid is not None:
            if gpu.uuid.lower().startswith(entry.lower()):
                return None
        else:
            # A MIG UUID, or a UUID without the driver's information file: it cannot be matched
            # here, and a guess must not drop GPUs, so the variable narrows nothing.
            return None
    return Reason.of("nvidia_visible_unnamed", value=text[:80], index=host_index)


def _amd_refusal(access: DeviceAccess, ids: DeviceIds) -> str | None:
    dev = access.dev_nodes
    if dev is None:
        return None
    if "kfd" not in dev:
        return Reason.of("kfd_missing")
    return _render_refusal(access, ids)


def _render_refusal(access: DeviceAccess, ids: DeviceIds) -> str | None:
    """Why the GPU's DRM render node cannot be opened (None: it can, or nothing says it cannot)."""
    dev = access.dev_nodes
    if dev is None:
        return None
    if ids.render_nodes and not any(f"dri/{node}" in dev for node in ids.render_nodes):
        nodes = ", ".join(f"/dev/dri/{node}" for node in ids.render_nodes)
        return Reason.of("render_node_missing", nodes=nodes)
    return None
