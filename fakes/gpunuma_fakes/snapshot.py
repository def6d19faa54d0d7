"""A captured host as a simulated machine: ``load_snapshot(path)`` gives what the catalogue gives.

``path`` is a ``gpunuma snapshot`` archive, an ``hwloc-gather-topology`` archive or an unpacked tree.
The result holds the host's kernel tree (``tree``, held in memory and read by the real sysfs adapter), a fake ``pynvml
that answers exactly what the host's NVML recorded in ``nvml.json`` (``nvml()``: values, and errors
with their NVML codes) and the simulated kernel over the host's topology and cgroup (``kernel()``).
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from gpunuma.adapters.auto import AutoTopology
from gpunuma.adapters.nvml import NvmlTopology
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.filetree import FileTree
from gpunuma.core.model import Gpu, Topology
from gpunuma.core.pci import normalize_bus_id
from gpunuma.core.plan import Allowed
from gpunuma.core.ports import TopologySource
from gpunuma.core.reasons import Reason
from gpunuma.errors import CpuSetParseError, SnapshotError
from gpunuma.tools.archive import NVML_RECORD, open_tree
from gpunuma.tools.nvml_record import MAX_BYTES, parse_record
from gpunuma_fakes.kernel import SimulatedKernel
from gpunuma_fakes.nvml import (
    NVML_AFFINITY_SCOPE_SOCKET,
    NVML_ERROR_FUNCTION_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
    FakeHandle,
    FakeNvml,
    NVMLError,
    error_code,
)
from gpunuma_fakes.render import write_tree
from gpunuma_fakes.spec import GpuSpec

#: Names a captured host's archive may have.
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")
#: Bus id of a GPU whose PCI info NVML refused: never matched, the recorded error answers instead.
_NO_BUS = "ffff:ff:1f.7"


def _stem(path: Path) -> str:
    for suffix in ARCHIVE_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.name


@dataclass(frozen=True)
class Snapshot:
    """A captured host: its kernel files (``tree``, held in memory) and NVML's recorded answers (``record``)."""

    name: str
    tree: FileTree
    #: The archive or folder it was read from (what ``GPUNUMA_SIMULATE`` names to read it again).
    origin: str
    #: ``nvml.json`` as recorded (``{"error": ...}`` when NVML did not start there or nothing was recorded).
    record: Mapping[str, Any] = field(default_factory=dict)
    #: What opening it left out (links leaving the tree...).
    notes: tuple[Reason, ...] = ()

    @property
    def description(self) -> str:
        return f"captured host {self.name} ({self.tree.root})"

    # -- what the adapters read ----------------------------------------------------------------
    def topology(self) -> Topology:
        """The topology the sysfs adapter reads from the captured tree."""
        return SysfsTopology(root=self.tree).read()

    def allowed(self) -> Allowed:
        """What the capturing process was allowed (its cgroup cpuset and affinity), as the adapter reads it."""
        return SysfsTopology(root=self.tree).allowed()

    # -- the simulated machine -----------------------------------------------------------------------
    @cached_property
    def _devices(self) -> tuple[tuple[GpuSpec, Mapping[str, Any]], ...]:
        return tuple((_spec(gpu), gpu) for gpu in _gpu_records(self.record))

    def sorted_gpus(self) -> tuple[GpuSpec, ...]:
        """NVML's GPUs in its index order, as :class:`~gpunuma_fakes.nvml.FakeNvml` enumerates them."""
        return tuple(spec for spec, _ in self._devices)

    def visible_gpus(self) -> tuple[GpuSpec, ...]:
        """The GPUs the capturing process could open: the ones its NVML enumerated."""
        return self.sorted_gpus()

    def nvml(self, **options: Any) -> RecordedNvml:
        """A fake ``pynvml`` answering what this host's NVML answered (``FakeNvml`` options apply)."""
        return RecordedNvml(self, **options)

    def kernel(self, **options: Any) -> SimulatedKernel:
        """The simulated kernel over this host's topology and its capturing process's cgroup."""
        return SimulatedKernel(self.topology(), self.allowed(), **options)

    @property
    def gpus(self) -> tuple[Gpu, ...]:
        """The GPUs the kernel's files show (what a Ray node simulating this host offers)."""
        return self.topology().gpus

    def source(self, workdir: str | Path | None = None, kind: str = "auto", **nvml_options: Any) -> TopologySource:
        """The real ``kind`` adapter (``auto``, ``sysfs`` or ``nvml``) over the tree and the recorded NVML.

        The same call as :meth:`Machine.source <gpunuma_fakes.spec.Machine.source>`: with ``workdir``
        the tree is written there and read from disk (a test about files), else read in memory.
        ``nvml_options`` go to :class:`RecordedNvml`. Picklable.
        """
        if workdir is None:
            sysfs = SysfsTopology(root=self.tree)
        else:
            write_tree(self.tree, workdir)
            sysfs = SysfsTopology(root=workdir)
        if kind == "sysfs":
            return sysfs
        if kind == "nvml":
            return NvmlTopology(nvml=self.nvml(**nvml_options), sysfs=sysfs)
        if kind == "auto":
            return AutoTopology(nvml=self.nvml(**nvml_options), sysfs=sysfs)
        raise ValueError(f"unknown source kind {kind!r}; known: auto, nvml, sysfs")


def load_snapshot(path: str | Path) -> Snapshot:
    """The captured host at ``path`` (archive or folder), read into memory (nothing is unpacked to disk)."""
    captured = open_tree(path)
    tree = captured.tree
    assert isinstance(tree, FileTree), "open_tree reads every tree into memory"
    return Snapshot(
        name=_stem(Path(path)), tree=tree, origin=captured.origin, record=_read_record(tree), notes=captured.notes
    )


def _read_record(tree: FileTree) -> Mapping[str, Any]:
    """The snapshot's ``nvml.json``, every field checked (:func:`gpunuma.tools.nvml_record.parse_record`)."""
    path = f"{tree.root}/{NVML_RECORD}"
    try:
        text = tree.read(path, MAX_BYTES + 1, cut=True)
    except OSError as err:
        raise SnapshotError(f"{path}: cannot read the record of NVML's answers: {err.strerror or err}") from err
    if text is None:
        return {"error": "NVMLError_LibraryNotFound: the snapshot holds no NVML record"}
    return parse_record(text.encode("utf-8", "surrogateescape"), path)


def _gpu_records(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The GPUs NVML gave a handle for, in its index order (the record was checked: each index is 0..N-1, once)."""
    if "error" in record:
        return []
    return sorted((gpu for gpu in record.get("gpus", []) if "handle_error" not in gpu), key=lambda gpu: gpu["index"])


def _spec(gpu: Mapping[str, Any]) -> GpuSpec:
    """The device as FakeNvml enumerates it; its locality answers come from the record (RecordedNvml)."""
    bus = normalize_bus_id(gpu["bus_id"]) if "bus_id" in gpu else _NO_BUS
    migs = tuple(gpu.get("mig_devices", ()))
    return GpuSpec(bus_id=bus, uuid=str(gpu.get("uuid", "")), sysfs_numa_node=-1, name=str(gpu.get("name", "")),
                   mig_uuids=migs)


def _code(text: object) -> int:
    """``NVMLError_NotSupported: Not Supported`` -> 3, as the recording wrote it."""
    return error_code(str(text).split(":", 1)[0].strip())


class RecordedNvml(FakeNvml):
    """A fake ``pynvml`` that replays a host's recorded NVML answers: values as recorded, errors by code.

    A query the recording has no answer for raises NotSupported, as a driver without it would.
    """

    def __init__(self, snapshot: Snapshot, **options: Any) -> None:
        super().__init__(snapshot, **options)  # type: ignore[arg-type]
        self.record = snapshot.record
        self.answers = tuple(answers for _, answers in snapshot._devices)

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's name
        """Starts unless the host's NVML did not (its recorded error, with its code)."""
        if "error" in self.record:
            self._enter("nvmlInit", needs_init=False)
            raise NVMLError(_code(self.record["error"]))
        if self.devices or self.failure is not None:
            super().nvmlInit()
            return
        self._enter("nvmlInit", needs_init=False)  # NVML started on a host without GPUs
        self._refcount += 1
        self.init_count += 1

    def _answer(self, handle: object, key: str, fallback: str | None = None) -> Any:
        """The recorded answer of the physical GPU ``handle`` under ``key``, or its recorded error raised."""
        self._physical(handle)
        assert isinstance(handle, FakeHandle)
        answers = self.answers[handle.index]
        for name in (key, fallback):
            if name is None:
                continue
            if name in answers:
                return answers[name]
            if f"{name}_error" in answers:
                raise NVMLError(_code(answers[f"{name}_error"]))
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)

    def _recorded_cpus(self, handle: object, key: str, fallback: str | None = None) -> CpuSet:
        words = self._answer(handle, key, fallback)
        try:
            return CpuSet.from_nvml_words([int(word) for word in words])
        except (TypeError, ValueError, CpuSetParseError) as err:
            raise SnapshotError(f"recorded {key} {words!r} is not a list of 64-bit words") from err

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str | bytes:  # noqa: N802
        if handle.mig is None:
            self._enter("nvmlDeviceGetUUID")
            return self._text(str(self._answer(handle, "uuid")))
        return super().nvmlDeviceGetUUID(handle)

    def nvmlDeviceGetPciInfo(self, handle: FakeHandle) -> Any:  # noqa: N802
        info = super().nvmlDeviceGetPciInfo(handle)
        self._answer(handle, "bus_id", "pci")  # the recorded error when the host's NVML refused it
        return info

    def nvmlDeviceGetNumaNodeId(self, handle: FakeHandle) -> int:  # noqa: N802
        self._enter("nvmlDeviceGetNumaNodeId")
        return int(self._answer(handle, "numa_node_id"))

    def nvmlDeviceGetCpuAffinityWithinScope(  # noqa: N802
        self, handle: FakeHandle, size: int, scope: int
    ) -> ctypes.Array[ctypes.c_ulong]:
        self._enter("nvmlDeviceGetCpuAffinityWithinScope")
        if self.failure == "no_scope_affinity":
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
        key = "cpu_affinity_socket" if scope == NVML_AFFINITY_SCOPE_SOCKET else "cpu_affinity"
        return self._words(self._recorded_cpus(handle, key), size, scope)

    def nvmlDeviceGetCpuAffinity(self, handle: FakeHandle, size: int) -> ctypes.Array[ctypes.c_ulong]:  # noqa: N802
        self._enter("nvmlDeviceGetCpuAffinity")
        return self._words(self._recorded_cpus(handle, "cpu_affinity_unscoped", "cpu_affinity"), size, 0)

    def nvmlDeviceGetMemoryAffinity(self, handle: FakeHandle, size: int, scope: int) -> ctypes.Array[ctypes.c_ulong]:  # noqa: N802
        self._enter("nvmlDeviceGetMemoryAffinity")
        key = "memory_affinity_socket" if scope == NVML_AFFINITY_SCOPE_SOCKET else "memory_affinity_node"
        return self._words(self._recorded_cpus(handle, key), size, scope)

    def nvmlDeviceGetMigMode(self, handle: FakeHandle) -> list[int]:  # noqa: N802
        self._enter("nvmlDeviceGetMigMode")
        return [int(mode) for mode in self._answer(handle, "mig_mode")]
