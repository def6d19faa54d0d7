"""``gpunuma snapshot``: the kernel files gpunuma reads on this host, and NVML's answers, in one small archive.

Attach the archive to a bug report: ``gpunuma topo/plan/check --root FILE`` reads it as the host's
kernel, and ``--simulate FILE`` replays the host with its NVML answers, on any machine.

What it holds, and nothing else (no environment, no other process, no command lines):

* ``sys/devices/system/node``: the node lists, each node's CPUs, distances and memory size;
* ``sys/devices/system/cpu``: the CPU lists, each CPU's ``online`` flag, topology and cache files;
* ``sys/bus/pci/devices/*``: each PCI function's class, ids, NUMA node and local CPUs, kept where
  the kernel shows them (``sys/devices/pci*/...``, with the bus's links), so the PCIe tree survives;
* ``sys/class/infiniband/*``: each RDMA device's link, its ports' link layer and state, its
  ``device`` link and the names of its network interfaces (``net/*/type``);
* ``proc/self/{status,cgroup}`` and each thread's ``status`` of the ``gpunuma snapshot`` process
  itself, ``proc/meminfo``, and the cpuset files of its cgroups under ``sys/fs/cgroup``;
* ``proc/driver/nvidia/gpus/*/information`` (and ``numa_status`` where the GPU's memory is a NUMA node) and
  ``proc/driver/nvidia/version``;
* the names of the GPU device nodes the process can open (``dev/nvidiactl``, ``dev/nvidiaN``,
  ``dev/kfd``, ``dev/dri/renderDN``, as empty files: a container holds only its own) and each
  PCI function's ``drm/renderDN/dev``;
* ``nvml.json``: per GPU, what NVML answered (index, UUID, bus id, NUMA node id or its error,
  CPU and memory affinity, MIG devices), or why NVML did not start (its format, and the check a replay
  makes of every field: :mod:`gpunuma.tools.nvml_record`);
* ``gpunuma.json``: the format version, the gpunuma version, the kernel release, unreadable files.

The layout is that of ``hwloc-gather-topology``: one top folder holding ``sys/`` and ``proc/``.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from gpunuma import __version__
from gpunuma.adapters.procfs import parse_cpulist, read_text
from gpunuma.core.numbers import digits
from gpunuma.errors import SnapshotError
from gpunuma.tools.archive import NVML_RECORD
from gpunuma.tools.writing import replacing

#: Version of the archive layout and of ``nvml.json``; readers accept this and older.
FORMAT = 1
#: The metadata file beside ``sys/`` and ``proc/``.
META = "gpunuma.json"

_Mode = Literal["w:gz", "w:bz2", "w:xz"]
#: Archive suffix -> how it is written.
_COMPRESSION: dict[str, _Mode] = {
    ".tar.gz": "w:gz", ".tgz": "w:gz", ".tar.bz2": "w:bz2", ".tbz2": "w:bz2", ".tar.xz": "w:xz", ".txz": "w:xz",
}
#: Kernel files are at most a page or two; anything larger is not one gpunuma reads.
_MAX_READ = 1 << 20

_NODE_LISTS = ("possible", "online", "has_cpu", "has_memory", "has_normal_memory")
_NODE_FILES = ("cpulist", "cpumap", "distance", "meminfo")
_CPU_LISTS = ("possible", "present", "online", "offline", "kernel_max")
_CACHE_FILES = ("level", "type", "shared_cpu_list", "shared_cpu_map", "size", "id")
_PCI_FILES = ("class", "vendor", "device", "numa_node", "local_cpulist", "local_cpus", "product_name")
_PORT_FILES = ("link_layer", "state")
_CGROUP_MOUNTS = ("sys/fs/cgroup", "sys/fs/cgroup/unified", "sys/fs/cgroup/cpuset")
_CGROUP_FILES = (
    "cpuset.cpus.effective",
    "cpuset.mems.effective",
    "cpuset.cpus",
    "cpuset.mems",
    "cpuset.effective_cpus",
    "cpuset.effective_mems",
)
_NUMBERED = re.compile(r"^(cpu|node|index)[0-9]+$")
#: The device nodes that say which GPUs the process can open (recorded by name, never opened).
_GPU_NODES = re.compile(r"^(nvidiactl|nvidia[0-9]+|kfd|dri/(card|renderD)[0-9]+)$")
_DRM_NODE = re.compile(r"^(card|renderD)[0-9]+$")


@dataclass(frozen=True)
class SnapshotSummary:
    """What ``write_snapshot`` wrote: the archive, its file count and size, and what NVML said."""

    path: Path
    files: int
    size: int
    gpus: int
    nvml_error: str | None
    unreadable: tuple[str, ...]


def write_snapshot(
    output: str | os.PathLike[str], *, root: str | os.PathLike[str] = "/", nvml: Any | None = None
) -> SnapshotSummary:
    """Write the snapshot of the machine under ``root`` (``/``: this host) to ``output`` (``.tar.gz/.bz2/.xz``).

    ``nvml`` is the ``pynvml`` module or a stand-in (None: import ``pynvml``; NVML that does not start
    is recorded as such). Written through :func:`gpunuma.tools.writing.replacing`: ``output`` gets the whole
    archive or is left as it was, nothing is written through a link, and a folder or a link with that name is a
    :class:`~gpunuma.errors.FileWriteError`.
    """
    target = Path(output)
    mode = _mode(target)
    base = Path(root)
    if not (base / "sys/devices/system/cpu").is_dir():
        raise SnapshotError(f"{base / 'sys/devices/system/cpu'}: no sysfs CPU directory to capture")
    top = _top_name(target)
    files: dict[str, bytes] = {}
    unreadable: list[str] = []
    links: dict[str, str] = {}
    for relative in _wanted(base, links):
        data = _read(base / relative)
        if data is None:
            unreadable.append(relative)
        else:
            files[relative] = data
    record = record_nvml(nvml, cpu_words=_words(base, "sys/devices/system/cpu/possible"),
                         node_words=_words(base, "sys/devices/system/node/possible"))
    for node in _device_nodes(base):
        files[f"dev/{node}"] = b""
    files[NVML_RECORD] = _json(record)
    files[META] = _json(_meta(base, unreadable))
    with replacing(target) as handle:
        size = _write_archive(handle, target.name, mode, top, files, links)
    return SnapshotSummary(
        path=target,
        files=len(files),
        size=size,
        gpus=len(record.get("gpus", ())),
        nvml_error=record.get("error"),
        unreadable=tuple(unreadable),
    )


def _write_archive(
    handle: BinaryIO, name: str, mode: _Mode, top: str, files: dict[str, bytes], links: dict[str, str]
) -> int:
    """The archive of ``files`` and ``links`` under ``top/``, written to ``handle``; its size in bytes."""
    # The name goes into a gzip header: the archive's own, not the temporary file's.
    with tarfile.open(name, mode, fileobj=handle) as tar:
        now = int(time.time())
        for relative in sorted(files):
            info = tarfile.TarInfo(f"{top}/{relative}")
            info.size = len(files[relative])
            info.mtime = now
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(files[relative]))
        for relative, link_target in sorted(links.items()):
            info = tarfile.TarInfo(f"{top}/{relative}")
            info.type = tarfile.SYMTYPE
            info.linkname = link_target
            info.mtime = now
            tar.addfile(info)
    return handle.tell()


#: The names a snapshot may end with.
SNAPSHOT_SUFFIXES = tuple(_COMPRESSION)


def _mode(target: Path) -> _Mode:
    for suffix, mode in _COMPRESSION.items():
        if target.name.endswith(suffix):
            return mode
    raise SnapshotError(f"{target}: name the snapshot .tar.gz, .tar.bz2 or .tar.xz")


def _top_name(target: Path) -> str:
    """The archive's top folder: the file name without its suffix, in safe characters."""
    name = target.name
    for suffix in _COMPRESSION:
        name = name.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "snapshot"


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=1, sort_keys=True) + "\n").encode()


def _meta(base: Path, unreadable: list[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"format": FORMAT, "gpunuma": __version__, "unreadable": unreadable}
    if base.resolve() == Path("/"):
        uname = os.uname()
        meta["kernel"] = uname.release
        meta["machine"] = uname.machine
    return meta


def _read(path: Path) -> bytes | None:
    """A kernel file's bytes as a reader sees them, None when it cannot be read (gone, root-only)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(_MAX_READ)
    except OSError:
        return None


def _words(base: Path, relative: str) -> int:
    """64-bit words that hold every id of a sysfs list (``possible``), at least one."""
    path = base / relative
    text = read_text(path)
    if not text or not text.strip():
        return 1
    ids = parse_cpulist(path, text).ids
    return max(ids, default=0) // 64 + 1


# -- which files ------------------------------------------------------------------------------
def _names(folder: Path, keep: Callable[[str], bool] = lambda name: True) -> list[str]:
    try:
        return sorted(entry for entry in os.listdir(folder) if keep(entry))
    except OSError:
        return []


def _numbered(folder: Path, prefix: str) -> list[str]:
    return sorted(
        (name for name in _names(folder) if name.startswith(prefix) and _NUMBERED.match(name)),
        key=lambda name: int(name[len(prefix):]),
    )


def _existing(base: Path, relatives: Iterator[str] | list[str]) -> Iterator[str]:
    for relative in relatives:
        if (base / relative).is_file():
            yield relative


def _linked(base: Path, relative: str, links: dict[str, str]) -> str:
    """Where ``relative`` really is, relative to ``base``; a sysfs link into ``base`` is kept in ``links``."""
    path = base / relative
    devices = os.path.realpath(base / "sys/devices")
    resolved = os.path.realpath(path)
    if path.is_symlink() and resolved.startswith(devices + os.sep):
        links[relative] = os.readlink(path)
        return os.path.relpath(resolved, os.path.realpath(base))
    return relative


def _wanted(base: Path, links: dict[str, str]) -> list[str]:
    """Every file the snapshot takes from ``base``, relative to it; the sysfs links it keeps go to ``links``."""
    wanted: list[str] = []
    node = "sys/devices/system/node"
    wanted += _existing(base, [f"{node}/{name}" for name in _NODE_LISTS])
    for folder in _numbered(base / node, "node"):
        wanted += _existing(base, [f"{node}/{folder}/{name}" for name in _NODE_FILES])
    cpu = "sys/devices/system/cpu"
    wanted += _existing(base, [f"{cpu}/{name}" for name in _CPU_LISTS])
    for folder in _numbered(base / cpu, "cpu"):
        wanted += _existing(base, [f"{cpu}/{folder}/online"])
        topology = f"{cpu}/{folder}/topology"
        wanted += _existing(base, [f"{topology}/{name}" for name in _names(base / topology)])
        cache = f"{cpu}/{folder}/cache"
        for index in _numbered(base / cache, "index"):
            wanted += _existing(base, [f"{cache}/{index}/{name}" for name in _CACHE_FILES])
    pci = "sys/bus/pci/devices"
    for device in _names(base / pci):
        folder = _linked(base, f"{pci}/{device}", links)
        wanted += _existing(base, [f"{folder}/{name}" for name in _PCI_FILES])
        drm = f"{folder}/drm"
        wanted += _existing(base, [f"{drm}/{name}/dev" for name in _names(base / drm) if _DRM_NODE.match(name)])
    wanted += _rdma_files(base, links)
    wanted += _existing(base, ["proc/meminfo", "proc/driver/nvidia/version"])
    gpus = "proc/driver/nvidia/gpus"
    wanted += _existing(
        base, [f"{gpus}/{bdf}/{name}" for bdf in _names(base / gpus) for name in ("information", "numa_status")]
    )
    wanted += _process_files(base)
    return wanted


def _device_nodes(base: Path) -> list[str]:
    """The GPU device node names under ``base/dev`` (``nvidia0``, ``dri/renderD128``...), never opened."""
    names = [*_names(base / "dev"), *(f"dri/{name}" for name in _names(base / "dev/dri"))]
    return [name for name in names if _GPU_NODES.match(name)]


def _rdma_files(base: Path, links: dict[str, str]) -> list[str]:
    """Each RDMA device's ports and network interface names, and the links that place it in the PCIe tree."""
    wanted: list[str] = []
    rdma = "sys/class/infiniband"
    for name in _names(base / rdma):
        folder = _linked(base, f"{rdma}/{name}", links)
        for port in _names(base / folder / "ports", digits):
            wanted += _existing(base, [f"{folder}/ports/{port}/{file}" for file in _PORT_FILES])
        device = _linked(base, f"{folder}/device", links)
        wanted += _existing(base, [f"{device}/net/{netdev}/type" for netdev in _names(base / device / "net")])
    return wanted


def _process_files(base: Path) -> list[str]:
    """This process's status, its threads' status, its cgroup file and its cgroups' cpuset files."""
    wanted = list(_existing(base, ["proc/self/status", "proc/self/cgroup"]))
    tasks = base / "proc/self/task"
    wanted += _existing(base, [f"proc/self/task/{tid}/status" for tid in _names(tasks, digits)])
    text = read_text(base / "proc/self/cgroup") or ""
    groups = {line.split(":", 2)[2] for line in text.splitlines() if line.count(":") >= 2}
    folders: set[str] = set()
    for group in groups:
        parts = [part for part in group.split("/") if part and part not in (".", "..")]
        for mount in _CGROUP_MOUNTS:
            for depth in range(len(parts) + 1):
                folders.add("/".join([mount, *parts[:depth]]))
    for folder in sorted(folders):
        wanted += _existing(base, [f"{folder}/{name}" for name in _CGROUP_FILES])
    return wanted


# -- NVML --------------------------------------------------------------------------------------
def _error_text(err: BaseException) -> str:
    """``NVMLError_NotSupported: Not Supported``: the class name a reader maps back to NVML's code."""
    return f"{type(err).__name__}: {err}"


def _text(value: Any) -> Any:
    # pynvml before 11.515 returns bytes for strings and char-array fields.
    if isinstance(value, bytes):
        return value.decode(errors="replace").rstrip("\x00")
    return value


def record_nvml(nvml: Any | None = None, *, cpu_words: int = 16, node_words: int = 1) -> dict[str, Any]:
    """What NVML answers about every GPU, as plain JSON values; ``{"error": ...}`` when it does not start.

    Each answer is kept under its key, or its error under ``<key>_error``, so a reader replays
    exactly what this host's NVML said (``gpunuma_fakes.load_snapshot``).
    """
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return {"error": "pynvml is not installed (pip install gpunuma[nvml])"}
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as err:
        return {"error": _error_text(err)}
    try:
        return _record_devices(nvml, cpu_words, node_words)
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass  # the record is complete; a failing shutdown changes nothing in it


def _record_devices(nvml: Any, cpu_words: int, node_words: int) -> dict[str, Any]:
    record: dict[str, Any] = {}
    _ask(nvml, record, "driver", "nvmlSystemGetDriverVersion")
    _ask(nvml, record, "count", "nvmlDeviceGetCount")
    gpus = []
    for index in range(int(record.get("count") or 0)):
        gpu: dict[str, Any] = {"index": index}
        handle = _ask(nvml, gpu, "handle", "nvmlDeviceGetHandleByIndex", index, keep=False)
        if handle is not None:
            _record_device(nvml, gpu, handle, cpu_words, node_words)
        gpus.append(gpu)
    record["gpus"] = gpus
    return record


def _record_device(nvml: Any, gpu: dict[str, Any], handle: Any, cpu_words: int, node_words: int) -> None:
    node_scope = getattr(nvml, "NVML_AFFINITY_SCOPE_NODE", 0)
    socket_scope = getattr(nvml, "NVML_AFFINITY_SCOPE_SOCKET", 1)
    _ask(nvml, gpu, "uuid", "nvmlDeviceGetUUID", handle)
    _ask(nvml, gpu, "name", "nvmlDeviceGetName", handle)
    pci = _ask(nvml, gpu, "pci", "nvmlDeviceGetPciInfo", handle, keep=False)
    if pci is not None:
        gpu["bus_id"] = _text(pci.busId)
    _ask(nvml, gpu, "numa_node_id", "nvmlDeviceGetNumaNodeId", handle)
    _ask(nvml, gpu, "cpu_affinity", "nvmlDeviceGetCpuAffinityWithinScope", handle, cpu_words, node_scope)
    if "cpu_affinity" not in gpu:
        _ask(nvml, gpu, "cpu_affinity_unscoped", "nvmlDeviceGetCpuAffinity", handle, cpu_words)
    _ask(nvml, gpu, "cpu_affinity_socket", "nvmlDeviceGetCpuAffinityWithinScope", handle, cpu_words, socket_scope)
    _ask(nvml, gpu, "memory_affinity_node", "nvmlDeviceGetMemoryAffinity", handle, node_words, node_scope)
    _ask(nvml, gpu, "memory_affinity_socket", "nvmlDeviceGetMemoryAffinity", handle, node_words, socket_scope)
    mode = _ask(nvml, gpu, "mig_mode", "nvmlDeviceGetMigMode", handle)
    if mode and int(mode[0]) == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1):
        gpu["mig_devices"] = _mig_devices(nvml, gpu, handle)


def _mig_devices(nvml: Any, gpu: dict[str, Any], handle: Any) -> list[str]:
    slots = _ask(nvml, gpu, "mig_slots", "nvmlDeviceGetMaxMigDeviceCount", handle) or 0
    uuids = []
    for slot in range(int(slots)):
        found: dict[str, Any] = {}
        mig = _ask(nvml, found, "handle", "nvmlDeviceGetMigDeviceHandleByIndex", handle, slot, keep=False)
        if mig is not None:
            uuid = _ask(nvml, found, "uuid", "nvmlDeviceGetUUID", mig)
            if uuid:
                uuids.append(uuid)
    return uuids


def _ask(nvml: Any, into: dict[str, Any], key: str, function: str, *args: Any, keep: bool = True) -> Any:
    """``nvml.<function>(*args)``: the answer (stored under ``key`` unless ``keep`` is False) or None."""
    call = getattr(nvml, function, None)
    if call is None:
        into[f"{key}_error"] = f"NVMLError_FunctionNotFound: {function} is not in this pynvml"
        return None
    try:
        value = call(*args)
    except nvml.NVMLError as err:
        into[f"{key}_error"] = _error_text(err)
        return None
    if not keep:
        return value
    if value is not None and not isinstance(value, (str, bytes, int, float)):
        # pynvml's affinity answers are ctypes arrays (iterable by index, with no __iter__), MIG modes lists.
        try:
            value = [int(word) for word in value]
        except TypeError:
            value = str(value)
    into[key] = _text(value)
    return into[key]
