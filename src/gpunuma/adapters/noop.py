"""A binder that changes nothing: dry runs (``GPUNUMA_BIND=0``, ``--dry-run``) and tests."""

from __future__ import annotations

from gpunuma.core.plan import BindingPlan
from gpunuma.core.report import BindingReport

DRY_RUN_REASON = "dry run: nothing changed (GPUNUMA_BIND=0 or --dry-run)"


class NoopBinder:
    """Records every plan it is given in :attr:`applied` and reports that nothing was bound."""

    name = "noop"

    def __init__(self) -> None:
        self.applied: list[BindingPlan] = []

    def apply(self, plan: BindingPlan) -> BindingReport:
        """Record ``plan``; return a ``bound=False`` report with the plan's reasons and the dry-run note."""
        self.applied.append(plan)
        return BindingReport.not_bound(plan, self.name, (DRY_RUN_REASON,))
