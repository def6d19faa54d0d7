"""How a thread drifted from the binding: one classification, used by ``check`` and ``verify`` (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import MemoryPolicy
from gpunuma.core.readback import Drift, compare, cpu_drift, drift, narrowed_within
from gpunuma.core.report import KernelView, ThreadState

#: A DGX H100 worker bound to GPU 5's node: node 1, memory preferred there.
NODE1 = CpuSet.parse_list("56-111,168-223")
PLAN = BindingPlan(gpus=(5,), nodes=(1,), cpus=NODE1, memory_policy=MemoryPolicy.PREFERRED, memory_nodes=(1,),
                   reasons=("GPU 5 is on node 1",))
MAIN = 4242


def view(*threads: tuple[int, str], policy: tuple[str, tuple[int, ...]] = ("preferred", (1,)),
         policy_tid: int | None = None) -> KernelView:
    return KernelView(
        pid=MAIN, cpus_allowed=CpuSet.parse_list(threads[0][1]), mems_allowed=frozenset({0, 1}),
        threads=tuple(ThreadState(tid, f"t{tid}", CpuSet.parse_list(cpus)) for tid, cpus in threads),
        mempolicy=policy[0], mempolicy_nodes=policy[1], mempolicy_tid=policy_tid,
    )


@pytest.mark.parametrize(("cpus", "expected"), [
    ("56-111,168-223", None),
    ("56-69,168-181", Drift.NARROWED),  # an OpenMP runtime's place: part of the plan
    ("0-223", Drift.WIDENED),  # a library restored the whole machine's mask
    ("0-55,112-167", Drift.MOVED),  # pinned to node 0
    ("50-60", Drift.MOVED),  # part on the plan, part off it
    ("", Drift.MOVED),  # no CPU read: not on the plan
])
def test_a_threads_cpus_against_the_plans(cpus: str, expected: Drift | None) -> None:
    assert cpu_drift(NODE1, CpuSet.parse_list(cpus)) is expected


def test_every_thread_is_classified_in_order() -> None:
    found = drift(PLAN, view((MAIN, "56-111,168-223"), (MAIN + 1, "0-3"), (MAIN + 2, "0-223"), (MAIN + 3, "60")))

    assert found == (None, Drift.MOVED, Drift.WIDENED, Drift.NARROWED)


@pytest.mark.parametrize(("policy", "expected"), [
    (("local", ()), Drift.POLICY),
    (("default", ()), Drift.POLICY),
    (("preferred", (0,)), Drift.POLICY),
    (("bind", (1,)), Drift.NARROWED),  # stricter, on the planned node: within the plan
    (("preferred", (1,)), None),
])
def test_the_memory_policy_drifts_on_the_thread_it_was_read_from(policy: tuple[str, tuple[int, ...]],
                                                                  expected: Drift | None) -> None:
    caller = MAIN + 1
    found = drift(PLAN, view((MAIN, "56-111,168-223"), (caller, "56-111,168-223"), policy=policy, policy_tid=caller))

    assert found == (None, expected)


def test_moved_cpus_win_over_a_changed_policy_and_a_changed_policy_over_narrowed_cpus() -> None:
    moved = drift(PLAN, view((MAIN, "0-3"), policy=("local", ())))
    narrowed = drift(PLAN, view((MAIN, "60"), policy=("local", ())))

    assert (moved, narrowed) == ((Drift.MOVED,), (Drift.POLICY,))


def test_a_plan_that_sets_no_memory_policy_has_no_policy_drift() -> None:
    no_memory = BindingPlan(gpus=(5,), nodes=(1,), cpus=NODE1, memory_policy=MemoryPolicy.NONE, memory_nodes=(),
                            reasons=())

    assert drift(no_memory, view((MAIN, "56-111,168-223"), policy=("local", ()))) == (None,)


def test_a_plan_that_binds_nothing_has_no_drift() -> None:
    nothing = BindingPlan(gpus=(), nodes=(), cpus=CpuSet(), memory_policy=MemoryPolicy.NONE, memory_nodes=(),
                          reasons=())

    assert drift(nothing, view((MAIN, "0-3"), (MAIN + 1, "0-223"))) == (None, None)


def test_only_narrowed_drift_is_left_alone_by_default() -> None:
    assert [d.value for d in Drift if d.repaired_by_default] == ["moved", "widened", "policy"]


CPUS = list(range(8))


@settings(max_examples=300, deadline=None)
@given(
    planned=st.sets(st.sampled_from(CPUS), min_size=1),
    threads=st.lists(st.sets(st.sampled_from(CPUS)), min_size=1, max_size=5),
    policy=st.sampled_from([("preferred", (0,)), ("preferred", (1,)), ("bind", (0,)), ("local", ()), None]),
)
def test_drift_agrees_with_the_verdict_of_check(planned: set[int], threads: list[set[int]],
                                                policy: tuple[str, tuple[int, ...]] | None) -> None:
    """Moved, widened and policy are exactly what ``check`` counts as differences; narrowed exactly its notes."""
    plan = BindingPlan(gpus=(0,), nodes=(0,), cpus=CpuSet.of(planned), memory_policy=MemoryPolicy.PREFERRED,
                       memory_nodes=(0,), reasons=())
    held = KernelView(
        pid=MAIN, cpus_allowed=CpuSet.of(threads[0]), mems_allowed=frozenset({0, 1}),
        threads=tuple(ThreadState(MAIN + i, "t", CpuSet.of(cpus)) for i, cpus in enumerate(threads)),
        mempolicy=policy[0] if policy else None, mempolicy_nodes=policy[1] if policy else (),
    )

    found = drift(plan, held)
    differs = {Drift.MOVED, Drift.WIDENED, Drift.POLICY}

    assert bool(compare(plan, held, within=True)) == any(d in differs for d in found)
    narrowed_threads = sum(1 for t in held.threads if t.cpus and t.cpus < plan.cpus)
    notes = narrowed_within(plan, held)
    noted = sum(note.values["count"] for note in notes if note.code == "check_threads_within_plan")
    assert noted == narrowed_threads
