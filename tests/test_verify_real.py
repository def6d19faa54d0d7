"""``gpunuma.verify()`` and ``migrate=True`` on this machine's real kernel: a real thread pinned with
``os.sched_setaffinity`` on its thread id, the calling thread's real memory policy, the real ``numa_maps``, and
``migrate_pages(2)`` through libnuma and the raw syscall (on a one-node host every page is already there).

Every binding runs in a spawned child so the test runner itself is never changed.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

ALLOWED = sorted(os.sched_getaffinity(0))
needs_two_cpus = pytest.mark.skipif(len(ALLOWED) < 2, reason="a thread can drift off its binding only with 2+ CPUs")
ONE_NODE = len([n for n in os.listdir("/sys/devices/system/node") if n.startswith("node")]) == 1


def in_child(function: Any, *args: Any) -> Any:
    """Run ``function(*args)`` in a fresh spawned process and return its result."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result(timeout=120)


class Worker:
    """A real thread of the child, alive while the ``with`` block runs."""

    def __enter__(self) -> int:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.stop.wait, name="worker")
        self.thread.start()
        assert self.thread.native_id is not None
        return self.thread.native_id

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def _narrowed(binder: str) -> dict[str, Any]:
    import gpunuma

    with Worker() as tid:
        report = gpunuma.bind_to_node(0, binder=binder, env={})
        os.sched_setaffinity(tid, {ALLOWED[-1]})  # what an OpenMP runtime does to its team
        found = gpunuma.verify()
        left = gpunuma.verify(repair=True)
        kept = os.sched_getaffinity(tid)
        widened = gpunuma.verify(repair=True, include_narrowed=True)
        return {
            "bound": report.ok, "method": report.method, "cpus": sorted(report.cpus.ids),
            "found": (found.drift_of(tid), found.verdict.value), "left": [r.tid for r in left.repaired],
            "kept": sorted(kept), "widened": [(r.tid, r.drift, r.what) for r in widened.repaired],
            "after": sorted(os.sched_getaffinity(tid)), "tid": tid, "final": widened.verdict.value,
        }


@needs_two_cpus
@pytest.mark.parametrize("binder", ["libnuma", "syscall"])
def test_a_real_thread_narrowed_within_the_binding_is_left_alone_unless_asked(binder: str) -> None:
    from gpunuma.core.readback import Drift

    out = in_child(_narrowed, binder)

    assert out["bound"] and out["method"] == binder and out["cpus"] == ALLOWED
    assert out["found"] == (Drift.NARROWED, "as_expected")
    assert out["left"] == [] and out["kept"] == [ALLOWED[-1]]
    assert out["widened"] == [(out["tid"], Drift.NARROWED, ("cpus",))]
    assert out["after"] == ALLOWED and out["final"] == "as_expected"


def _off_the_binding(pinned: list[int]) -> dict[str, Any]:
    import gpunuma
    from gpunuma.core.cpuset import CpuSet
    from gpunuma.core.plan import BindingPlan
    from gpunuma.core.policy import MemoryPolicy

    plan = BindingPlan(gpus=(), nodes=(0,), cpus=CpuSet.of([ALLOWED[-1]]), memory_policy=MemoryPolicy.NONE,
                       memory_nodes=(), reasons=("the last CPU",))
    with Worker() as tid:
        assert gpunuma.apply_plan(plan).ok
        os.sched_setaffinity(tid, set(pinned))
        found = gpunuma.verify()
        repaired = gpunuma.verify(repair=True)
        return {"found": (found.drift_of(tid), found.verdict.value), "tid": tid,
                "repaired": [(r.tid, r.drift) for r in repaired.repaired],
                "after": sorted(os.sched_getaffinity(tid)), "final": repaired.verdict.value}


@needs_two_cpus
@pytest.mark.parametrize(("pinned", "drift"), [(ALLOWED[:1], "moved"), (ALLOWED, "widened")])
def test_a_real_thread_pinned_off_the_binding_is_found_and_put_back(pinned: list[int], drift: str) -> None:
    out = in_child(_off_the_binding, pinned)

    assert out["found"] == (drift, "not_as_expected")
    assert out["repaired"] == [(out["tid"], drift)]
    assert out["after"] == [ALLOWED[-1]] and out["final"] == "as_expected"


def _policy_changed() -> dict[str, Any]:
    import gpunuma
    from gpunuma.adapters.mempolicy import MempolicySyscalls
    from gpunuma.core.kernel_policy import Mempolicy, Mode

    report = gpunuma.bind_to_node(0, env={})
    syscalls = MempolicySyscalls()
    syscalls.set(Mempolicy(Mode.LOCAL))  # a library's numa_set_localalloc() on this thread
    found = gpunuma.verify()
    repaired = gpunuma.verify(repair=True)
    caller = threading.get_native_id()
    return {"held": (report.memory_policy, report.memory_nodes), "found": found.drift_of(caller),
            "repaired": [(r.tid == caller, r.drift, r.what) for r in repaired.repaired],
            "after": str(syscalls.get()), "final": repaired.verdict.value}


def test_the_calling_threads_real_memory_policy_is_found_changed_and_put_back() -> None:
    out = in_child(_policy_changed)

    assert out["held"] == ("preferred", (0,))
    assert out["found"] == "policy"
    assert out["repaired"] == [(True, "policy", ("mempolicy",))]
    assert out["after"] == "preferred 0" and out["final"] == "as_expected"


def _memory() -> dict[str, Any]:
    import gpunuma

    gpunuma.bind_to_node(0, env={})
    data = b"\x01" * (32 << 20)
    result = gpunuma.verify()
    assert data
    return {"total": result.memory.total if result.memory else 0, "page_size": result.memory.page_size,
            "local": result.local_fraction, "json": result.to_dict()["local_fraction"]}


def test_the_real_numa_maps_is_read_back_with_the_binding() -> None:
    out = in_child(_memory)

    assert out["total"] >= (32 << 20) // out["page_size"]
    assert out["local"] == out["json"] and 0 < out["local"] <= 1
    if ONE_NODE:
        assert out["local"] == 1.0


def _late_bind(binder: str) -> dict[str, Any]:
    import gpunuma
    from gpunuma.compose import make_binder

    data = b"\x01" * (32 << 20)  # touched before the bind, as weights loaded before a late bind are
    report = gpunuma.bind_to_node(0, binder=binder, env={}, migrate=True)
    left = make_binder(binder).migrate([0])
    assert data
    migration = report.migration
    assert migration is not None
    return {"method": report.method, "code": report.reason_codes[-1], "left": left,
            "migration": (migration.nodes, migration.pages_not_moved, migration.local_before, migration.local_after),
            "moved": migration.pages_moved, "seconds": migration.seconds}


@pytest.mark.parametrize("binder", ["libnuma", "syscall"])
def test_a_late_bind_migrates_through_the_real_kernel(binder: str) -> None:
    out = in_child(_late_bind, binder)

    assert out["method"] == binder and out["code"] == "migrate_pages_moved"
    assert out["left"] >= 0 and 0 <= out["seconds"] < 10
    nodes, not_moved, before, after = out["migration"]
    assert nodes == (0,) and not_moved >= 0 and 0 < after <= 1
    if ONE_NODE:  # nothing to move: every page is on node 0 already
        assert (before, after, out["moved"]) == (1.0, 1.0, 0)
