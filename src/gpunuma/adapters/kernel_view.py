"""Read back what the kernel holds for a process: its cpuset, every thread's CPUs, its memory policy.

``/proc/<pid>/status`` shows the *main* thread only, so every thread is read from
``/proc/<pid>/task/<tid>/status``. ``Mems_allowed`` is the cpuset, not the memory policy.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from pathlib import Path

from gpunuma.adapters.files import HOST
from gpunuma.adapters.mempolicy import MempolicySyscalls
from gpunuma.adapters.procfs import parse_cpulist, parse_idlist, parse_status, read_text, read_threads
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.kernel_policy import NUMA_MAPS_MODES, Mempolicy
from gpunuma.core.numbers import decimal
from gpunuma.core.pages import Pages, parse_numa_maps
from gpunuma.core.ports import KernelFiles
from gpunuma.core.report import KernelView, ThreadState
from gpunuma.errors import BindError, SysfsFormatError, TopologyUnavailableError

# numa_maps field 2: "default", "local", "bind:0-1", "prefer:1", "prefer (many):0-1",
# "interleave:0-3", "weighted interleave:0-3", with flags such as "bind=static:0". Compiled only to
# read another process (gpunuma check): a binder reads its own policy through get_mempolicy.
_NUMA_MAPS_POLICY = (
    r"^\S+ (default|local|bind|prefer \(many\)|prefer|interleave|weighted interleave)(?:=[a-z|]+)?(?::(\S+))?"
)


#: A numa_maps line is short; the first one is all that is read.
_FIRST_LINE = 4096
#: The most of another process's environment read (the kernel caps a new program's strings at ~2 MiB).
_ENVIRON_BYTES = 4 << 20


def _read_status(path: str, files: KernelFiles) -> dict[str, str]:
    text = read_text(path, files)
    if text is None:
        raise FileNotFoundError(errno.ENOENT, "no such process", str(path))
    return parse_status(path, text)


def _cpulist(path: str | Path, fields: dict[str, str], key: str) -> CpuSet:
    if key not in fields:
        raise SysfsFormatError(path, "", f"no {key} line")
    return parse_cpulist(path, fields[key])


def _threads(task_dir: str, files: KernelFiles) -> tuple[ThreadState, ...]:
    try:
        return read_threads(task_dir, files)
    except FileNotFoundError:
        return ()


def numa_maps_policy(path: str | Path, files: KernelFiles = HOST) -> Mempolicy | None:
    """The policy the first line of a ``numa_maps`` file shows (None: unreadable or not understood).

    A mapping without its own policy shows the policy of the task whose entry is read, so the first
    line of ``/proc/<pid>/numa_maps`` gives that task's policy. A node list no kernel writes is a
    :class:`~gpunuma.errors.SysfsFormatError`.
    """
    try:
        text = files.read(os.fspath(path), _FIRST_LINE, cut=True)
    except OSError:
        return None
    if text is None:
        return None
    first = text.partition("\n")[0]
    match = re.match(_NUMA_MAPS_POLICY, first)
    if not match:
        return None
    nodes = parse_idlist(path, match.group(2)) if match.group(2) else frozenset()
    return Mempolicy(NUMA_MAPS_MODES[match.group(1)], tuple(sorted(nodes)))


def _numa_maps_policy(path: str, files: KernelFiles) -> tuple[str | None, tuple[int, ...]]:
    policy = numa_maps_policy(path, files)
    return (None, ()) if policy is None else (policy.word, policy.nodes)


def _own_mempolicy(syscalls: MempolicySyscalls | None) -> tuple[str | None, tuple[int, ...]]:
    try:
        if syscalls is None:
            syscalls = MempolicySyscalls()
        policy = syscalls.get()
    except (OSError, BindError):
        return None, ()
    return policy.word, policy.nodes


def read_kernel_view(
    pid: int | str = "self",
    proc_root: str | Path = "/proc",
    *,
    syscalls: MempolicySyscalls | None = None,
    files: KernelFiles = HOST,
) -> KernelView:
    """The kernel's view of process ``pid``: its cpuset, allowed memory nodes and every thread's CPUs.

    The memory policy is the calling thread's (``get_mempolicy``, through ``syscalls`` when given,
    as a binder passes its own) when ``pid`` is this process, else the main thread's as the first
    line of ``numa_maps`` shows it (None when unreadable). Raises ``FileNotFoundError`` when the
    process does not exist. ``files`` reads the files under ``proc_root`` (a captured tree's, held in memory).
    """
    base = os.path.join(proc_root, str(pid))
    status_path = os.path.join(base, "status")
    fields = _read_status(status_path, files)
    tgid = fields.get("Tgid") or fields.get("Pid") or "0"
    real_pid = decimal(tgid)
    if real_pid is None:
        raise SysfsFormatError(status_path, tgid[:100], "Tgid is not a process id")
    policy_tid: int | None = None
    if real_pid == os.getpid() and files is HOST:
        mempolicy, nodes = _own_mempolicy(syscalls)
        policy_tid = threading.get_native_id()
    else:
        mempolicy, nodes = _numa_maps_policy(os.path.join(base, "numa_maps"), files)
    return KernelView(
        pid=real_pid,
        cpus_allowed=_cpulist(status_path, fields, "Cpus_allowed_list"),
        mems_allowed=frozenset(_cpulist(status_path, fields, "Mems_allowed_list").ids),
        threads=_threads(os.path.join(base, "task"), files),
        mempolicy=mempolicy,
        mempolicy_nodes=nodes,
        mempolicy_tid=policy_tid,
    )


#: The most of a ``numa_maps`` read: one line per mapping, ~100 bytes each; a process at the kernel's default
#: ``vm.max_map_count`` (65,530 mappings) writes about 7 MiB. A longer file is counted over its first mappings.
NUMA_MAPS_BYTES = 16 << 20


def read_pages(pid: int | str = "self", proc_root: str | Path = "/proc", files: KernelFiles = HOST) -> Pages | None:
    """Where process ``pid``'s pages are (``/proc/<pid>/numa_maps``, bounded), None when unreadable or missing.

    The kernel walks the process's page tables to write this file: a few milliseconds per GiB resident.
    """
    path = os.path.join(proc_root, str(pid), "numa_maps")
    try:
        text = files.read(path, NUMA_MAPS_BYTES, cut=True)
    except OSError:
        return None
    if text is None:
        return None
    return parse_numa_maps(text)


def read_environ(
    pid: int | str, proc_root: str | Path = "/proc", files: KernelFiles = HOST
) -> dict[str, str] | None:
    """The environment process ``pid`` started with (``/proc/<pid>/environ``), None when unreadable."""
    try:
        raw = files.read(os.path.join(proc_root, str(pid), "environ"), _ENVIRON_BYTES, cut=True)
    except OSError:
        return None
    if raw is None:
        return None
    env = {}
    for entry in raw.split("\0"):
        key, sep, value = entry.partition("=")
        if sep:
            env[key] = value
    return env


def read_process(
    pid: int | str, proc_root: str | Path = "/proc", files: KernelFiles = HOST
) -> tuple[KernelView, dict[str, str] | None]:
    """Another process as ``gpunuma check`` reads it: the kernel's view and its starting environment.

    A process that does not exist is a :class:`~gpunuma.errors.TopologyUnavailableError`.
    """
    try:
        view = read_kernel_view(pid, proc_root=proc_root, files=files)
    except FileNotFoundError as err:
        raise TopologyUnavailableError(f"process {pid}: no such process ({err.filename} is missing)") from err
    return view, read_environ(pid, proc_root, files)
