"""NoopBinder: the dry run records what it was asked and changes nothing."""

from __future__ import annotations

import os

from gpunuma.adapters.noop import NoopBinder
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import MemoryPolicy
from gpunuma.core.ports import Binder


def test_records_every_plan_and_reports_not_bound_with_the_dry_run_reason() -> None:
    binder = NoopBinder()
    first = BindingPlan(gpus=(0,), nodes=(0,), cpus=CpuSet.of({0}), memory_policy=MemoryPolicy.BIND,
                        memory_nodes=(0,), reasons=("GPU 0 is local to node 0",))
    second = BindingPlan(gpus=(1,), nodes=(), cpus=CpuSet(), memory_policy=MemoryPolicy.NONE,
                         memory_nodes=(), reasons=("GPU 1 reports no locality",))
    affinity = os.sched_getaffinity(0)

    report = binder.apply(first)
    binder.apply(second)

    assert binder.applied == [first, second]
    assert not report.bound and report.method == "noop" and report.kernel is None
    assert report.reasons == ("GPU 0 is local to node 0", "dry run: nothing changed (GPUNUMA_BIND=0 or --dry-run)")
    assert os.sched_getaffinity(0) == affinity


def test_is_a_binder_port() -> None:
    assert isinstance(NoopBinder(), Binder)
