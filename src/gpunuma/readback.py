"""Read back what the kernel holds for a process, and say in plain words where it differs from a plan.

``/proc/<pid>/status`` shows the *main* thread only, so every thread is read from
``/proc/<pid>/task/<tid>/status``. ``Mems_allowed`` is the cpuset, not the memory policy.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from gpunuma.cpuset import CpuSet
from gpunuma.errors import BindError, SysfsFormatError
from gpunuma.plan import BindingPlan
from gpunuma.policy import MemoryPolicy
from gpunuma.procfs import parse_cpulist, parse_status, read_text, read_threads
from gpunuma.report import KernelView, ThreadState

if TYPE_CHECKING:
    from gpunuma.mempolicy import MempolicySyscalls

# numa_maps field 2: "default", "local", "bind:0-1", "prefer:1", "prefer (many):0-1",
# "interleave:0-3", "weighted interleave:0-3", with flags such as "bind=static:0".
_NUMA_MAPS_POLICY = re.compile(
    r"^\S+ (default|local|bind|prefer \(many\)|prefer|interleave|weighted interleave)(?:=[a-z|]+)?(?::(\S+))?"
)
_NUMA_MAPS_WORDS = {
    "default": "default",
    "local": "local",
    "bind": "bind",
    "prefer": "preferred",
    "prefer (many)": "preferred_many",
    "interleave": "interleave",
    "weighted interleave": "weighted_interleave",
}


def _read_status(path: Path) -> dict[str, str]:
    text = read_text(path)
    if text is None:
        raise FileNotFoundError(errno.ENOENT, "no such process", str(path))
    return parse_status(path, text)


def _cpulist(path: str | Path, fields: dict[str, str], key: str) -> CpuSet:
    if key not in fields:
        raise SysfsFormatError(path, "", f"no {key} line")
    return parse_cpulist(path, fields[key])


def _threads(task_dir: Path) -> tuple[ThreadState, ...]:
    try:
        return read_threads(task_dir)
    except FileNotFoundError:
        return ()


def _numa_maps_policy(path: Path) -> tuple[str | None, tuple[int, ...]]:
    # A mapping without its own policy shows the policy of the task whose entry is read,
    # so the first line of /proc/<pid>/numa_maps gives the main thread's policy.
    try:
        with path.open() as handle:
            first = handle.readline()
    except OSError:
        return None, ()
    match = _NUMA_MAPS_POLICY.match(first)
    if not match:
        return None, ()
    nodes = tuple(CpuSet.parse_list(match.group(2)).ids) if match.group(2) else ()
    return _NUMA_MAPS_WORDS[match.group(1)], tuple(sorted(nodes))


def _own_mempolicy(syscalls: MempolicySyscalls | None) -> tuple[str | None, tuple[int, ...]]:
    try:
        if syscalls is None:
            from gpunuma.mempolicy import MempolicySyscalls

            syscalls = MempolicySyscalls()
        policy = syscalls.get()
    except (OSError, BindError):
        return None, ()
    return policy.word, policy.nodes


def read_kernel_view(
    pid: int | str = "self", proc_root: str | Path = "/proc", *, syscalls: MempolicySyscalls | None = None
) -> KernelView:
    """The kernel's view of process ``pid``: its cpuset, allowed memory nodes and every thread's CPUs.

    The memory policy is the calling thread's (``get_mempolicy``, through ``syscalls`` when given,
    as a binder passes its own) when ``pid`` is this process, else the main thread's as the first
    line of ``numa_maps`` shows it (None when unreadable). Raises ``FileNotFoundError`` when the
    process does not exist.
    """
    base = Path(proc_root) / str(pid)
    status_path = base / "status"
    fields = _read_status(status_path)
    real_pid = int(fields.get("Tgid") or fields.get("Pid") or 0)
    if real_pid == os.getpid():
        mempolicy, nodes = _own_mempolicy(syscalls)
    else:
        mempolicy, nodes = _numa_maps_policy(base / "numa_maps")
    return KernelView(
        pid=real_pid,
        cpus_allowed=_cpulist(status_path, fields, "Cpus_allowed_list"),
        mems_allowed=frozenset(_cpulist(status_path, fields, "Mems_allowed_list").ids),
        threads=_threads(base / "task"),
        mempolicy=mempolicy,
        mempolicy_nodes=nodes,
    )


def _nodes(nodes: tuple[int, ...] | frozenset[int]) -> str:
    return ",".join(str(n) for n in sorted(nodes))


def compare(plan: BindingPlan, view: KernelView) -> tuple[str, ...]:
    """Plain-words differences between ``plan`` and ``view``, thread by thread; empty when they agree.

    A plan that does not bind has nothing to compare.
    """
    if not plan.binds:
        return ()
    planned = plan.cpus.to_list()
    found: list[str] = []
    for thread in view.threads:
        if thread.cpus != plan.cpus:
            runs = thread.cpus.to_list() or "no CPU"
            found.append(f"thread {thread.tid} ({thread.name}) runs on {runs}, planned {planned}")
    if not view.threads and view.cpus_allowed != plan.cpus:
        found.append(f"process {view.pid} runs on {view.cpus_allowed.to_list()}, planned {planned}")
    if plan.memory_policy is MemoryPolicy.NONE:
        return tuple(found)
    outside = [n for n in plan.memory_nodes if view.mems_allowed and n not in view.mems_allowed]
    if outside:
        found.append(
            f"memory node {_nodes(tuple(outside))} is outside Mems_allowed {_nodes(view.mems_allowed)}"
        )
    if view.mempolicy is not None:
        wanted = {"bind"} if plan.memory_policy is MemoryPolicy.BIND else {"preferred", "preferred_many"}
        if view.mempolicy not in wanted or tuple(sorted(view.mempolicy_nodes)) != tuple(sorted(plan.memory_nodes)):
            held = f"{view.mempolicy} {_nodes(view.mempolicy_nodes)}".strip()
            found.append(
                f"memory policy is {held}, planned {plan.memory_policy.value} {_nodes(plan.memory_nodes)}"
            )
    return tuple(found)
