"""The one "not bound" report: a plan that changed nothing, and why (binders, dry runs, the composition root)."""

from __future__ import annotations

from gpunuma.cpuset import CpuSet
from gpunuma.plan import BindingPlan
from gpunuma.policy import MemoryPolicy
from gpunuma.report import BindingReport


def not_bound_report(plan: BindingPlan | None, method: str, extra: tuple[str, ...] = ()) -> BindingReport:
    """A ``bound=False`` report: the process was left as it was; ``extra`` says why.

    Without a plan (planning failed or there is nothing to bind), an empty plan carrying ``extra``
    stands in. Reasons already in the plan are not repeated.
    """
    if plan is None:
        plan = BindingPlan(
            gpus=(), nodes=(), cpus=CpuSet(), memory_policy=MemoryPolicy.NONE, memory_nodes=(), reasons=extra
        )
    added = tuple(reason for reason in extra if reason not in plan.reasons)
    return BindingReport(
        plan=plan, bound=False, method=method, cpus=CpuSet(), memory_policy=None, memory_nodes=(),
        reasons=(*plan.reasons, *added),
    )
