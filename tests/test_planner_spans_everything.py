"""Planner rule 9: a plan that spans every CPU and every memory node changes nothing, so it is not a binding."""

from __future__ import annotations

import pytest

from gpunuma.core.planner import plan_binding
from gpunuma.core.policy import MemoryPolicy, Policy
from gpunuma.core.reasons import codes
from gpunuma_fakes import machine


def plan(name: str, gpus: list[int], policy: Policy = Policy(), node: int | None = None):
    simulated = machine(name)
    return plan_binding(simulated.topology(), gpus, simulated.allowed(), policy, node=node)


@pytest.mark.parametrize(
    ("name", "gpus", "policy"),
    [
        ("workstation", [0], Policy()),  # one node: every CPU, all memory
        ("dgx-h100", list(range(8)), Policy()),  # all eight GPUs: both nodes, preferred_many 0,1
        ("dgx-h100", list(range(8)), Policy(memory=MemoryPolicy.NONE)),
    ],
    ids=["one-node-workstation", "dgx-all-gpus", "dgx-all-gpus-memory-none"],
)
def test_a_plan_over_every_cpu_and_memory_node_is_not_a_binding(name, gpus, policy):
    result = plan(name, gpus, policy)

    assert not result.binds and result.cpus.to_list() == "" and result.nodes == ()
    assert codes(result.reasons)[-1] == "spans_everything"
    assert result.gpus == tuple(sorted(gpus)), "the plan still says which GPUs it was for"


def test_an_explicit_node_is_bound_even_when_it_is_everything():
    result = plan("workstation", [], node=0)

    assert result.binds and result.nodes == (0,) and result.cpus.to_list() == "0-15"
    assert "spans_everything" not in codes(result.reasons)


@pytest.mark.parametrize(
    ("name", "gpus", "nodes", "why"),
    [
        ("gh200", [0], (0,), "Grace node 0 holds every CPU, but memory prefers it over the HBM node 1"),
        ("container-dgx-h100", [0], (0,), "the cgroup, not the plan, keeps it off node 1"),
        ("dgx-h100", [0, 1, 2, 3], (0,), "four GPUs of one socket"),
        ("snc", [0, 3], (0, 1), "two of four nodes"),
    ],
)
def test_a_plan_that_narrows_cpus_or_memory_still_binds(name, gpus, nodes, why):
    result = plan(name, gpus)

    assert result.binds and result.nodes == nodes, why


def test_the_catalogue_says_the_one_node_machines_do_not_bind():
    assert machine("workstation").expected_nodes == {0: None}
    assert machine("no-numa").expected_nodes == {0: None}
