"""Where the kernel's view of a process differs from a plan, in plain words (pure: no I/O)."""

from __future__ import annotations

from gpunuma.core.cpuset import node_list
from gpunuma.core.kernel_policy import modes_for
from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import MemoryPolicy
from gpunuma.core.report import KernelView


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
            f"memory node {node_list(outside)} is outside Mems_allowed {node_list(view.mems_allowed)}"
        )
    if view.mempolicy is not None:
        wanted = {mode.word for mode in modes_for(plan.memory_policy)}
        if view.mempolicy not in wanted or tuple(sorted(view.mempolicy_nodes)) != tuple(sorted(plan.memory_nodes)):
            held = f"{view.mempolicy} {node_list(view.mempolicy_nodes)}".strip()
            found.append(
                f"memory policy is {held}, planned {plan.memory_policy.value} {node_list(plan.memory_nodes)}"
            )
    return tuple(found)
