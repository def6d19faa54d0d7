"""CPUs from ``/sys/devices/system/cpu``: which are online, and each online CPU's core and socket.

Read as the kernel's own readers (hwloc, libnuma) read them, so trees from old kernels and from
gathering tools work: the ``online`` list, else each ``cpuN/online`` flag (cpu0 often has none:
it cannot go offline); the ``*_list`` files, else their hex-mask twins (``core_cpus``,
``thread_siblings``, ``package_cpus``, ``core_siblings``), as kernels before the list files wrote
them. A CPU whose core or socket no file tells is left out of the layout, with a note, rather
than given a guessed one.
"""

from __future__ import annotations

import os
from pathlib import Path

from gpunuma.adapters.files import HOST
from gpunuma.adapters.procfs import parse_cpulist, parse_cpumask, parse_idlist, parse_int, read_value
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.model import Cpu
from gpunuma.core.numbers import decimal
from gpunuma.core.ports import KernelFiles
from gpunuma.core.reasons import Reason
from gpunuma.errors import TopologyUnavailableError

#: Where a CPU's core siblings and package members are, newest name first; True marks a hex mask.
_CORE_FILES = (
    ("core_cpus_list", False),
    ("thread_siblings_list", False),
    ("core_cpus", True),
    ("thread_siblings", True),
)
_PACKAGE_FILES = (
    ("package_cpus_list", False),
    ("core_siblings_list", False),
    ("package_cpus", True),
    ("core_siblings", True),
)


def numbered(folder: str | Path, prefix: str, files: KernelFiles = HOST) -> list[int]:
    """The N of every ``<prefix>N`` entry of ``folder`` (``cpu12``, ``node3``), ascending; [] when it is missing."""
    names = files.listdir(os.fspath(folder))
    if names is None:
        return []
    cut = len(prefix)
    # decimal() is bounded: a crafted "cpu" + 5000 digits is no CPU, not a ValueError from int().
    return sorted(n for name in names if name[:cut] == prefix and (n := decimal(name[cut:])) is not None)


def read_online(cpu_dir: str, notes: list[str], files: KernelFiles = HOST) -> CpuSet:
    """The online CPUs: the ``online`` list, else each ``cpuN/online`` flag, else ``present``/``possible``."""
    path = os.path.join(cpu_dir, "online")
    text = read_value(path, files)
    if text is not None:
        return parse_cpulist(path, text)
    folders = numbered(cpu_dir, "cpu", files)
    if folders:
        online = []
        for cpu in folders:
            flag_path = f"{cpu_dir}/cpu{cpu}/online"
            flag = read_value(flag_path, files)
            if flag is None or parse_int(flag_path, flag) != 0:
                online.append(cpu)
        notes.append(Reason.of("sysfs_online_from_flags", path=path))
        return CpuSet.of(online)
    for name in ("present", "possible"):
        other = os.path.join(cpu_dir, name)
        text = read_value(other, files)
        if text is not None:
            notes.append(Reason.of("sysfs_online_assumed", path=path, name=name))
            return parse_cpulist(other, text)
    raise TopologyUnavailableError(f"{cpu_dir}: no online list, cpuN folder, present or possible list: no CPUs known")


def _first_set(folder: str, names: tuple[tuple[str, bool], ...], files: KernelFiles) -> frozenset[int] | None:
    """The CPUs of the first of ``names`` in ``folder`` that holds a value, None when none does."""
    for name, mask in names:
        path = folder + name
        text = read_value(path, files)
        if text is not None:
            return parse_cpumask(path, text).ids if mask else parse_idlist(path, text)
    return None


def _unlabelled(first_cpu: int) -> int:
    """A socket label when the kernel gives no id: negative, so never one of its ids (>= 0) nor its -1."""
    return -2 - first_cpu


def read_cpus(cpu_dir: str, online: CpuSet, notes: list[str], files: KernelFiles = HOST) -> tuple[Cpu, ...]:
    """Each online CPU's socket (package), core and SMT siblings; CPUs no file describes are left out."""
    # One read of core_cpus_list per core (siblings share it) and one package_cpus_list per
    # package: a 224-CPU machine costs ~115 small reads, not ~900. The kernel's core_id is not
    # read: it is a sparse platform id that adds nothing once the siblings are known, so a
    # core is numbered by its place in its package (lowest CPU first). Opens dominate the cost.
    # Plain string paths: pathlib's per-join cost exceeds the read itself here.
    result: dict[int, Cpu] = {}
    package_of: dict[int, int] = {}
    cores_in: dict[int, int] = {}  # package -> cores numbered so far
    unlabelled: list[int] = []
    base = cpu_dir
    online_ids = online.ids
    for cpu in sorted(online_ids):
        if cpu in result:
            continue
        folder = f"{base}/cpu{cpu}/topology/"
        siblings = _first_set(folder, _CORE_FILES, files)
        if siblings is None:
            continue
        if cpu not in package_of and not _read_package(folder, cpu, online_ids, package_of, unlabelled, files):
            continue
        sibling_ids = (siblings & online_ids) | {cpu}
        package = package_of[cpu]
        core = cores_in.get(package, 0)
        cores_in[package] = core + 1
        shared = CpuSet._trusted(sibling_ids)
        for sibling in sibling_ids:
            result[sibling] = Cpu(sibling, package, core, shared)
    if unlabelled:
        notes.append(Reason.of("sysfs_sockets_from_package_lists", cpus=CpuSet.of(unlabelled).to_list()))
    missing = online - CpuSet._trusted(frozenset(result))
    if missing:
        notes.append(Reason.of("sysfs_cpu_layout_unknown", cpus=missing.to_list()))
    return tuple([result[cpu] for cpu in sorted(result)])


def _read_package(
    folder: str,
    cpu: int,
    online_ids: frozenset[int],
    package_of: dict[int, int],
    unlabelled: list[int],
    files: KernelFiles,
) -> bool:
    """Record the socket of ``cpu`` and of the members its package file lists; False when nothing tells it."""
    id_path = folder + "physical_package_id"
    id_text = read_value(id_path, files)
    package = parse_int(id_path, id_text) if id_text is not None else -1
    members = _first_set(folder, _PACKAGE_FILES, files)
    group = ((members & online_ids) | {cpu}) if members is not None else {cpu}
    if package < 0:  # -1: the platform gives no package id
        if members is None:
            return False
        # A member placed already (its own id read) names the socket; else the first CPU labels it.
        known = sorted({package_of[member] for member in group if member in package_of})
        package = known[-1] if known else _unlabelled(min(group))
        unlabelled.append(cpu)
    for member in group:
        package_of.setdefault(member, package)
    return True


def node_links(cpu_dir: str, cpus: CpuSet, files: KernelFiles = HOST) -> dict[int, int]:
    """CPU -> node from the kernel's ``cpuN/nodeM`` links (hwloc-gather keeps them), for the CPUs that have one."""
    found: dict[int, int] = {}
    for cpu in cpus:
        nodes = numbered(f"{cpu_dir}/cpu{cpu}", "node", files)
        if len(nodes) == 1:
            found[cpu] = nodes[0]
    return found

