"""A simulated kernel binder: validates plans as Linux would and keeps per-thread state, for CI.

Its threads are the calling process's **real** threads (``/proc/self/task`` at each call), so a
Ray actor that binds through it is checked thread by thread against the threads it really runs;
only their CPU affinity and memory policy are simulated. It follows the real binders' contract: a
CPU failure, or a memory node the machine does not have, restores every thread and raises
:class:`~gpunuma.errors.BindError`; a memory policy refused for nodes that exist keeps the CPUs
bound and says so. Kernel semantics modelled: ``sched_setaffinity`` intersects the request with
the cpuset and the online CPUs and fails with EINVAL only when nothing is left; ``set_mempolicy``
sets the calling thread's policy, intersecting the nodes with ``Mems_allowed`` and the nodes that
have memory, and fails with EINVAL when empty.
"""

from __future__ import annotations

import errno
import os
import threading

from gpunuma.adapters.procfs import read_threads
from gpunuma.core.cpuset import CpuSet, node_list
from gpunuma.core.kernel_policy import kernel_policy
from gpunuma.core.model import Topology
from gpunuma.core.plan import Allowed, BindingPlan
from gpunuma.core.policy import MemoryPolicy
from gpunuma.core.readback import compare
from gpunuma.core.report import BindingReport, KernelView, ThreadState
from gpunuma.core.value import Value, replace
from gpunuma.errors import BindError

# Not typing's: a Ray worker that unpickles this kernel imports neither typing, dataclasses nor pathlib.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

    from gpunuma_fakes.spec import Machine

#: Failure injections ``fail=`` accepts.
FAILURES = ("cpu", "mempolicy_eperm")


def _words(code: int) -> str:
    return f"{os.strerror(code)} ({errno.errorcode[code]})"


class SimulatedThread(Value):
    """One real thread of the process, with its simulated CPU affinity and memory policy."""

    tid: int
    name: str
    cpus: CpuSet
    mempolicy: str = "default"
    mempolicy_nodes: tuple[int, ...] = ()


class SimulatedKernel:
    """A :class:`~gpunuma.core.ports.Binder` (name ``simulated``) over a topology and an :class:`Allowed`.

    The threads are those listed in ``<proc_root>/self/task`` when it is asked (the process's real
    threads by default; a rendered tree's ``proc`` gives that tree's threads). A thread it has not
    changed holds the process's starting affinity (``allowed.affinity``) and policy (``allowed.mempolicy``,
    else the default).
    ``fail="cpu"`` makes ``sched_setaffinity`` fail with EINVAL on the last thread (after the others
    were changed); ``fail="mempolicy_eperm"`` makes ``set_mempolicy`` fail with EPERM.
    :attr:`applied` holds every plan that changed state; :attr:`rejected` every refused one, with why.
    Plain attributes only, so it pickles into Ray actors and spawned children, where it simulates
    that process's threads.
    """

    name = "simulated"

    def __init__(
        self,
        topology: Topology,
        allowed: Allowed,
        *,
        fail: str | None = None,
        proc_root: str | Path = "/proc",
    ) -> None:
        if fail is not None and fail not in FAILURES:
            raise ValueError(f"unknown failure {fail!r}; known: {', '.join(FAILURES)}")
        self.topology = topology
        self.allowed = allowed
        self.fail = fail
        self.proc_root = str(proc_root)
        #: Simulated state of the threads changed so far, by TID, and the process it belongs to.
        self._changed: dict[int, SimulatedThread] = {}
        self._owner: int | None = None
        self.applied: list[BindingPlan] = []
        self.rejected: list[tuple[BindingPlan, str]] = []

    @classmethod
    def for_machine(cls, machine: Machine, **options: object) -> SimulatedKernel:
        """A simulated kernel for a simulated machine: its topology and its process's cgroup."""
        return cls(machine.topology(), machine.allowed(), **options)  # type: ignore[arg-type]

    # -- the process's threads ------------------------------------------------------------
    def _state(self) -> dict[int, SimulatedThread]:
        """The changed threads of *this* process (a copy pickled into another process starts afresh)."""
        if self._owner != os.getpid():
            self._changed, self._owner = {}, os.getpid()
        return self._changed

    @property
    def pid(self) -> int:
        """The process whose threads this kernel simulates: the one it runs in (or the tree's)."""
        return int(os.path.basename(os.path.realpath(os.path.join(self.proc_root, "self"))))

    @property
    def threads(self) -> tuple[SimulatedThread, ...]:
        """Every thread of the process now, by TID, with its simulated state."""
        start = self.allowed.affinity or self.allowed.cpus
        held = self.allowed.mempolicy  # a policy the process already holds (numactl --membind...)
        word, nodes = (held.word, held.nodes) if held is not None else ("default", ())
        state = self._state()
        try:
            listed = read_threads(f"{self.proc_root}/self/task")
        except OSError as err:
            raise BindError(f"cannot list the threads of this process: {err}") from err
        return tuple(state.get(t.tid) or SimulatedThread(t.tid, t.name, start, word, nodes) for t in listed)

    def _calling_tid(self, threads: tuple[SimulatedThread, ...]) -> int:
        """The calling thread's TID, or the first thread's when the threads are a rendered tree's."""
        native = threading.get_native_id()
        return native if any(t.tid == native for t in threads) else threads[0].tid

    # -- the kernel's checks -----------------------------------------------------------
    def _online_cpus(self) -> CpuSet:
        if self.topology.cpus:
            return CpuSet.of(cpu.id for cpu in self.topology.cpus if cpu.online)
        return self.topology.all_cpus

    def _affinity(self, plan: BindingPlan) -> CpuSet:
        """What ``sched_setaffinity`` would grant, or BindError (EINVAL) when nothing is left."""
        effective = plan.cpus & self._online_cpus() & self.allowed.cpus
        if not effective:
            missing = plan.cpus - self._online_cpus()
            why = (
                f"CPU {missing.to_list()} does not exist or is offline"
                if missing
                else f"CPUs {plan.cpus.to_list()} are outside the cpuset {self.allowed.cpus.to_list()}"
            )
            raise BindError(f"sched_setaffinity: {_words(errno.EINVAL)}: {why}")
        return effective

    def _mempolicy(self, plan: BindingPlan) -> tuple[str, tuple[int, ...]] | tuple[int, str]:
        """The policy ``set_mempolicy`` would hold, or (errno, why) when it refuses."""
        if self.fail == "mempolicy_eperm":
            return errno.EPERM, "set_mempolicy needs CAP_SYS_NICE under this seccomp profile"
        memory_nodes = {n.id for n in self.topology.nodes if n.has_memory}
        nodes = tuple(sorted(set(plan.memory_nodes) & memory_nodes & set(self.allowed.mems)))
        if not nodes:
            unusable = node_list(plan.memory_nodes) or "none"
            return errno.EINVAL, f"node {unusable} does not exist, has no memory or is outside Mems_allowed"
        held = kernel_policy(plan.memory_policy, nodes)
        assert held is not None, "the caller sets a policy only for a plan that asks for one"
        return held.word, held.nodes

    # -- the binder port -----------------------------------------------------------------
    def apply(self, plan: BindingPlan) -> BindingReport:
        """Apply ``plan`` to every thread of the process (CPUs) and the calling thread (memory)."""
        if not plan.binds:
            return BindingReport(
                plan=plan, bound=False, method=self.name, cpus=CpuSet(), memory_policy=None,
                memory_nodes=(), reasons=plan.reasons,
            )
        try:
            cpus = self._affinity(plan)
        except BindError as err:
            self.rejected.append((plan, str(err)))
            raise
        threads = self.threads
        changed = {t.tid: t for t in threads}
        for index, thread in enumerate(threads):
            if self.fail == "cpu" and index == len(threads) - 1:
                # The threads before it were changed only in ``changed``; dropping it restores them.
                why = f"sched_setaffinity of thread {thread.tid}: {_words(errno.EINVAL)}; every thread was restored"
                self.rejected.append((plan, why))
                raise BindError(why)
            changed[thread.tid] = replace(thread, cpus=cpus)
        reasons = list(plan.reasons)
        effective = plan
        memory_word: str | None = None
        memory_nodes: tuple[int, ...] = ()
        if plan.memory_policy is not MemoryPolicy.NONE:
            outcome = self._mempolicy(plan)
            missing = sorted(set(plan.memory_nodes) - {n.id for n in self.topology.nodes})
            if missing:
                # A wrong plan, not a container's refusal (the kernel never holds a policy on a node it
                # lacks): ``changed`` is dropped, so every thread stays as it was.
                listed = node_list(missing)
                why = (
                    f"memory node {listed} does not exist on this machine; "
                    "every thread and the memory policy were restored"
                )
                self.rejected.append((plan, why))
                raise BindError(why)
            if isinstance(outcome[0], int):
                code, why = outcome
                reasons.append(f"memory policy refused by the kernel ({errno.errorcode[code]}): bound CPUs only")
                reasons.append(f"set_mempolicy: {_words(code)}: {why}")
                effective = replace(plan, memory_policy=MemoryPolicy.NONE)
            else:
                memory_word, memory_nodes = outcome
                caller = self._calling_tid(threads)
                changed[caller] = replace(changed[caller], mempolicy=memory_word, mempolicy_nodes=memory_nodes)
                effective = replace(plan, memory_nodes=memory_nodes)
        self._state().update(changed)
        self.applied.append(plan)
        view = self.view()
        return BindingReport(
            plan=plan, bound=True, method=self.name, cpus=cpus, memory_policy=memory_word,
            memory_nodes=memory_nodes, reasons=tuple(reasons), kernel=view, mismatches=compare(effective, view),
        )

    def view(self) -> KernelView:
        """The simulated ``/proc`` read-back: the main thread's CPUs, Mems_allowed, every thread, and the
        calling thread's memory policy (``get_mempolicy`` reads the caller's)."""
        threads = self.threads
        pid = self.pid
        main = next((t for t in threads if t.tid == pid), threads[0])
        caller = next(t for t in threads if t.tid == self._calling_tid(threads))
        return KernelView(
            pid=pid,
            cpus_allowed=main.cpus,
            mems_allowed=frozenset(self.allowed.mems),
            threads=tuple(ThreadState(t.tid, t.name, t.cpus) for t in threads),
            mempolicy=caller.mempolicy,
            mempolicy_nodes=caller.mempolicy_nodes,
        )
