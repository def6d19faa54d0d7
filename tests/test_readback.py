"""read_kernel_view reads what the kernel holds; compare says where it differs from a plan."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from gpunuma.adapters.kernel_view import read_kernel_view
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import MemoryPolicy
from gpunuma.core.readback import compare
from gpunuma.core.report import KernelView, ThreadState
from gpunuma.errors import SysfsFormatError

NODE0 = CpuSet.parse_list("0-55,112-167")


def status(pid: int, name: str, cpus: str, mems: str = "0-1") -> str:
    return (
        f"Name:\t{name}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{pid}\nPid:\t{pid}\n"
        f"Cpus_allowed:\tff\nCpus_allowed_list:\t{cpus}\nMems_allowed_list:\t{mems}\n"
    )


def render_process(root: Path, pid: int, threads: dict[int, tuple[str, str]], numa_maps: str | None) -> None:
    """A /proc/<pid> tree of a DGX H100 Ray worker: status, task/<tid>/status, numa_maps."""
    base = root / str(pid)
    (base / "task").mkdir(parents=True)
    main_name, main_cpus = threads[pid]
    (base / "status").write_text(status(pid, main_name, main_cpus))
    for tid, (name, cpus) in threads.items():
        (base / "task" / str(tid)).mkdir()
        (base / "task" / str(tid) / "status").write_text(status(pid, name, cpus))
    if numa_maps is not None:
        (base / "numa_maps").write_text(numa_maps)


def plan(memory: MemoryPolicy = MemoryPolicy.PREFERRED) -> BindingPlan:
    return BindingPlan(gpus=(0,), nodes=(0,), cpus=NODE0, memory_policy=memory, memory_nodes=(0,), reasons=())


def test_reads_every_threads_affinity_and_names_the_unbound_one(tmp_path: Path) -> None:
    render_process(
        tmp_path, 1234,
        {1234: ("python", "0-55,112-167"), 1240: ("ray::IDLE", "0-223"), 1241: ("grpc_global_tim", "0-55,112-167")},
        numa_maps="55d0c8a00000 prefer:0 file=/usr/bin/python3.10 mapped=2 N0=2 kernelpagesize_kB=4\n",
    )

    view = read_kernel_view(1234, proc_root=tmp_path)

    assert view.pid == 1234 and view.cpus_allowed == NODE0 and view.mems_allowed == {0, 1}
    assert [(t.tid, t.name) for t in view.threads] == [(1234, "python"), (1240, "ray::IDLE"), (1241, "grpc_global_tim")]
    assert (view.mempolicy, view.mempolicy_nodes) == ("preferred", (0,))
    assert compare(plan(), view) == ("thread 1240 (ray::IDLE) runs on 0-223, planned 0-55,112-167",)


@pytest.mark.parametrize(
    ("field", "word", "nodes"),
    [
        ("default", "default", ()),
        ("bind:0-1", "bind", (0, 1)),
        ("bind=static:0", "bind", (0,)),
        ("prefer (many):0-1", "preferred_many", (0, 1)),
        ("interleave:0-3", "interleave", (0, 1, 2, 3)),
        ("weighted interleave:0-1", "weighted_interleave", (0, 1)),
        ("local", "local", ()),
    ],
)
def test_another_processs_policy_comes_from_the_first_numa_maps_line(
    tmp_path: Path, field: str, word: str, nodes: tuple[int, ...]
) -> None:
    render_process(tmp_path, 77, {77: ("python", "0-1")}, numa_maps=f"400000 {field} file=/bin/x mapped=1 N0=1\n")

    view = read_kernel_view(77, proc_root=tmp_path)

    assert (view.mempolicy, view.mempolicy_nodes) == (word, nodes)


def test_unreadable_numa_maps_means_policy_unknown_and_not_compared(tmp_path: Path) -> None:
    render_process(tmp_path, 77, {77: ("python", "0-55,112-167")}, numa_maps=None)

    view = read_kernel_view(77, proc_root=tmp_path)

    assert view.mempolicy is None
    assert compare(plan(MemoryPolicy.BIND), view) == ()


def test_a_numa_maps_node_list_beyond_any_kernel_is_a_format_error_naming_the_file(tmp_path: Path) -> None:
    render_process(tmp_path, 77, {77: ("python", "0-1")}, numa_maps="400000 bind:0-99999999 file=/bin/x\n")

    with pytest.raises(SysfsFormatError) as caught:
        read_kernel_view(77, proc_root=tmp_path)

    assert caught.value.path == str(tmp_path / "77" / "numa_maps")
    assert caught.value.text == "0-99999999"


def test_malformed_status_is_a_format_error(tmp_path: Path) -> None:
    render_process(tmp_path, 77, {77: ("python", "zero-one")}, numa_maps=None)

    with pytest.raises(SysfsFormatError, match="zero-one"):
        read_kernel_view(77, proc_root=tmp_path)


def test_missing_process_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_kernel_view(99999, proc_root=tmp_path)


def test_this_process_lists_its_live_threads_and_its_own_policy() -> None:
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        view = read_kernel_view()
    finally:
        release.set()
        worker.join()

    assert view.pid == os.getpid()
    assert {os.getpid(), worker.native_id} <= {t.tid for t in view.threads}
    assert view.mempolicy == "default"  # the test runner is never bound
    assert view.cpus_allowed == CpuSet.of(os.sched_getaffinity(0))


def view(policy: str | None, nodes: tuple[int, ...], mems: frozenset[int] = frozenset({0, 1})) -> KernelView:
    return KernelView(pid=9, cpus_allowed=NODE0, mems_allowed=mems, threads=(ThreadState(9, "python", NODE0),),
                      mempolicy=policy, mempolicy_nodes=nodes)


def test_memory_mismatches_in_plain_words() -> None:
    assert compare(plan(MemoryPolicy.BIND), view("bind", (0,))) == ()
    assert compare(plan(MemoryPolicy.PREFERRED), view("preferred", (0,))) == ()
    assert compare(plan(MemoryPolicy.BIND), view("default", ())) == ("memory policy is default, planned bind 0",)
    assert compare(plan(MemoryPolicy.PREFERRED), view("preferred", (1,))) == (
        "memory policy is preferred 1, planned preferred 0",)
    assert compare(plan(MemoryPolicy.NONE), view("interleave", (0, 1))) == ()


def test_a_memory_node_outside_mems_allowed_is_named() -> None:
    found = compare(plan(MemoryPolicy.BIND), view("bind", (0,), mems=frozenset({1})))

    assert "memory node 0 is outside Mems_allowed 1" in found


def test_a_plan_that_does_not_bind_has_nothing_to_compare() -> None:
    empty = BindingPlan(gpus=(0,), nodes=(), cpus=CpuSet(), memory_policy=MemoryPolicy.BIND, memory_nodes=(),
                        reasons=())

    assert compare(empty, view("default", ())) == ()
