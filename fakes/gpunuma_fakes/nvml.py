"""A fake ``pynvml`` for a simulated :class:`~gpunuma_fakes.spec.Machine`.

:class:`FakeNvml` exposes the names of the real ``pynvml`` module that gpunuma uses, with
the same return shapes (str UUIDs, a PCI info object with ``busId``/``busIdLegacy``, ctypes
arrays of unsigned 64-bit affinity words, which index but have no ``__iter__``) and the same
error behaviour (``NVMLError(value)`` yields the
matching ``NVMLError_*`` subclass). It records init/shutdown and call counts so tests can
assert on them. It is picklable, so it can travel into a Ray actor.
"""

from __future__ import annotations

import ctypes
import types
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.pci import BusId, parse_bus_id

if TYPE_CHECKING:  # spec builds this module's objects: it imports this module
    from gpunuma_fakes.spec import GpuSpec, Machine

# -- constants and errors, named and numbered as in pynvml -------------------------------
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_IN_USE = 19
NVML_ERROR_MEMORY = 20
NVML_ERROR_NO_DATA = 21
NVML_ERROR_UNKNOWN = 999

NVML_AFFINITY_SCOPE_NODE = 0
NVML_AFFINITY_SCOPE_SOCKET = 1

NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1

_ERROR_CODES: dict[str, int] = {
    name: value for name, value in list(globals().items()) if name.startswith("NVML_ERROR_")
}

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """NVML's error: ``NVMLError(3)`` is an ``NVMLError_NotSupported`` whose ``.value`` is 3."""

    _value_class: dict[int, type[NVMLError]] = {}
    value: int

    def __new__(cls, value: int) -> NVMLError:  # noqa: D102 - mirrors pynvml
        if cls is NVMLError:
            cls = NVMLError._value_class.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value: int) -> None:
        super().__init__(value)

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (NVMLError, (self.value,))


def _class_name(constant: str) -> str:
    # NVML_ERROR_DRIVER_NOT_LOADED -> NVMLError_DriverNotLoaded, as pynvml names them.
    words = constant.removeprefix("NVML_ERROR_").split("_")
    return "NVMLError_" + "".join(word.capitalize() for word in words)


def _make_error_class(constant: str, value: int) -> type[NVMLError]:
    def new(cls: type[NVMLError], *args: object) -> NVMLError:
        return NVMLError.__new__(cls, value)

    name = _class_name(constant)
    cls = type(name, (NVMLError,), {"__new__": new, "__module__": __name__, "__qualname__": name})
    NVMLError._value_class[value] = cls
    return cls


for _constant, _value in _ERROR_CODES.items():
    globals()[_class_name(_constant)] = _make_error_class(_constant, _value)

ERROR_CLASS_NAMES: tuple[str, ...] = tuple(_class_name(c) for c in _ERROR_CODES)
_CODE_OF_CLASS = {_class_name(constant): value for constant, value in _ERROR_CODES.items()}


def error_code(class_name: str) -> int:
    """NVML's code for an error class name as pynvml spells it (``NVMLError_NotSupported`` -> 3); Unknown else."""
    return _CODE_OF_CLASS.get(class_name, NVML_ERROR_UNKNOWN)

#: Named failure modes (``FakeNvml(machine, failure=...)``).
FAILURES = ("library_not_found", "driver_not_loaded", "no_numa_id", "no_scope_affinity")

#: Slots a MIG-enabled fake GPU offers (H100/A100 allow up to 7 instances).
MAX_MIG_DEVICES = 7

@dataclass(frozen=True)
class FakeHandle:
    """An opaque device handle: a physical GPU (``mig`` None) or one of its MIG devices."""

    index: int
    mig: int | None = None


@dataclass(frozen=True)
class FakePciInfo:
    """The fields of ``nvmlPciInfo_t`` gpunuma reads (``busId`` is ``%08X:%02X:%02X.%X``)."""

    busId: str | bytes  # noqa: N815 - NVML's field name
    busIdLegacy: str | bytes  # noqa: N815 - NVML's field name
    domain: int
    bus: int
    device: int


class FakeNvml:
    """The ``pynvml`` calls gpunuma uses, answering for ``machine``'s NVIDIA GPUs.

    ``failure`` picks a named failure mode (see :data:`FAILURES`); ``failures`` maps a function
    name (``"nvmlDeviceGetMemoryAffinity"``, ``"nvmlInit"``...) to the NVML error code it
    raises on every call. ``bytes_strings=True`` returns bytes like pynvml before 11.515.
    A machine without NVIDIA GPUs has no driver: ``nvmlInit`` raises LibraryNotFound.
    MIG device handles answer UUID, name and parent queries only (PCI and affinity are
    queried on the parent, as on real hardware).
    """

    NVMLError = NVMLError

    def __init__(
        self,
        machine: Machine,
        *,
        failure: str | None = None,
        failures: Mapping[str, int] | None = None,
        bytes_strings: bool = False,
    ) -> None:
        if failure is not None and failure not in FAILURES:
            raise ValueError(f"unknown failure mode {failure!r}; known: {', '.join(FAILURES)}")
        self.machine = machine
        self.failure = failure
        self.failures = dict(failures or {})
        self.bytes_strings = bytes_strings
        # NVML in a container enumerates only the GPUs the runtime gave it.
        self.devices: tuple[GpuSpec, ...] = tuple(g for g in machine.visible_gpus() if g.vendor == "nvidia")
        #: Successful ``nvmlInit`` calls, ``nvmlShutdown`` calls, and every call by name.
        self.init_count = 0
        self.shutdown_count = 0
        self.calls: Counter[str] = Counter()
        self._refcount = 0
        for name in ERROR_CLASS_NAMES:
            setattr(self, name, globals()[name])
        for name, value in _ERROR_CODES.items():
            setattr(self, name, value)
        self.NVML_SUCCESS = NVML_SUCCESS
        self.NVML_AFFINITY_SCOPE_NODE = NVML_AFFINITY_SCOPE_NODE
        self.NVML_AFFINITY_SCOPE_SOCKET = NVML_AFFINITY_SCOPE_SOCKET
        self.NVML_DEVICE_MIG_DISABLE = NVML_DEVICE_MIG_DISABLE
        self.NVML_DEVICE_MIG_ENABLE = NVML_DEVICE_MIG_ENABLE

    # -- bookkeeping ------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        """Whether NVML is initialised now (the refcount is above zero)."""
        return self._refcount > 0

    @property
    def refcount(self) -> int:
        """Outstanding ``nvmlInit`` calls not yet matched by ``nvmlShutdown``."""
        return self._refcount

    def _enter(self, function: str, *, needs_init: bool = True) -> None:
        self.calls[function] += 1
        code = self.failures.get(function)
        if code is not None:
            raise NVMLError(code)
        if needs_init and not self.initialized:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def _text(self, value: str) -> str | bytes:
        return value.encode() if self.bytes_strings else value

    def _device(self, handle: object) -> GpuSpec:
        if not isinstance(handle, FakeHandle) or not 0 <= handle.index < len(self.devices):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self.devices[handle.index]

    def _physical(self, handle: object) -> GpuSpec:
        gpu = self._device(handle)
        assert isinstance(handle, FakeHandle)
        if handle.mig is not None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return gpu

    # -- init -------------------------------------------------------------------------
    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's name
        """Initialise (refcounted). Raises LibraryNotFound/DriverNotLoaded per the failure mode."""
        self._enter("nvmlInit", needs_init=False)
        if self.failure == "library_not_found" or not self.devices:
            raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
        if self.failure == "driver_not_loaded":
            raise NVMLError(NVML_ERROR_DRIVER_NOT_LOADED)
        self._refcount += 1
        self.init_count += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        """Drop one init reference; Uninitialized when none is held."""
        self._enter("nvmlShutdown")
        self._refcount -= 1
        self.shutdown_count += 1

    # -- enumeration ------------------------------------------------------------------
    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        self._enter("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:  # noqa: N802
        self._enter("nvmlDeviceGetHandleByIndex")
        if not isinstance(index, int) or not 0 <= index < len(self.devices):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return FakeHandle(index)

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> FakeHandle:  # noqa: N802
        """Full GPU or MIG UUIDs only: a prefix raises NotFound, as real NVML does."""
        self._enter("nvmlDeviceGetHandleByUUID")
        text = uuid.decode() if isinstance(uuid, bytes) else uuid
        for index, gpu in enumerate(self.devices):
            if gpu.uuid == text:
                return FakeHandle(index)
            if text in gpu.mig_uuids:
                return FakeHandle(index, gpu.mig_uuids.index(text))
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str | bytes) -> FakeHandle:  # noqa: N802
        """Accepts the 8- or 4-digit-domain form in either case."""
        self._enter("nvmlDeviceGetHandleByPciBusId")
        wanted = BusId.parse(bus_id)
        if wanted is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        for index, gpu in enumerate(self.devices):
            if BusId.parse(gpu.bus_id) == wanted:
                return FakeHandle(index)
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    # -- identity ---------------------------------------------------------------------
    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str | bytes:  # noqa: N802
        self._enter("nvmlDeviceGetUUID")
        gpu = self._device(handle)
        if handle.mig is not None:
            return self._text(gpu.mig_uuids[handle.mig])
        return self._text(gpu.uuid)

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str | bytes:  # noqa: N802
        self._enter("nvmlDeviceGetName")
        gpu = self._device(handle)
        return self._text(gpu.name if handle.mig is None else f"{gpu.name} MIG")

    def nvmlDeviceGetPciInfo(self, handle: FakeHandle) -> FakePciInfo:  # noqa: N802
        self._enter("nvmlDeviceGetPciInfo")
        gpu = self._physical(handle)
        bus = parse_bus_id(gpu.bus_id)
        return FakePciInfo(
            busId=self._text(bus.nvml),
            busIdLegacy=self._text(bus.legacy),
            domain=bus.domain,
            bus=bus.bus,
            device=bus.device,
        )

    # -- locality ---------------------------------------------------------------------
    def nvmlDeviceGetNumaNodeId(self, handle: FakeHandle) -> int:  # noqa: N802
        """The GPU-memory node on coherent platforms; NotSupported elsewhere."""
        self._enter("nvmlDeviceGetNumaNodeId")
        gpu = self._physical(handle)
        if self.failure == "no_numa_id" or gpu.nvml_numa_node is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return gpu.nvml_numa_node

    def _cpu_affinity(self, gpu: GpuSpec) -> CpuSet:
        return self.machine.gpu_nvml_cpus(gpu)

    def _memory_affinity(self, gpu: GpuSpec) -> CpuSet:
        return self.machine.gpu_nvml_nodes(gpu)

    @staticmethod
    def _words(bits: CpuSet, size: int, scope: int) -> ctypes.Array[ctypes.c_ulong]:
        """The words as pynvml returns them: a ctypes array of ``size`` unsigned longs."""
        scopes = (NVML_AFFINITY_SCOPE_NODE, NVML_AFFINITY_SCOPE_SOCKET)
        if not isinstance(size, int) or size <= 0 or scope not in scopes:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        # NVML fills only the words the caller made room for.
        words = CpuSet.of(b for b in bits if b < 64 * size).to_nvml_words(size)
        return (ctypes.c_ulong * size)(*words)

    def _socket_cpus(self, cpus: CpuSet) -> CpuSet:
        packages = {self.machine.cpu_layout(cpu)[0] for cpu in cpus}
        return CpuSet.of(c for c in self.machine.all_cpus() if self.machine.cpu_layout(c)[0] in packages)

    def nvmlDeviceGetCpuAffinityWithinScope(  # noqa: N802
        self, handle: FakeHandle, size: int, scope: int
    ) -> ctypes.Array[ctypes.c_ulong]:
        self._enter("nvmlDeviceGetCpuAffinityWithinScope")
        if self.failure == "no_scope_affinity":
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
        cpus = self._cpu_affinity(self._physical(handle))
        if scope == NVML_AFFINITY_SCOPE_SOCKET:
            cpus = self._socket_cpus(cpus)
        return self._words(cpus, size, scope)

    def nvmlDeviceGetCpuAffinity(self, handle: FakeHandle, size: int) -> ctypes.Array[ctypes.c_ulong]:  # noqa: N802
        """Node-scope CPU affinity, the call that predates the scoped variant."""
        self._enter("nvmlDeviceGetCpuAffinity")
        cpus = self._cpu_affinity(self._physical(handle))
        return self._words(cpus, size, NVML_AFFINITY_SCOPE_NODE)

    def nvmlDeviceGetMemoryAffinity(self, handle: FakeHandle, size: int, scope: int) -> ctypes.Array[ctypes.c_ulong]:  # noqa: N802
        self._enter("nvmlDeviceGetMemoryAffinity")
        gpu = self._physical(handle)
        nodes = self._memory_affinity(gpu)
        if scope == NVML_AFFINITY_SCOPE_SOCKET:
            cpus = self._socket_cpus(self._cpu_affinity(gpu))
            nodes = CpuSet.of(n.id for n in self.machine.nodes if CpuSet.parse_list(n.cpus) & cpus) | nodes
        return self._words(nodes, size, scope)

    # -- MIG --------------------------------------------------------------------------
    def nvmlDeviceGetMigMode(self, handle: FakeHandle) -> list[int]:  # noqa: N802
        """``[current, pending]``: enabled when the spec lists MIG devices."""
        self._enter("nvmlDeviceGetMigMode")
        gpu = self._physical(handle)
        mode = NVML_DEVICE_MIG_ENABLE if gpu.mig_uuids else NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: FakeHandle) -> int:  # noqa: N802
        self._enter("nvmlDeviceGetMaxMigDeviceCount")
        gpu = self._physical(handle)
        return MAX_MIG_DEVICES if gpu.mig_uuids else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: FakeHandle, index: int) -> FakeHandle:  # noqa: N802
        """Empty slots raise NotFound, as on real MIG GPUs with fewer instances than slots."""
        self._enter("nvmlDeviceGetMigDeviceHandleByIndex")
        gpu = self._physical(handle)
        if not gpu.mig_uuids or not 0 <= index < MAX_MIG_DEVICES:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if index >= len(gpu.mig_uuids):
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return FakeHandle(handle.index, index)

    def nvmlDeviceIsMigDeviceHandle(self, handle: FakeHandle) -> int:  # noqa: N802
        self._enter("nvmlDeviceIsMigDeviceHandle")
        self._device(handle)
        return int(handle.mig is not None)

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: FakeHandle) -> FakeHandle:  # noqa: N802
        self._enter("nvmlDeviceGetDeviceHandleFromMigDeviceHandle")
        self._device(handle)
        if handle.mig is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return FakeHandle(handle.index)

    # -- module form ------------------------------------------------------------------
    def as_module(self, name: str = "pynvml") -> types.ModuleType:
        """A module object with this fake's names, for code that must find it in ``sys.modules``.

        Its functions are this instance's bound methods, so the instance keeps recording.
        """
        module = types.ModuleType(name, "Fake pynvml for simulated machine " + self.machine.name)
        for attr in dir(self):
            if attr.startswith(("nvml", "NVML")):
                setattr(module, attr, getattr(self, attr))
        return module
