"""Read what the kernel lets a process use: ``/proc/<pid>/status``, its threads, and its cgroup cpuset.

Every function takes the filesystem ``root`` (``/`` on a live system) and the reader of the files under
it (:data:`~gpunuma.adapters.files.HOST`, or a machine's tree held in memory).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from gpunuma.adapters.files import HOST
from gpunuma.core.cpuset import BLANK, NODE_LIMIT, CpuSet, parse_ids
from gpunuma.core.kernel_policy import Mempolicy
from gpunuma.core.numbers import decimal, hexadecimal
from gpunuma.core.plan import Allowed
from gpunuma.core.ports import KernelFiles
from gpunuma.core.rebind import OwnBinding, as_before
from gpunuma.core.report import ThreadState
from gpunuma.errors import CpuSetParseError, SysfsFormatError, TopologyUnavailableError


def read_text(path: str | Path, files: KernelFiles = HOST) -> str | None:
    """The content of a small kernel file, or None when it does not exist.

    Any other failure (a directory or a symlink loop in its place, EACCES, EIO) is a
    :class:`SysfsReadError` naming the file; a file larger than any kernel file (a link to
    ``/dev/zero``) a :class:`SysfsFormatError`, read no further than
    :data:`~gpunuma.adapters.files.MAX_FILE_BYTES`.
    """
    return files.read(os.fspath(path))


def list_dir(path: str | Path, files: KernelFiles = HOST) -> list[str] | None:
    """The entry names of a kernel folder, None when it does not exist; other failures: :class:`SysfsReadError`."""
    return files.listdir(os.fspath(path))


def read_value(path: str | Path, files: KernelFiles = HOST) -> str | None:
    """A kernel file that always holds a value, None when it is missing or blank.

    A gathering tool that cannot read a file (``cat f > copy``) leaves it empty: no value, not an empty one.
    """
    text = files.read(os.fspath(path))
    return text if text is not None and text.strip(BLANK) else None


def parse_int(path: str | Path, text: str, base: int = 10) -> int:
    """A number in a kernel file (``0x10de`` with ``base=16``), blanks and NUL padding around it ignored.

    ASCII only, as the kernel prints it (:mod:`gpunuma.core.numbers`): ``１``, ``+1`` or ``1_0`` are malformed.
    """
    stripped = text.strip(BLANK)
    value = hexadecimal(stripped) if base == 16 else decimal(stripped, signed=True)
    if value is None:
        raise SysfsFormatError(path, text, "not an integer in ASCII digits")
    return value


def parse_node_id(path: str | Path, text: str) -> int | None:
    """A device's ``numa_node``: its node, None for the kernel's -1 (no node); below -1 or beyond any kernel's
    node ids (:data:`~gpunuma.core.cpuset.NODE_LIMIT`) is a :class:`SysfsFormatError`."""
    value = parse_int(path, text)
    if value < -1:
        raise SysfsFormatError(path, text, "a node id below -1")
    if value >= NODE_LIMIT:
        raise SysfsFormatError(path, text, f"a node id beyond {NODE_LIMIT - 1}, the most any kernel has")
    return None if value == -1 else value


# The adapters' one entry to the parser in gpunuma.core.cpuset: it adds the file to the error.


def parse_cpulist(path: str | Path, text: str) -> CpuSet:
    """A kernel cpulist (or node list) read from ``path``; malformed text raises :class:`SysfsFormatError`."""
    try:
        return CpuSet.parse_list(text)
    except CpuSetParseError as err:
        raise SysfsFormatError(path, text, err.why) from err


def parse_idlist(path: str | Path, text: str) -> frozenset[int]:
    """A kernel node list (``0-1,4``) or cpulist read from ``path``, as bare ids (no :class:`CpuSet` built)."""
    try:
        return parse_ids(text)
    except CpuSetParseError as err:
        raise SysfsFormatError(path, text, err.why) from err


def parse_cpumask(path: str | Path, text: str) -> CpuSet:
    """A kernel hex mask (``local_cpus``, ``cpumap``, ``Cpus_allowed``) read from ``path``."""
    try:
        return CpuSet.parse_mask(text)
    except CpuSetParseError as err:
        raise SysfsFormatError(path, text, err.why) from err


# Paths are plain strings: pathlib costs more per join than the read itself.
def _proc(root: str | Path, pid: int | str) -> str:
    return os.path.join(root, "proc", str(pid))


def parse_status(path: str | Path, text: str) -> dict[str, str]:
    """The ``Key: value`` lines of a ``/proc`` status file, values stripped; a line without ``:`` is malformed."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip(BLANK):
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise SysfsFormatError(path, line, "a status line without 'Key:'")
        fields[key.strip()] = value.strip(BLANK)
    return fields


def status_field(text: str, key: str) -> str | None:
    """The value of one ``Key:`` line of a status file, without splitting the other ~55 lines."""
    at = ("\n" + text).find("\n" + key + ":")
    if at < 0:
        return None
    end = text.find("\n", at)
    return text[at + len(key) + 1 : end if end >= 0 else None].strip(BLANK)


def read_status(root: str | Path = "/", pid: int | str = "self", files: KernelFiles = HOST) -> dict[str, str]:
    """The fields of ``/proc/<pid>/status`` (``{"Cpus_allowed_list": "0-15", ...}``), values stripped.

    ``/proc/<pid>/status`` shows the main thread; see :func:`read_threads` for the others.
    """
    path = os.path.join(_proc(root, pid), "status")
    text = files.read(path)
    if text is None:
        raise TopologyUnavailableError(f"{path}: no such process status")
    return parse_status(path, text)


def status_cpus(status: dict[str, str], path: Path | str = "status") -> CpuSet:
    """``Cpus_allowed_list`` of a parsed status (the thread's affinity)."""
    text = status.get("Cpus_allowed_list")
    if text is None:
        raise SysfsFormatError(path, "", "no Cpus_allowed_list line")
    return parse_cpulist(path, text)


def status_mems(status: dict[str, str], path: Path | str = "status") -> frozenset[int]:
    """``Mems_allowed_list`` of a parsed status (the cpuset's memory nodes, not the memory policy)."""
    text = status.get("Mems_allowed_list")
    if text is None:
        raise SysfsFormatError(path, "", "no Mems_allowed_list line")
    return parse_idlist(path, text)


def list_tids(task_dir: str | Path, files: KernelFiles = HOST) -> tuple[int, ...]:
    """The thread ids listed in a ``/proc/<pid>/task`` directory, ascending; raises ``OSError`` when unreadable
    (``FileNotFoundError`` when it is missing)."""
    names = files.listdir(os.fspath(task_dir))
    if names is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), os.fspath(task_dir))
    return tuple(sorted(tid for name in names if (tid := decimal(name)) is not None))


def read_threads(task_dir: str | Path, files: KernelFiles = HOST) -> tuple[ThreadState, ...]:
    """Each thread's name and own CPU affinity from ``<task_dir>/<tid>/status``, by ascending TID.

    A thread that exits between listing and reading is left out; a missing ``task_dir`` raises
    ``FileNotFoundError``. One raw read per thread and two fields picked out: this is the
    read-back every bind pays for.
    """
    states = []
    # Threads of a bound process mostly share one cpulist: parse each distinct text once.
    parsed: dict[str, CpuSet] = {}
    for tid in list_tids(task_dir, files):
        path = f"{task_dir}/{tid}/status"
        try:
            text = files.read(path)
        except ProcessLookupError:  # ESRCH: the thread exited after open
            continue
        if text is None:  # ENOENT: the thread exited before open
            continue
        cpus = status_field(text, "Cpus_allowed_list")
        if cpus is None:
            raise SysfsFormatError(path, "", "no Cpus_allowed_list line")
        if cpus not in parsed:
            parsed[cpus] = parse_cpulist(path, cpus)
        name = status_field(text, "Name")
        states.append(ThreadState(tid, "?" if name is None else name, parsed[cpus]))
    return tuple(states)


def read_thread_affinities(
    root: str | Path = "/", pid: int | str = "self", files: KernelFiles = HOST
) -> dict[int, CpuSet]:
    """Each thread id of the process -> its own CPU affinity (``task/<tid>/status``).

    A thread that exits between listing and reading is left out.
    """
    tasks = os.path.join(_proc(root, pid), "task")
    try:
        threads = read_threads(tasks, files)
    except FileNotFoundError as err:
        raise TopologyUnavailableError(f"{tasks}: no task directory") from err
    return {thread.tid: thread.cpus for thread in threads}


@dataclass(frozen=True, slots=True)
class CgroupCpuset:
    """The effective cpuset of a process's cgroup and the files it came from."""

    cpus: CpuSet
    mems: frozenset[int]
    version: int
    cpus_file: Path
    mems_file: Path


def _cgroup_paths(root: str | Path, pid: int | str, files: KernelFiles) -> tuple[str | None, str | None]:
    """(v2 path, v1 cpuset path) from ``/proc/<pid>/cgroup``."""
    path = os.path.join(_proc(root, pid), "cgroup")
    text = files.read(path)
    if text is None:
        return None, None
    v2: str | None = None
    v1: str | None = None
    for line in text.splitlines():
        line = line.strip(BLANK)
        if not line:
            continue
        parts = line.split(":", 2)
        if len(parts) != 3:
            raise SysfsFormatError(path, line, "not 'hierarchy:controllers:path'")
        hierarchy, controllers, group = parts
        if hierarchy == "0" and not controllers:
            v2 = group
        elif "cpuset" in controllers.split(","):
            v1 = group
    return v2, v1


def _walk_up(mount: str, group: str, names: tuple[str, str], files: KernelFiles) -> tuple[str, str] | None:
    """The nearest cgroup at or above ``group`` that holds both files.

    A cgroup without the cpuset controller runs on its nearest ancestor's cpuset, and inside a
    container the mount's root is the container's own cgroup while ``/proc`` names the host path.
    """
    parts = [p for p in group.split("/") if p]
    for depth in range(len(parts), -1, -1):
        folder = os.path.join(mount, *parts[:depth])
        first, second = os.path.join(folder, names[0]), os.path.join(folder, names[1])
        if files.exists(first) and files.exists(second):
            return first, second
    return None


#: The effective cpuset files of each kind of cpuset mount, preferred first.
_V2_FILES = (("cpuset.cpus.effective", "cpuset.mems.effective"),)
_V1_FILES = (("cpuset.effective_cpus", "cpuset.effective_mems"), ("cpuset.cpus", "cpuset.mems"))
#: The legacy cpuset filesystem (``mount -t cpuset``, ``/dev/cpuset``) and v1's ``noprefix`` option name them bare.
_BARE_FILES = (("effective_cpus", "effective_mems"), ("cpus", "mems"))
#: Where the cpuset lives when ``/proc/mounts`` does not say: v2, v2 beside v1 (hybrid), v1.
_USUAL_MOUNTS = ((2, "sys/fs/cgroup", _V2_FILES), (2, "sys/fs/cgroup/unified", _V2_FILES),
                 (1, "sys/fs/cgroup/cpuset", _V1_FILES))  # fmt: skip


def _mount_point(field: str) -> str:
    """A ``/proc/mounts`` path field decoded (the kernel writes space, tab, newline and backslash in octal)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _cpuset_mounts(root: str | Path, files: KernelFiles) -> tuple[tuple[int, str, tuple[tuple[str, str], ...]], ...]:
    """Every mount holding cpusets, as ``(version, folder under root, file names)``: cgroup v2 first, then v1
    (``cgroup`` with the cpuset controller) and the legacy ``cpuset`` filesystem, from ``/proc/mounts``; the
    usual places when it is not there (a tree that kept no mount table)."""
    text = files.read(os.path.join(root, "proc/mounts"))
    if text is None:
        return tuple((version, os.path.join(root, folder), names) for version, folder, names in _USUAL_MOUNTS)
    v2: list[tuple[int, str, tuple[tuple[str, str], ...]]] = []
    v1: list[tuple[int, str, tuple[tuple[str, str], ...]]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        folder = os.path.join(root, _mount_point(fields[1]).lstrip("/"))
        kind, options = fields[2], fields[3].split(",")
        if kind == "cgroup2":
            v2.append((2, folder, _V2_FILES))
        elif kind == "cpuset":
            v1.append((1, folder, _BARE_FILES))
        elif kind == "cgroup" and "cpuset" in options:
            v1.append((1, folder, _BARE_FILES if "noprefix" in options else _V1_FILES))
    return (*v2, *v1)


def _cgroup_files(root: str | Path, pid: int | str, files: KernelFiles) -> tuple[str, str, int] | None:
    """The effective cpuset files of the process's cgroup and its version: v2 first, then v1.

    The cgroup comes from ``/proc/<pid>/cgroup``, else (a v1 or legacy cpuset the file does not name)
    ``/proc/<pid>/cpuset``; the mounts from ``/proc/mounts`` (see :func:`_cpuset_mounts`), so a tree that
    ``hwloc-gather-topology`` captured (``/dev/cpuset``, a v1 mount anywhere, v2) is read as the host was.
    """
    v2, v1 = _cgroup_paths(root, pid, files)
    if v1 is None:
        legacy = files.read(os.path.join(_proc(root, pid), "cpuset"))
        v1 = legacy.strip(BLANK) or None if legacy is not None else None
    for version, mount, options in _cpuset_mounts(root, files):
        group = v2 if version == 2 else v1
        if group is None:
            continue
        for names in options:
            found = _walk_up(mount, group, names, files)
            if found is not None:
                return (*found, version)
    return None


def _read_pair(cpus_file: str, mems_file: str, files: KernelFiles) -> tuple[CpuSet, frozenset[int]]:
    cpus_text = files.read(cpus_file) or ""
    mems_text = files.read(mems_file) or ""
    return parse_cpulist(cpus_file, cpus_text), parse_idlist(mems_file, mems_text)


def read_cgroup_cpuset(
    root: str | Path = "/", pid: int | str = "self", files: KernelFiles = HOST
) -> CgroupCpuset | None:
    """The effective cpuset of the process's cgroup: v2 first, then v1; None when neither is readable."""
    found = _cgroup_files(root, pid, files)
    if found is None:
        return None

    cpus_file, mems_file, version = found
    cpus, mems = _read_pair(cpus_file, mems_file, files)
    return CgroupCpuset(cpus=cpus, mems=mems, version=version, cpus_file=Path(cpus_file), mems_file=Path(mems_file))


def read_allowed(
    root: str | Path = "/",
    pid: int | str = "self",
    *,
    mempolicy: Mempolicy | None = None,
    own: OwnBinding | None = None,
    files: KernelFiles = HOST,
) -> Allowed:
    """What the process may use: the cgroup cpuset (else its status lists) and its current affinity.

    ``mempolicy`` is the memory policy someone set (None: the default). ``own`` is gpunuma's own
    earlier binding of this process: while the process still holds it, the result is what the
    process held before it (:func:`gpunuma.core.rebind.as_before`).
    """
    path = os.path.join(_proc(root, pid), "status")
    status = read_status(root, pid, files)
    affinity = status_cpus(status, path)
    found = _cgroup_files(root, pid, files)
    if found is None:
        allowed = Allowed(cpus=affinity, mems=status_mems(status, path), affinity=affinity, mempolicy=mempolicy)
    else:
        cpus, mems = _read_pair(found[0], found[1], files)
        allowed = Allowed(cpus=cpus, mems=mems, affinity=affinity, mempolicy=mempolicy)
    return as_before(allowed, own, cpuset_from_affinity=found is None)
