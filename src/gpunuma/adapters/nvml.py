"""Topology from NVML (pynvml): GPU identity, MIG, and NVML's view of each GPU's locality.

Node CPU lists, CPUs and the process's allowed sets always come from the kernel (a sysfs
source); NVML only says which CPUs and memory nodes are near each GPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from gpunuma.core.cpuset import CpuSet, node_list
from gpunuma.core.model import Gpu, MigDevice, Topology
from gpunuma.core.pci import BusId, normalize_bus_id
from gpunuma.core.plan import Allowed
from gpunuma.core.ports import TopologySource
from gpunuma.core.reasons import Reason
from gpunuma.errors import NvmlError, quoted

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: NVML codes that make one field unknown rather than the whole read fail.
_FIELD_CODES = {"NOT_SUPPORTED": 3, "NO_PERMISSION": 4, "FUNCTION_NOT_FOUND": 13}

_HINTS = {
    12: "the NVIDIA driver's libnvidia-ml.so.1 is not installed or not on the loader path",
    9: "the NVIDIA kernel driver is not loaded (nvidia-smi would fail too)",
    4: "this user may not open the NVIDIA devices",
    18: "the NVML library and the kernel driver are different versions (reboot or reinstall the driver)",
}


def _error_name(err: BaseException) -> str:
    """``NVMLError_NotSupported`` -> ``NotSupported`` (the name both pynvml and the fake use)."""
    return type(err).__name__.removeprefix("NVMLError_")


@dataclass(frozen=True, slots=True)
class NvmlGpus:
    """What NVML reports: GPUs (with NVML's own locality) and notes about unreadable devices."""

    gpus: tuple[Gpu, ...]
    notes: tuple[str, ...]


class _Session:
    """One NVML read: wraps calls so that per-field failures become notes on the GPU."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self.field_codes = {getattr(nvml, f"NVML_ERROR_{name}", code) for name, code in _FIELD_CODES.items()}

    def call(self, notes: list[str], function: str, *args: Any, default: T | None = None) -> Any:
        """``nvml.<function>(*args)``; a per-field NVML failure adds a note and returns ``default``."""
        try:
            return getattr(self.nvml, function)(*args)
        except self.nvml.NVMLError as err:
            if getattr(err, "value", None) in self.field_codes:
                notes.append(Reason.of("nvml_field_failed", function=function, error=_error_name(err)))
                return default
            raise NvmlError(f"NVML {function} failed: {_error_name(err)} ({err})", code=err.value) from err


class NvmlTopology:
    """A :class:`~gpunuma.core.ports.TopologySource` that reads GPUs through NVML.

    ``sysfs`` is the source of nodes, CPUs and :meth:`allowed`; ``nvml`` is the ``pynvml`` module or a
    stand-in with its names (None: ``pynvml``, imported on first use).
    """

    name = "nvml"

    def __init__(self, *, sysfs: TopologySource, nvml: Any | None = None) -> None:
        self.sysfs = sysfs
        self._nvml = nvml

    @property
    def nvml(self) -> Any:
        """The injected NVML module, or ``pynvml`` imported on first use."""
        if self._nvml is None:
            self._nvml = import_pynvml()
        return self._nvml

    # -- port -------------------------------------------------------------------------
    def read(self) -> Topology:
        """Nodes and CPUs from the kernel, NVIDIA GPUs from NVML."""
        base = self.sysfs.read()
        found = self.read_gpus(base)
        # NVML knows no PCIe ancestry: the kernel's, matched by bus id, places the GPU among the NICs.
        paths = {normalize_bus_id(gpu.pci_bus_id): gpu.pci_path for gpu in base.gpus}
        gpus = tuple(replace(gpu, pci_path=paths.get(gpu.pci_bus_id, ())) for gpu in found.gpus)
        return replace(base, gpus=gpus, source=self.name, notes=(*base.notes, *found.notes))

    def allowed(self) -> Allowed:
        """The kernel's cpuset and affinity for this process (NVML does not know them)."""
        return self.sysfs.allowed()

    def read_gpus(self, base: Topology) -> NvmlGpus:
        """Every GPU NVML sees, its locality interpreted against ``base``'s nodes (:func:`read_nvml_gpus`)."""
        return read_nvml_gpus(self.nvml, base)


def import_pynvml() -> Any:
    """``pynvml``, an optional dependency: a missing one is an :class:`~gpunuma.errors.NvmlError`."""
    try:
        import pynvml
    except ImportError as err:
        raise NvmlError("pynvml is not installed: pip install gpunuma[nvml]") from err
    return pynvml


def read_nvml_gpus(nvml: Any, base: Topology) -> NvmlGpus:
    """Every GPU ``nvml`` (``pynvml`` or a stand-in) sees, its locality interpreted against ``base``'s nodes.

    Initialises NVML once and always shuts it down, also when a call fails.
    """
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as err:
        code = getattr(err, "value", None)
        hint = _HINTS.get(code, "NVML could not start") if isinstance(code, int) else "NVML could not start"
        raise NvmlError(f"nvmlInit failed: {_error_name(err)} (code {code}): {hint}", code=code) from err
    try:
        return _read_devices(_Session(nvml), base)
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError as err:
            # A failing shutdown must not hide the read's own result or error.
            logger.debug("nvmlShutdown failed: %s", err)


# -- per device -------------------------------------------------------------------
def _read_devices(session: _Session, base: Topology) -> NvmlGpus:
    top_notes: list[str] = []
    count = session.call(top_notes, "nvmlDeviceGetCount", default=0)
    gpus: list[Gpu] = []
    for index in range(count):
        notes: list[str] = []
        handle = session.call(notes, "nvmlDeviceGetHandleByIndex", index)
        pci = session.call(notes, "nvmlDeviceGetPciInfo", handle) if handle is not None else None
        if pci is None:
            top_notes.append(Reason.of("nvml_gpu_skipped", index=index, why="; ".join(notes)))
            continue
        text = _text(pci.busId) or _text(pci.busIdLegacy) or ""
        bus = BusId.parse(text)
        if bus is None:
            top_notes.append(Reason.of("nvml_bus_id_malformed", index=index, text=quoted(text)))
            continue
        gpus.append(_read_device(session, base, index, handle, bus, notes))
    return NvmlGpus(tuple(gpus), tuple(top_notes))


def _read_device(session: _Session, base: Topology, index: int, handle: Any, bus: BusId, notes: list[str]) -> Gpu:
    nvml = session.nvml
    uuid = _text(session.call(notes, "nvmlDeviceGetUUID", handle))
    name = _text(session.call(notes, "nvmlDeviceGetName", handle))
    memory_node = session.call(notes, "nvmlDeviceGetNumaNodeId", handle)
    cpu_words = max(1, (max(base.all_cpus, default=0) + 64) // 64)
    node_words = max(1, (max((n.id for n in base.nodes), default=0) + 64) // 64)
    local = _affinity(session, handle, cpu_words, notes)
    memory_words = session.call(
        notes, "nvmlDeviceGetMemoryAffinity", handle, node_words, nvml.NVML_AFFINITY_SCOPE_NODE
    )
    affinity_nodes = tuple(CpuSet.from_nvml_words(list(memory_words))) if memory_words is not None else ()
    numa_node = _cpu_node(base, local, notes)
    return Gpu(
        index=index,
        pci_bus_id=bus.sysfs,
        uuid=uuid,
        vendor="nvidia",
        numa_node=numa_node,
        local_cpus=local,
        memory_node=memory_node if isinstance(memory_node, int) and memory_node >= 0 else None,
        affinity_nodes=affinity_nodes,
        mig_devices=_mig_devices(session, handle, index, notes),
        name=name,
        notes=tuple(notes),
    )


def _text(value: str | bytes | None) -> str | None:
    # pynvml before 11.515 returns bytes for strings and char-array fields.
    if isinstance(value, bytes):
        return value.decode(errors="replace").rstrip("\x00")
    return value


def _affinity(session: _Session, handle: Any, words: int, notes: list[str]) -> CpuSet | None:
    """NVML's node-scope CPU affinity; falls back to the unscoped call on drivers that lack the scoped one."""
    nvml = session.nvml
    raw = session.call(notes, "nvmlDeviceGetCpuAffinityWithinScope", handle, words, nvml.NVML_AFFINITY_SCOPE_NODE)
    if raw is None:
        raw = session.call(notes, "nvmlDeviceGetCpuAffinity", handle, words)
    if raw is None:
        return None
    return CpuSet.from_nvml_words([int(word) for word in raw])


def _cpu_node(base: Topology, local: CpuSet | None, notes: list[str]) -> int | None:
    """The one CPU node that holds every CPU NVML calls local, or None with the reason noted."""
    if local is None:
        notes.append(Reason.of("nvml_no_affinity"))
        return None
    every = base.all_cpus
    cpus = local & every
    if not cpus:
        notes.append(Reason.of("nvml_affinity_off_nodes", cpus=local.to_list()))
        return None
    if every <= cpus:
        # Seen on VMs without ACPI proximity data: NVML then reports every CPU.
        notes.append(Reason.of("nvml_affinity_everything"))
        return None
    touched = [node.id for node in base.cpu_nodes if not node.cpus.isdisjoint(cpus)]
    if len(touched) != 1:
        notes.append(Reason.of("nvml_affinity_spans", nodes=node_list(touched)))
        return None
    return touched[0]


def _mig_devices(session: _Session, handle: Any, index: int, notes: list[str]) -> tuple[MigDevice, ...]:
    mode = session.call(notes, "nvmlDeviceGetMigMode", handle)
    if not mode or int(mode[0]) != getattr(session.nvml, "NVML_DEVICE_MIG_ENABLE", 1):
        return ()
    slots = session.call(notes, "nvmlDeviceGetMaxMigDeviceCount", handle, default=0)
    devices: list[MigDevice] = []
    nvml = session.nvml
    for slot in range(slots):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except nvml.NVMLError as err:
            if err.value == getattr(nvml, "NVML_ERROR_NOT_FOUND", 6):
                continue  # an empty slot
            notes.append(Reason.of("nvml_mig_slot_failed", slot=slot, error=_error_name(err)))
            continue
        uuid = _text(session.call(notes, "nvmlDeviceGetUUID", mig))
        if uuid is not None:
            devices.append(MigDevice(uuid=uuid, parent_index=index))
    return tuple(devices)
