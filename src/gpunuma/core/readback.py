"""Where the kernel's view of a process differs from a plan, in plain words and thread by thread (pure: no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from gpunuma.core.cpuset import CpuSet, node_list
from gpunuma.core.kernel_policy import Mode, modes_for
from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import MemoryPolicy
from gpunuma.core.reasons import Reason
from gpunuma.core.report import KernelView

#: The memory policy that never allocates outside the nodes it names.
_STRICT_MODES = frozenset({Mode.BIND.word})
#: The memory policies that allocate on the nodes they name first (``default`` and ``local`` name none).
_NODE_MODES = frozenset(
    mode.word for mode in (Mode.BIND, Mode.PREFERRED, Mode.PREFERRED_MANY, Mode.INTERLEAVE, Mode.WEIGHTED_INTERLEAVE)
)


def compare(plan: BindingPlan, view: KernelView, *, within: bool = False) -> tuple[str, ...]:
    """Plain-words differences between ``plan`` and ``view``, thread by thread; empty when they agree.

    A plan that does not bind has nothing to compare. ``within=True`` (judging a running process) lets a
    thread run on part of the planned CPUs and the memory policy name part of the planned nodes (see
    :func:`narrowed_within`): only CPUs or memory outside the plan then differ. A binder's own read-back
    (``within=False``) expects exactly what it set.
    """
    if not plan.binds:
        return ()
    planned = plan.cpus.to_list()
    found: list[str] = []
    for thread in view.threads:
        if thread.cpus != plan.cpus and not (within and thread.cpus and thread.cpus <= plan.cpus):
            runs = thread.cpus.to_list() or "no CPU"
            found.append(f"thread {thread.tid} ({thread.name}) runs on {runs}, planned {planned}")
    if not view.threads and view.cpus_allowed != plan.cpus:
        found.append(f"process {view.pid} runs on {view.cpus_allowed.to_list() or 'no CPU'}, planned {planned}")
    if plan.memory_policy is MemoryPolicy.NONE:
        return tuple(found)
    outside = [n for n in plan.memory_nodes if view.mems_allowed and n not in view.mems_allowed]
    if outside:
        found.append(
            f"memory node {node_list(outside)} is outside Mems_allowed {node_list(view.mems_allowed) or 'none'}"
        )
    if view.mempolicy is not None and not _policy_held(plan, view) and not (within and _policy_within(plan, view)):
        held = f"{view.mempolicy} {node_list(view.mempolicy_nodes)}".strip()
        found.append(f"memory policy is {held}, planned {plan.memory_policy.value} {node_list(plan.memory_nodes)}")
    return tuple(found)


def narrowed_within(plan: BindingPlan, view: KernelView) -> tuple[Reason, ...]:
    """What runs on part of the plan, not outside it: threads on a subset of the planned CPUs (an OpenMP team's
    places, a pool's own pinning) and a memory policy over part of the planned nodes, one reason for each.

    Nothing for a plan that does not bind. These are the process's own narrowing: :func:`compare` with
    ``within=True`` does not count them as differences.
    """
    if not plan.binds:
        return ()
    groups: dict[CpuSet, list[int]] = {}
    for thread in view.threads:
        if thread.cpus and thread.cpus < plan.cpus:
            groups.setdefault(thread.cpus, []).append(thread.tid)
    found = [
        Reason.of("check_threads_within_plan", count=len(tids), cpus=cpus.to_list(), planned=plan.cpus.to_list(),
                  tids=", ".join(map(str, tids[:6])) + (" ..." if len(tids) > 6 else ""))
        for cpus, tids in sorted(groups.items(), key=lambda item: min(item[0].ids))
    ]
    if (plan.memory_policy is not MemoryPolicy.NONE and view.mempolicy is not None and not _policy_held(plan, view)
            and _policy_within(plan, view)):
        found.append(Reason.of("check_memory_within_plan", held=f"{view.mempolicy} {node_list(view.mempolicy_nodes)}",
                               planned=f"{plan.memory_policy.value} {node_list(plan.memory_nodes)}"))
    return tuple(found)


def _policy_held(plan: BindingPlan, view: KernelView) -> bool:
    """Whether the memory policy read back is the planned one: its mode and exactly its nodes."""
    wanted = {mode.word for mode in modes_for(plan.memory_policy)}
    return view.mempolicy in wanted and tuple(sorted(view.mempolicy_nodes)) == tuple(sorted(plan.memory_nodes))


def _policy_within(plan: BindingPlan, view: KernelView) -> bool:
    """Whether the memory policy read back keeps memory on part of the planned nodes: ``bind`` there, or for a
    ``preferred`` plan any policy that names only planned nodes (a ``bind`` plan never spills; those may)."""
    held = set(view.mempolicy_nodes)
    modes = _STRICT_MODES if plan.memory_policy is MemoryPolicy.BIND else _NODE_MODES
    return view.mempolicy in modes and bool(held) and held <= set(plan.memory_nodes)


class Drift(str, Enum):
    """How one thread differs from the binding it should hold (:func:`drift`); a thread that holds it has none."""

    #: On part of the planned CPUs only (an OpenMP runtime placing its team): the program's choice, within the
    #: plan; or, for the thread whose memory policy is read, a policy over part of the planned nodes.
    NARROWED = "narrowed"
    #: On CPUs outside the plan (a library pinned it elsewhere).
    MOVED = "moved"
    #: On every planned CPU and more (a library restored a wider mask).
    WIDENED = "widened"
    #: On the planned CPUs, but the memory policy read for it is not the planned one and not within it.
    POLICY = "policy"

    @property
    def repaired_by_default(self) -> bool:
        """Whether ``verify(repair=True)`` puts the binding back on it without ``include_narrowed``."""
        return self is not Drift.NARROWED


def cpu_drift(planned: CpuSet, cpus: CpuSet) -> Drift | None:
    """How a thread on ``cpus`` differs from ``planned`` CPUs: None (equal), narrowed, widened or moved.

    No CPU at all (an affinity that could not be read) counts as moved: it is not on the plan.
    """
    if cpus == planned:
        return None
    if cpus and cpus < planned:
        return Drift.NARROWED
    if cpus > planned:
        return Drift.WIDENED
    return Drift.MOVED


def policy_drift(plan: BindingPlan, view: KernelView) -> Drift | None:
    """How the memory policy read back (one thread's: ``view.mempolicy_thread``) differs from ``plan``: None (it is
    the planned one, unreadable, or the plan sets none), narrowed (within the planned nodes) or policy."""
    if plan.memory_policy is MemoryPolicy.NONE or view.mempolicy is None or _policy_held(plan, view):
        return None
    return Drift.NARROWED if _policy_within(plan, view) else Drift.POLICY


def drift(plan: BindingPlan, view: KernelView) -> tuple[Drift | None, ...]:
    """Each thread of ``view`` (in order) against ``plan``: the one classification ``check`` and ``verify`` use.

    CPUs first: moved or widened wins. The memory policy is known for one thread only, the one whose policy was
    read (``view.mempolicy_thread``: the calling thread of this process, the main thread of another); a policy
    outside the plan makes that thread ``policy`` (unless its CPUs moved or widened), a policy within the plan
    ``narrowed``. A plan that does not bind has no drift: every entry is None.
    """
    if not plan.binds:
        return tuple(None for _ in view.threads)
    policy = policy_drift(plan, view)
    reader = view.mempolicy_thread
    found = []
    for thread in view.threads:
        cpus = cpu_drift(plan.cpus, thread.cpus)
        if thread.tid == reader and policy is not None and cpus in (None, Drift.NARROWED):
            cpus = Drift.POLICY if policy is Drift.POLICY else Drift.NARROWED
        found.append(cpus)
    return tuple(found)


@dataclass(frozen=True, slots=True)
class Repair:
    """One thread the binding was put back on: the drift it had and what was set again (``cpus``, ``mempolicy``)."""

    tid: int
    drift: Drift
    what: tuple[str, ...]
