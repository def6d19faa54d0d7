"""A binder that changes nothing: dry runs (``GPUNUMA_BIND=0``, ``--dry-run``) and tests."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from gpunuma.adapters.kernel_view import read_kernel_view, read_pages
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.kernel_policy import Mempolicy
from gpunuma.core.pages import Pages
from gpunuma.core.plan import BindingPlan
from gpunuma.core.report import BindingReport, KernelView

DRY_RUN_REASON = "dry run: nothing changed (GPUNUMA_BIND=0 or --dry-run)"


class NoopBinder:
    """Records every request in :attr:`applied`, :attr:`repairs` and :attr:`migrations` and changes nothing.

    Reads this process back as the kernel holds it, so a dry run shows what is there.
    """

    name = "noop"

    def __init__(self) -> None:
        self.applied: list[BindingPlan] = []
        self.repairs: list[tuple[tuple[int, ...], CpuSet, Mempolicy | None]] = []
        self.migrations: list[tuple[int, ...]] = []

    def apply(self, plan: BindingPlan) -> BindingReport:
        """Record ``plan``; return a ``bound=False`` report with the plan's reasons and the dry-run note."""
        self.applied.append(plan)
        return BindingReport.not_bound(plan, self.name, (DRY_RUN_REASON,))

    def read_back(self) -> KernelView:
        """What the kernel holds for this process (nothing here changed it)."""
        return read_kernel_view()

    def pages(self) -> Pages | None:
        """Where this process's pages are (``/proc/self/numa_maps``)."""
        return read_pages()

    def repair(self, tids: Collection[int], cpus: CpuSet, mempolicy: Mempolicy | None = None) -> tuple[int, ...]:
        """Record the request; no thread is set, so none is returned."""
        self.repairs.append((tuple(tids), cpus, mempolicy))
        return ()

    def migrate(self, nodes: Sequence[int]) -> int:
        """Record the request; nothing moves, and nothing failed to move: 0."""
        self.migrations.append(tuple(nodes))
        return 0
