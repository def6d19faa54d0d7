"""What a binder did and what the kernel holds afterwards, thread by thread."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gpunuma.core.childenv import child_env
from gpunuma.core.cpuset import CpuSet, node_list
from gpunuma.core.pages import DEFAULT_PAGE_KB, Pages
from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import MemoryPolicy
from gpunuma.core.reasons import codes, details


@dataclass(frozen=True, slots=True)
class ThreadState:
    """One thread's CPU affinity as the kernel reports it (``/proc/<pid>/task/<tid>/status``)."""

    tid: int
    name: str
    cpus: CpuSet


@dataclass(frozen=True, slots=True)
class KernelView:
    """The kernel's view of a process after binding, read back rather than assumed."""

    pid: int
    cpus_allowed: CpuSet
    mems_allowed: frozenset[int]
    threads: tuple[ThreadState, ...]
    #: The memory policy mode (``default``, ``bind``, ``preferred``...) of one thread, None if unreadable: the
    #: calling thread's for this process (``get_mempolicy``), the main thread's for another (``numa_maps``).
    mempolicy: str | None = None
    mempolicy_nodes: tuple[int, ...] = ()
    #: The thread whose memory policy ``mempolicy`` is; None: the main thread (``pid``).
    mempolicy_tid: int | None = None

    @property
    def mempolicy_thread(self) -> int:
        """The thread whose memory policy was read: the calling thread for this process, else the main thread."""
        return self.pid if self.mempolicy_tid is None else self.mempolicy_tid


@dataclass(frozen=True, slots=True)
class Migration:
    """The pages a binding moved to its memory nodes afterwards (``migrate=True``), as ``numa_maps`` showed them
    just before and just after ``migrate_pages(2)``."""

    #: The nodes the pages were moved to: the binding's memory nodes.
    nodes: tuple[int, ...]
    #: Pages off ``nodes`` before, less those off them after (base pages); what else the process allocated or
    #: freed meanwhile counts too.
    pages_moved: int
    #: The pages ``migrate_pages(2)`` said it could not move (shared with another process, pinned, no room).
    pages_not_moved: int
    #: The share of the process's pages on ``nodes`` before and after (None: no page counted, or unreadable).
    local_before: float | None
    local_after: float | None
    #: Wall time of the ``migrate_pages(2)`` call.
    seconds: float
    #: The base page ``pages_moved`` counts, in bytes.
    page_size: int

    @classmethod
    def measured(
        cls, nodes: tuple[int, ...], before: Pages | None, after: Pages | None, not_moved: int, seconds: float
    ) -> Migration:
        """The migration that ``before`` and ``after`` (``numa_maps`` around the call) show."""

        def off(pages: Pages | None) -> int:
            return pages.total - pages.on(nodes) if pages is not None else 0

        moved = max(0, off(before) - off(after)) if before is not None and after is not None else 0
        known = after if after is not None else before
        size = known.page_size if known is not None else DEFAULT_PAGE_KB * 1024
        return cls(
            nodes=nodes, pages_moved=moved, pages_not_moved=not_moved,
            local_before=before.local_fraction(nodes) if before is not None else None,
            local_after=after.local_fraction(nodes) if after is not None else None,
            seconds=seconds, page_size=size,
        )

    @property
    def gigabytes_per_second(self) -> float | None:
        """What moved over the call's time, in GB/s (10**9 bytes); None when nothing moved."""
        if not self.pages_moved or self.seconds <= 0:
            return None
        return self.pages_moved * self.page_size / self.seconds / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": list(self.nodes), "pages_moved": self.pages_moved, "pages_not_moved": self.pages_not_moved,
            "local_before": self.local_before, "local_after": self.local_after, "seconds": self.seconds,
            "page_size": self.page_size,
        }


@dataclass(frozen=True, slots=True)
class BindingReport:
    """The outcome of applying a plan: whether it bound, how, and what the kernel holds now."""

    plan: BindingPlan
    bound: bool
    #: Which path applied it: ``libnuma``, ``syscall``, ``numactl``, ``noop``, ``simulated``.
    method: str
    cpus: CpuSet
    #: The memory policy actually in force (None when not applied or refused).
    memory_policy: str | None
    memory_nodes: tuple[int, ...]
    reasons: tuple[str, ...]
    kernel: KernelView | None = None
    #: Planned-versus-kernel differences, in plain words; empty when they agree.
    mismatches: tuple[str, ...] = ()
    #: The pages moved to the memory nodes after binding (``migrate=True``); None when none were moved.
    migration: Migration | None = None

    @classmethod
    def not_bound(cls, plan: BindingPlan | None, method: str, extra: tuple[str, ...] = ()) -> BindingReport:
        """A ``bound=False`` report: the process was left as it was; ``extra`` says why.

        Without a plan (planning failed or there is nothing to bind), an empty plan carrying ``extra``
        stands in. Reasons already in the plan are not repeated.
        """
        if plan is None:
            plan = BindingPlan(
                gpus=(), nodes=(), cpus=CpuSet(), memory_policy=MemoryPolicy.NONE, memory_nodes=(), reasons=extra
            )
        added = tuple(reason for reason in extra if reason not in plan.reasons)
        return cls(
            plan=plan, bound=False, method=method, cpus=CpuSet(), memory_policy=None, memory_nodes=(),
            reasons=(*plan.reasons, *added),
        )

    @property
    def reason_codes(self) -> tuple[str, ...]:
        """The code of each reason, in order (``note`` for text an adapter gave without one)."""
        return codes(self.reasons)

    def in_force(self) -> BindingPlan:
        """The plan as it holds: the CPUs the kernel granted, and the memory policy that holds (``none`` where it
        was left alone or refused). What a drifted thread is compared with and put back to."""
        if self.memory_policy is None:
            return replace(self.plan, cpus=self.cpus, memory_policy=MemoryPolicy.NONE, memory_nodes=())
        return replace(self.plan, cpus=self.cpus, memory_nodes=self.memory_nodes)

    def __bool__(self) -> bool:
        """A report is true when the process was bound as planned: ``if not gpunuma.bind_to_gpu(): ...``.

        A read-back that differs from the plan (a thread left on other CPUs) is false, as :attr:`ok` is.
        """
        return self.ok

    @property
    def ok(self) -> bool:
        return self.bound and not self.mismatches

    def summary(self) -> str:
        """One line for logs: ``bound to NUMA node 0 (CPUs 0-55,112-167), memory preferred 0``.

        A read-back that differs from the plan (a thread left on other CPUs) never reads as bound.
        """
        if not self.bound:
            return "not bound: " + (self.reasons[-1] if self.reasons else "no reason recorded")
        if self.mismatches:
            more = f" (and {len(self.mismatches) - 1} more)" if len(self.mismatches) > 1 else ""
            return f"not bound as planned: {self.mismatches[0]}{more}"
        nodes = node_list(self.plan.nodes) or "?"
        memory = self.memory_policy or "unchanged"
        if self.memory_nodes and self.memory_policy not in (None, "none", "default"):
            memory += " " + node_list(self.memory_nodes)
        return f"bound to NUMA node {nodes} (CPUs {self.cpus.to_list()}), memory {memory}"

    def env(self) -> dict[str, str]:
        """What a child of this process should see: the bound CPUs and nodes, the plan's nearest NICs.

        Not bound: the NIC variables only. ``gpunuma exec`` and ``start_bound_process`` add these to
        the child's environment without overwriting a variable that is already set.
        """
        plan = self.plan
        return child_env(self.cpus if self.bound else CpuSet(), plan.nodes, plan.nics, plan.threads, plan.places)

    def to_dict(self) -> dict[str, Any]:
        kernel = None
        if self.kernel is not None:
            kernel = {
                "pid": self.kernel.pid,
                "cpus_allowed": self.kernel.cpus_allowed.to_list(),
                "mems_allowed": sorted(self.kernel.mems_allowed),
                "mempolicy": self.kernel.mempolicy,
                "mempolicy_nodes": list(self.kernel.mempolicy_nodes),
                "threads": [
                    {"tid": t.tid, "name": t.name, "cpus": t.cpus.to_list()} for t in self.kernel.threads
                ],
            }
        return {
            "bound": self.bound,
            "method": self.method,
            "cpus": self.cpus.to_list(),
            "memory_policy": self.memory_policy,
            "memory_nodes": list(self.memory_nodes),
            "reasons": list(self.reasons),
            "reason_details": details(self.reasons),
            "mismatches": list(self.mismatches),
            "plan": self.plan.to_dict(),
            "kernel": kernel,
            "migration": self.migration.to_dict() if self.migration is not None else None,
        }
