"""SyscallBinder binds without libnuma; the default binder falls back to it and says so."""

from __future__ import annotations

import ctypes
import errno
import multiprocessing
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gpunuma import compose
from gpunuma.adapters.mempolicy import SYSCALL_NUMBERS, MempolicySyscalls, known_nodes
from gpunuma.adapters.process import ProcessBinder
from gpunuma.adapters.syscall import SyscallBinder
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.kernel_policy import Mempolicy, Mode
from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import MemoryPolicy
from gpunuma.errors import BindError

ALLOWED = frozenset(os.sched_getaffinity(0))
FIRST_CPU = min(ALLOWED)


def plan(cpus: set[int], memory: MemoryPolicy, nodes: tuple[int, ...] = (0,)) -> BindingPlan:
    return BindingPlan(
        gpus=(0,), nodes=nodes, cpus=CpuSet.of(cpus), memory_policy=memory, memory_nodes=nodes,
        reasons=("GPU 0 is local to node 0",),
    )


def in_child(function: Any, *args: Any) -> Any:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result(timeout=120)


def _bind(binder: Any, the_plan: BindingPlan) -> Any:
    report = binder.apply(the_plan)
    return report, frozenset(os.sched_getaffinity(0)), MempolicySyscalls().get()


@pytest.mark.skipif(len(ALLOWED) < 2, reason="needs 2+ CPUs to prove a change")
def test_binds_cpus_and_memory_with_raw_syscalls() -> None:
    report, affinity, held = in_child(_bind, SyscallBinder(), plan({FIRST_CPU}, MemoryPolicy.BIND))

    assert report.bound and report.method == "syscall" and report.mismatches == ()
    assert affinity == {FIRST_CPU}
    assert held == Mempolicy(Mode.BIND, (0,))
    assert report.kernel.mempolicy == "bind" and report.kernel.mempolicy_nodes == (0,)


def test_failure_raises_bind_error_and_changes_nothing() -> None:

    result = in_child(_fail, plan({999}, MemoryPolicy.PREFERRED, nodes=(5,)))

    assert result["error"].startswith("CPUs 999 are not online")
    assert result["before"] == result["after"]


def _fail(the_plan: BindingPlan) -> dict[str, Any]:
    syscalls = MempolicySyscalls()
    before = (frozenset(os.sched_getaffinity(0)), syscalls.get())
    try:
        SyscallBinder().apply(the_plan)
        error = ""
    except BindError as err:
        error = str(err)
    return {"before": before, "after": (frozenset(os.sched_getaffinity(0)), syscalls.get()), "error": error}


def test_a_memory_node_that_does_not_exist_raises_and_changes_nothing() -> None:
    result = in_child(_fail, plan({FIRST_CPU}, MemoryPolicy.PREFERRED, nodes=(7,)))

    assert "memory node 7 does not exist on this machine (nodes 0" in result["error"]
    assert result["before"] == result["after"]


class RefusingSetter:
    """A memory setter that fails as a kernel refusing the policy does: with ``code``, changing nothing."""

    name = "syscall"

    def __init__(self, code: int) -> None:
        self.code = code
        self.syscalls = MempolicySyscalls()
        self.calls: list[tuple[Mode, tuple[int, ...]]] = []

    def set(self, mode: Mode, nodes: tuple[int, ...]) -> None:
        self.calls.append((mode, nodes))
        raise OSError(self.code, os.strerror(self.code))


def _apply_refused(code: int, the_plan: BindingPlan) -> Any:
    setter = RefusingSetter(code)
    report = ProcessBinder(setter).apply(the_plan)
    return report, frozenset(os.sched_getaffinity(0)), MempolicySyscalls().get(), setter.calls


@pytest.mark.skipif(len(ALLOWED) < 2, reason="needs 2+ CPUs to prove a change")
@pytest.mark.parametrize(
    "code",
    [errno.EPERM, errno.EACCES, errno.EINVAL],
    ids=["seccomp-without-cap-sys-nice", "eacces", "cpuset-mems-excludes-node-0"],
)
def test_a_policy_refused_for_an_existing_node_binds_cpus_only(code: int) -> None:
    report, affinity, held, calls = in_child(_apply_refused, code, plan({FIRST_CPU}, MemoryPolicy.BIND))

    assert calls == [(Mode.BIND, (0,))]
    assert report.bound and affinity == {FIRST_CPU} and report.cpus == CpuSet.of({FIRST_CPU})
    assert report.memory_policy is None and held == Mempolicy(Mode.DEFAULT)
    assert report.reasons[-1] == f"memory policy refused by the kernel ({errno.errorcode[code]}): bound CPUs only"
    assert report.mismatches == ()


def test_a_node_the_sys_tree_lists_as_online_is_refused_not_an_error(tmp_path: Path) -> None:
    # A host with nodes 0-7 whose cpuset.mems excludes node 7: set_mempolicy gives EINVAL, CPUs stay bound.
    sys_root = tmp_path / "sys"
    (sys_root / "devices/system/node").mkdir(parents=True)
    (sys_root / "devices/system/node/online").write_text("0-7\n")

    report, affinity, held = in_child(
        _bind, SyscallBinder(sys_root=str(sys_root)), plan(set(ALLOWED), MemoryPolicy.PREFERRED, (7,))
    )

    assert report.bound and affinity == ALLOWED
    assert report.reasons[-1] == "memory policy refused by the kernel (EINVAL): bound CPUs only"
    assert held == Mempolicy(Mode.DEFAULT)


def test_known_nodes_reads_online_then_possible(tmp_path: Path) -> None:
    nodes = tmp_path / "devices/system/node"
    nodes.mkdir(parents=True)
    assert known_nodes(tmp_path) is None
    (nodes / "possible").write_text("0-3\n")
    assert known_nodes(tmp_path) == {0, 1, 2, 3}
    (nodes / "online").write_text("0,2\n")
    assert known_nodes(tmp_path) == {0, 2}


def test_several_preferred_nodes_use_preferred_many_on_kernels_that_have_it() -> None:
    from gpunuma.adapters.process import kernel_at_least

    if not kernel_at_least((5, 15)):
        pytest.skip("MPOL_PREFERRED_MANY needs Linux 5.15+")
    # Node 0 is the only node here, so ask for it as a one-element "many" through the syscall directly.
    result = in_child(_set_and_get, Mempolicy(Mode.PREFERRED_MANY, (0,)))

    assert result == Mempolicy(Mode.PREFERRED_MANY, (0,))


def _set_and_get(policy: Mempolicy) -> Mempolicy:
    syscalls = MempolicySyscalls()
    syscalls.set(policy)
    return syscalls.get()


def test_default_binder_falls_back_to_syscalls_when_libnuma_is_missing() -> None:
    binder = compose.default_binder(library="libnope.so")

    assert isinstance(binder, SyscallBinder) and binder.name == "syscall"
    report = binder.apply(plan(set(), MemoryPolicy.BIND))
    assert report.method == "syscall"
    assert "libnope.so" in report.reasons[-1] and "raw syscalls" in report.reasons[-1]


def test_default_binder_is_libnuma_when_present() -> None:
    assert compose.default_binder().name == "libnuma"


def test_pickles_with_its_notes() -> None:
    binder = SyscallBinder(notes=("libnuma not used",), sys_root="/host/sys")

    copy = pickle.loads(pickle.dumps(binder))

    assert copy.notes == ("libnuma not used",) and copy.name == "syscall" and copy.sys_root == "/host/sys"


def test_maxnode_follows_the_off_by_one_recipe() -> None:
    # NW = max(16, ceil((max_node + 2) / 64)) words: 1024 bits up to node 1022, then one more word.
    assert MempolicySyscalls(max_node=0).maxnode == 1024
    assert MempolicySyscalls(max_node=1022).maxnode == 1024
    assert MempolicySyscalls(max_node=1023).maxnode == 1088


def test_syscall_numbers_for_both_architectures() -> None:
    assert SYSCALL_NUMBERS["x86_64"] == {"set_mempolicy": 238, "get_mempolicy": 239, "migrate_pages": 256}
    assert SYSCALL_NUMBERS["aarch64"] == {"set_mempolicy": 237, "get_mempolicy": 236, "migrate_pages": 238}
    with pytest.raises(BindError, match="riscv64"):
        MempolicySyscalls(machine="riscv64")


def test_a_node_beyond_the_mask_is_einval_before_any_syscall() -> None:
    syscalls = MempolicySyscalls(libc=ctypes.CDLL(None, use_errno=True), max_node=0)

    with pytest.raises(OSError) as caught:
        syscalls.set(Mempolicy(Mode.BIND, (5000,)))

    assert caught.value.errno == errno.EINVAL
