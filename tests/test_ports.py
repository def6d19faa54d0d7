"""The composition root talks to its two ports as their protocols say: read the topology and the
process's limits once, apply exactly the plan it reports, and never reach the binder when a source fails.

The ports are spied on (pytest-mock) around real adapters of the simulated dgx-h100.
"""

from __future__ import annotations

import pytest
from pytest_mock import MockerFixture

from gpunuma.adapters.static import StaticTopology
from gpunuma.api import bind_to_gpu, plan_for
from gpunuma.errors import NotBoundError, TopologyUnavailableError
from gpunuma_fakes import machine

DGX = machine("dgx-h100")


@pytest.fixture
def source() -> StaticTopology:
    return StaticTopology(DGX.topology(), DGX.allowed())


def test_one_bind_reads_each_port_once_and_applies_the_plan_it_reports(
    source: StaticTopology, mocker: MockerFixture
) -> None:
    kernel = DGX.kernel()
    read, allowed = mocker.spy(source, "read"), mocker.spy(source, "allowed")
    apply = mocker.spy(kernel, "apply")

    report = bind_to_gpu(3, source=source, binder=kernel, env={})

    assert report.bound and report.plan.nodes == (0,)
    assert (read.call_count, allowed.call_count) == (1, 1)
    apply.assert_called_once_with(report.plan)
    assert apply.spy_return is report


def test_planning_alone_never_touches_a_binder(source: StaticTopology, mocker: MockerFixture) -> None:
    kernel = DGX.kernel()
    apply = mocker.spy(kernel, "apply")
    read = mocker.spy(source, "read")

    plan = plan_for(5, source=source, env={})

    assert plan.nodes == (1,)
    read.assert_called_once_with()
    apply.assert_not_called()


def test_a_failing_topology_source_is_not_bound_and_never_reaches_the_binder(
    source: StaticTopology, mocker: MockerFixture
) -> None:
    kernel = DGX.kernel()
    mocker.patch.object(source, "read", side_effect=TopologyUnavailableError("sysfs: no such directory"))
    apply = mocker.spy(kernel, "apply")

    report = bind_to_gpu(3, source=source, binder=kernel, env={})

    assert not report.bound
    assert report.reason_codes[-1] == "plan_failed"
    assert report.reasons[-1].values["error"] == "sysfs: no such directory"
    apply.assert_not_called()
    with pytest.raises(NotBoundError, match="no such directory") as caught:
        bind_to_gpu(3, source=source, binder=kernel, env={}, strict=True)
    assert isinstance(caught.value.__cause__, TopologyUnavailableError)
    apply.assert_not_called()
