"""The default topology source: the kernel's sysfs view, enriched by NVML when NVML starts.

With ``nvml_when="needed"`` (what the composition root builds for a plan) NVML is asked only for what
sysfs and the NVIDIA driver's ``/proc`` cannot answer: a GPU whose ``numa_node`` is -1 (NVML's memory
node and affinity may know better), a GPU without a UUID in ``/proc/driver/nvidia`` (UUID to bus id),
no NVIDIA GPU in sysfs at all, or MIG (the caller says a MIG UUID is asked for). A worker whose GPUs
sysfs fully describes then never imports pynvml nor pays ``nvmlInit`` (25-60 ms on GPU hosts).

Which source wins each field:

* nodes, CPUs, PCI ``numa_node`` and ``local_cpus``: sysfs (the kernel allocates by them);
* UUID, name, MIG devices, ``memory_node``, ``affinity_nodes``: NVML (``memory_node`` from the NVIDIA
  driver's ``numa_status`` where NVML says nothing).

When the two disagree about a GPU's node, the kernel's PCI ``numa_node`` wins if it is known;
NVML's CPU affinity fills in only where the kernel says -1. Each disagreement is logged as a
warning on the ``gpunuma`` logger and added to :attr:`Topology.notes`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from gpunuma.adapters.nvml import import_pynvml, read_nvml_gpus
from gpunuma.core.model import Gpu, MigDevice, Topology
from gpunuma.core.pci import normalize_bus_id
from gpunuma.core.plan import Allowed
from gpunuma.core.ports import TopologySource
from gpunuma.core.reasons import Reason
from gpunuma.errors import NvmlError

logger = logging.getLogger(__name__)


class AutoTopology:
    """A :class:`~gpunuma.core.ports.TopologySource` combining sysfs and (when it works) NVML.

    ``sysfs`` is the kernel source; ``nvml`` the ``pynvml`` module or a stand-in with its names (None:
    ``pynvml``, imported when NVML is asked). ``without_nvml`` says why NVML must not be asked (a captured
    tree: this machine's NVML does not describe it); the note carries it. ``nvml_when`` is ``always``
    (whenever NVML starts: ``gpunuma topo``, the default) or ``needed`` (only for what sysfs cannot answer,
    see :func:`nvml_needs`).
    """

    name = "auto"

    def __init__(
        self,
        *,
        sysfs: TopologySource,
        nvml: Any | None = None,
        without_nvml: str | None = None,
        nvml_when: str = "always",
    ) -> None:
        if nvml_when not in NVML_WHEN:
            raise ValueError(f"nvml_when={nvml_when!r}: expected one of {', '.join(NVML_WHEN)}")
        self.sysfs = sysfs
        self._nvml = nvml
        self._without_nvml = without_nvml
        self._nvml_when = nvml_when

    def allowed(self) -> Allowed:
        """The kernel's cpuset and affinity for this process."""
        return self.sysfs.allowed()

    def read(self) -> Topology:
        """sysfs alone when NVML cannot start (with a note saying why), else both combined."""
        base = self.sysfs.read()
        if self._without_nvml is not None:
            return _sysfs_alone(base, Reason.of("nvml_not_used", error=str(self._without_nvml)))
        if self._nvml_when == "needed" and not nvml_needs(base):
            return replace(base, source="auto(sysfs)")
        try:
            if self._nvml is None:
                self._nvml = import_pynvml()
            found = read_nvml_gpus(self._nvml, base)
        except NvmlError as err:
            return _sysfs_alone(base, Reason.of("nvml_not_used", error=str(err)))
        gpus, notes = merge_gpus(base.gpus, found.gpus)
        return replace(
            base, gpus=gpus, source="auto(nvml+sysfs)", notes=(*base.notes, *found.notes, *notes)
        )


#: When :class:`AutoTopology` asks NVML: whenever it starts, or only where sysfs cannot answer.
NVML_WHEN = ("always", "needed")


def _sysfs_alone(base: Topology, note: Reason) -> Topology:
    """``base`` as sysfs read it, noting why NVML was not used only where NVML could have told something: an
    NVIDIA GPU, or no GPU at all in sysfs (a container's GPUs NVML may still see). AMD and Intel GPUs have no NVML
    to miss, so their plans carry no such reason."""
    bears = not base.gpus or any(gpu.vendor == "nvidia" for gpu in base.gpus)
    return replace(base, source="auto(sysfs)", notes=(*base.notes, note) if bears else base.notes)


def nvml_needs(kernel: Topology) -> tuple[str, ...]:
    """What sysfs and the NVIDIA driver's ``/proc`` could not say about ``kernel``'s NVIDIA GPUs, and NVML may.

    Empty when they describe every NVIDIA GPU: a known ``numa_node`` and a UUID (so ``GPU-`` names map
    to bus ids without NVML). MIG instances are known to NVML alone: a caller that names one asks with
    ``nvml_when="always"``.
    """
    nvidia = [gpu for gpu in kernel.gpus if gpu.vendor == "nvidia"]
    if not nvidia and not any(gpu.vendor != "nvidia" for gpu in kernel.gpus):
        return ("sysfs lists no GPU",)
    needs = [f"{gpu.label}: numa_node -1" for gpu in nvidia if gpu.numa_node is None]
    needs += [f"{gpu.label}: no UUID in /proc/driver/nvidia" for gpu in nvidia if gpu.uuid is None]
    return tuple(needs)


def merge_gpus(kernel: tuple[Gpu, ...], nvml: tuple[Gpu, ...]) -> tuple[tuple[Gpu, ...], tuple[str, ...]]:
    """Combine sysfs and NVML GPUs matched by bus id; returns the GPUs and topology notes.

    NVIDIA GPUs take NVML's index (the id ``nvidia-smi`` and Ray use). An NVIDIA GPU in sysfs
    that NVML does not see is left out (in a container it belongs to someone else); GPUs of
    other vendors keep the kernel's view and are numbered after the NVIDIA ones.
    """
    by_bus = {normalize_bus_id(g.pci_bus_id): g for g in nvml}
    merged: list[Gpu] = []
    others: list[Gpu] = []
    notes: list[str] = []
    seen: set[str] = set()
    for gpu in kernel:
        bus = normalize_bus_id(gpu.pci_bus_id)
        found = by_bus.get(bus)
        if found is None:
            if gpu.vendor == "nvidia":
                notes.append(Reason.of("gpu_not_seen_by_nvml", gpu=gpu.label))
            else:
                others.append(gpu)
            continue
        seen.add(bus)
        combined, note = _merge_one(gpu, found)
        merged.append(combined)
        if note:
            notes.append(note)
    for bus, gpu in by_bus.items():
        if bus not in seen:
            notes.append(Reason.of("gpu_seen_by_nvml_only", gpu=gpu.label))
            merged.append(gpu)
    merged.sort(key=lambda g: g.index)
    first_other = max((g.index for g in merged), default=-1) + 1
    renumbered = [replace(g, index=first_other + i) for i, g in enumerate(others)]
    return (*merged, *renumbered), tuple(notes)


def _merge_one(kernel: Gpu, nvml: Gpu) -> tuple[Gpu, str | None]:
    """One GPU: kernel locality first, NVML identity; a note when the two disagree about the node."""
    note = None
    numa_node = kernel.numa_node
    local_cpus = kernel.local_cpus
    if kernel.numa_node is None and nvml.numa_node is not None:
        numa_node = nvml.numa_node
        local_cpus = nvml.local_cpus
    elif kernel.numa_node is not None and nvml.numa_node is not None and kernel.numa_node != nvml.numa_node:
        note = Reason.of(
            "gpu_nodes_disagree", gpu=kernel.label, kernel_node=kernel.numa_node, nvml_node=nvml.numa_node
        )
        logger.warning(note)
    migs = tuple(MigDevice(uuid=m.uuid, parent_index=nvml.index, gi=m.gi, ci=m.ci) for m in nvml.mig_devices)
    gpu = replace(
        kernel,
        index=nvml.index,
        uuid=nvml.uuid or kernel.uuid,
        name=nvml.name or kernel.name,
        numa_node=numa_node,
        local_cpus=local_cpus,
        memory_node=nvml.memory_node if nvml.memory_node is not None else kernel.memory_node,
        affinity_nodes=nvml.affinity_nodes,
        mig_devices=migs or kernel.mig_devices,
        notes=(*kernel.notes, *nvml.notes, *((note,) if note else ())),
    )
    return gpu, note
