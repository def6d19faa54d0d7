"""A binding that is not on its GPU's own node says so, and why, and ``require_local`` refuses it.

The container on a DGX H100 is allowed node 0's CPUs 0-47,112-159 only: GPU 5 lives on node 1, so its plan falls
back to node 0, the nearest node with allowed CPUs (planner rule 5).
"""

from __future__ import annotations

import logging

import pytest

from gpunuma.api import bind_to_gpu, plan_for
from gpunuma.errors import NotBoundError
from gpunuma.settings import configure
from gpunuma_fakes import machine

CONTAINER = machine("container-dgx-h100")


@pytest.fixture
def container(rendered):
    return CONTAINER.source(rendered("container-dgx-h100")), CONTAINER.kernel()


def test_a_binding_moved_off_the_gpus_node_is_a_warning_that_says_so_and_why(container, caplog):
    source, kernel = container
    with caplog.at_level(logging.INFO, logger="gpunuma"):
        report = bind_to_gpu(5, source=source, binder=kernel, env={})

    assert report.bound and report.plan.nodes == (0,) and report.plan.elsewhere == (5,)
    (line,) = [r for r in caplog.records if "bound to NUMA node" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert "is on node 1" in line.getMessage() and "not local to the GPU" in line.getMessage()
    assert "allowed by this cgroup" in line.getMessage(), "the reason: the cgroup, not the GPU"
    assert report.plan.reason_codes.count("not_on_gpu_node") == 1


def test_a_binding_on_the_gpus_own_node_is_local_and_an_info_line(container, caplog):
    source, kernel = container
    with caplog.at_level(logging.INFO, logger="gpunuma"):
        report = bind_to_gpu(1, source=source, binder=kernel, env={}, require_local=True)

    assert report.bound and report.plan.elsewhere == () and report.plan.to_dict()["elsewhere"] == []
    assert [r.levelno for r in caplog.records if "bound to NUMA node" in r.getMessage()] == [logging.INFO]


@pytest.mark.parametrize(("keywords", "env"), [({"require_local": True}, {}), ({}, {"GPUNUMA_REQUIRE": "local"})],
                         ids=["keyword", "variable"])
def test_require_local_refuses_a_binding_elsewhere_and_binds_nothing(container, keywords, env):
    source, kernel = container

    with pytest.raises(NotBoundError) as caught:
        bind_to_gpu(5, source=source, binder=kernel, env=env, **keywords)

    assert kernel.applied == [], "the process is left as it was"
    assert caught.value.report.reason_codes[-1] == "not_local_refused"
    assert caught.value.report.reasons[-1].values == {"gpu": "GPU 5 (0000:c3:00.0)", "own": 1, "nodes": "0"}


def test_gpunuma_require_takes_a_flag_or_local_and_names_both_when_wrong():
    assert (configure({"GPUNUMA_REQUIRE": "local"}).require,
            configure({"GPUNUMA_REQUIRE": "local"}).require_local) == (True, True)
    assert (configure({"GPUNUMA_REQUIRE": "1"}).require,
            configure({"GPUNUMA_REQUIRE": "1"}).require_local) == (True, False)
    wrong = configure({"GPUNUMA_REQUIRE": "everywhere"}, warn=False)
    assert not wrong.require and "or local" in wrong.problems[0]


def test_an_explicit_argument_wins_over_gpunuma_require(container):
    source, kernel = container
    report = bind_to_gpu(5, source=source, binder=kernel, env={"GPUNUMA_REQUIRE": "local"}, require_bound=False)
    assert report.bound and report.plan.elsewhere == (5,)


def test_the_plan_of_a_gpu_on_its_own_allowed_node_is_local(rendered):
    dgx = machine("dgx-h100")
    assert plan_for(5, source=dgx.source(rendered("dgx-h100")), env={}).elsewhere == ()
