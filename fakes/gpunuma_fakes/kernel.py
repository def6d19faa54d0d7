"""A simulated kernel binder: validates plans as Linux would and keeps per-thread state, for CI.

Its threads are the process's **real** threads (``/proc/self/task`` at each call), so a Ray actor
that binds through it is checked thread by thread against the threads it really runs; only their CPU
affinity and memory policy are simulated, with the inheritance Linux gives them:

- A thread holds what its creator held when it was created. The kernel learns a thread's creator
  when the thread is started through :meth:`threading.Thread.start` (it notes the creator's state as
  ``start`` is called); a thread started another way (by a C extension) counts as the main thread's.
  The threads a kernel finds when it first looks hold the process's starting state.
- A forked child's one thread holds what the forking thread held. A spawned or exec'd child holds
  what its parent handed down in its environment (:data:`INHERITED`): a kernel that stands for a
  named machine (``machine=``, as ``GPUNUMA_SIMULATE``'s does) hands the binding thread's state
  down after each binding, and shows its threads to other processes (:func:`published_view`).
- The cgroup cpuset limits every call: ``sched_setaffinity`` intersects the request with the cpuset
  and the online CPUs and fails with EINVAL when nothing is left; ``set_mempolicy`` sets the calling
  thread's policy, intersecting the nodes with ``Mems_allowed`` and the nodes that have memory, and
  fails with EINVAL when nothing is left. A state handed down from outside is cut to the cpuset too.

It follows the real binders' contract: a CPU failure, or a memory node the machine does not have,
restores every thread and raises :class:`~gpunuma.errors.BindError`; a memory policy refused for
nodes that exist keeps the CPUs bound and says so.

What happens after a binding is simulated too: a library pinning one of the process's threads elsewhere
(:meth:`SimulatedKernel.sched_setaffinity`) or changing the calling thread's memory policy
(:meth:`SimulatedKernel.set_mempolicy`); the process touching memory (:meth:`SimulatedKernel.touch`: pages land
where the calling thread's policy, else its CPUs, put them); ``numa_maps`` in the kernel's own format
(:meth:`SimulatedKernel.numa_maps`), and ``migrate_pages`` moving the pages (:meth:`SimulatedKernel.migrate`).
"""

from __future__ import annotations

import errno
import os
import threading
import weakref
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # spec builds this module's objects: it imports this module
    from gpunuma_fakes.spec import Machine

# Not typing's: a Ray worker that unpickles this kernel imports neither typing, dataclasses nor pathlib.
from pathlib import Path

from gpunuma.adapters.kernel_view import read_environ
from gpunuma.adapters.procfs import read_threads
from gpunuma.core.cpuset import CpuSet, node_list
from gpunuma.core.kernel_policy import NUMA_MAPS_MODES, Mempolicy, kernel_policy
from gpunuma.core.model import Topology
from gpunuma.core.pages import Pages, parse_numa_maps
from gpunuma.core.plan import Allowed, BindingPlan
from gpunuma.core.policy import MemoryPolicy
from gpunuma.core.readback import compare
from gpunuma.core.report import BindingReport, KernelView, ThreadState
from gpunuma.errors import BindError, TopologyUnavailableError

#: Failure injections ``fail=`` accepts.
FAILURES = ("cpu", "mempolicy_eperm", "migrate_eperm")

#: The base page of a simulated machine, in KiB (``kernelpagesize_kB`` in its ``numa_maps``).
PAGE_KB = 4
#: The mapping a simulated process's pages are shown in (``numa_maps``' address column).
_HEAP = 0x55D0C8A00000
#: ``numa_maps`` names each mode its own way (the inverse of the kernel's table in ``kernel_policy``).
_NUMA_MAPS_WORDS = {mode.word: word for word, mode in NUMA_MAPS_MODES.items()}

#: The variable a named machine's kernel hands its binding down in, to spawned and exec'd children:
#: ``MACHINE|PID|CPUS|POLICY|NODES`` (``dgx-h100|4242|56-111,168-223|preferred|1``), PID the writer's.
INHERITED = "GPUNUMA_SIMULATED_KERNEL"

#: The name of the in-memory file (``memfd``) a named machine's kernel shows its threads in to other
#: processes: ``/proc/<pid>/fd`` lists it as ``/memfd:<name> (deleted)``; nothing is written to disk.
RECORD_NAME = "gpunuma-simulated-kernel"
_RECORD_LINK = f"/memfd:{RECORD_NAME} (deleted)"


def _words(code: int) -> str:
    return f"{os.strerror(code)} ({errno.errorcode[code]})"


@dataclass(frozen=True, slots=True)
class Held:
    """What a thread holds: its CPU affinity and memory policy (word and nodes)."""

    cpus: CpuSet
    mempolicy: str = "default"
    mempolicy_nodes: tuple[int, ...] = ()

    def text(self) -> str:
        """``CPUS|POLICY|NODES``, the form :data:`INHERITED` and the published record carry."""
        return f"{self.cpus.to_list()}|{self.mempolicy}|{node_list(self.mempolicy_nodes)}"

    @classmethod
    def parse(cls, text: str) -> Held | None:
        """The inverse of :meth:`text`; None for text no kernel of this module wrote."""
        parts = text.split("|")
        if len(parts) != 3:
            return None
        try:
            nodes = tuple(sorted(CpuSet.parse_list(parts[2]).ids)) if parts[2] else ()
            return cls(CpuSet.parse_list(parts[0]), parts[1] or "default", nodes)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class SimulatedThread:
    """One real thread of the process, with its simulated CPU affinity and memory policy."""

    tid: int
    name: str
    cpus: CpuSet
    mempolicy: str = "default"
    mempolicy_nodes: tuple[int, ...] = ()

    @property
    def held(self) -> Held:
        return Held(self.cpus, self.mempolicy, self.mempolicy_nodes)


def _thread(tid: int, name: str, held: Held) -> SimulatedThread:
    return SimulatedThread(tid, name, held.cpus, held.mempolicy, held.mempolicy_nodes)


class _Process:
    """The simulated state of one process's threads; another process (a pickled copy) starts its own."""

    def __init__(self, pid: int, start: Held) -> None:
        self.pid = pid
        #: What the threads hold, by TID, for every thread the kernel has met.
        self.threads: dict[int, SimulatedThread] = {}
        #: What each Python thread's creator held when it called ``start`` (the thread's TID comes later).
        self.births: weakref.WeakKeyDictionary[threading.Thread, Held] = weakref.WeakKeyDictionary()
        #: What a thread holds when nothing says otherwise (the main thread before anything changed it).
        self.start = start
        #: The in-memory file this process's threads are shown to others in (named machines only).
        self.record: int | None = None
        #: The process's pages on each node (base pages), as touched and migrated.
        self.pages: dict[int, int] = {}

    def __reduce__(self) -> tuple[object, ...]:
        # Births and the record file are this process's alone; the threads' state travels (a same-process
        # copy keeps it, another process drops it on first use).
        return (_restored, (self.pid, self.start, self.threads, self.pages))

    def held(self, tid: int, main: int, python: threading.Thread | None = None) -> Held:
        """What thread ``tid`` holds: its own state, else its creator's at its birth, else the main thread's."""
        known = self.threads.get(tid)
        if known is not None:
            return known.held
        born = self.births.get(python) if python is not None else None
        if born is not None:
            return born
        parent = self.threads.get(main) if tid != main else None
        return parent.held if parent is not None else self.start


def _restored(pid: int, start: Held, threads: dict[int, SimulatedThread], pages: dict[int, int]) -> _Process:
    process = _Process(pid, start)
    process.threads.update(threads)
    process.pages.update(pages)
    return process


class SimulatedKernel:
    """A :class:`~gpunuma.core.ports.Binder` (name ``simulated``) over a topology and an :class:`Allowed`.

    The threads are those listed in ``<proc_root>/self/task`` when it is asked (the process's real
    threads by default; a rendered tree's ``proc`` gives that tree's threads). A thread holds what its
    creator held (see the module's text); before anything changes them, the process's starting affinity
    (``allowed.affinity``) and policy (``allowed.mempolicy``, else the default).
    ``machine`` names the simulated machine this kernel is the process's kernel of (``GPUNUMA_SIMULATE``):
    it then hands its binding down to spawned and exec'd children and shows its threads to other processes.
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
        machine: str | None = None,
    ) -> None:
        if fail is not None and fail not in FAILURES:
            raise ValueError(f"unknown failure {fail!r}; known: {', '.join(FAILURES)}")
        self.topology = topology
        self.allowed = allowed
        self.fail = fail
        self.proc_root = str(proc_root)
        self.machine = machine
        self._process: _Process | None = None
        self.applied: list[BindingPlan] = []
        self.rejected: list[tuple[BindingPlan, str]] = []

    @classmethod
    def for_machine(cls, machine: Machine, /, **options: object) -> SimulatedKernel:
        """A simulated kernel for a simulated machine: its topology and its process's cgroup."""
        return cls(machine.topology(), machine.allowed(), **options)  # type: ignore[arg-type]

    # -- the process's threads ------------------------------------------------------------
    @property
    def _live(self) -> bool:
        """Whether the threads are this process's own (not a rendered tree's)."""
        return os.path.realpath(self.proc_root) == "/proc"

    def _state(self) -> _Process:
        """The threads of *this* process (a copy pickled into another process starts afresh)."""
        if self._process is None or self._process.pid != os.getpid():
            self._process = _Process(os.getpid(), self._starting(os.environ.get(INHERITED)))
            if self._live:
                _watch(self)
        return self._process

    def _starting(self, inherited: str | None) -> Held:
        """The process's starting state: what a parent handed down for this machine, else the cgroup's."""
        start = self.allowed.affinity or self.allowed.cpus
        held = self.allowed.mempolicy  # a policy the process already holds (numactl --membind...)
        spec = Held(start, held.word, held.nodes) if held is not None else Held(start)
        if self.machine is None or inherited is None:
            return spec
        machine, writer, *state = inherited.rsplit("|", 4)
        # What this very process wrote is no inheritance: it is this process's own binding.
        mine = machine == self.machine and writer != str(os.getpid())
        handed = Held.parse("|".join(state)) if mine else None
        if handed is None:
            return spec
        cpus = handed.cpus & self._online_cpus() & self.allowed.cpus  # the cpuset limits what is inherited
        nodes = tuple(n for n in handed.mempolicy_nodes if n in self.allowed.mems)
        if not cpus or (handed.mempolicy_nodes and not nodes):
            return spec
        return Held(cpus, handed.mempolicy if nodes or not handed.mempolicy_nodes else "default", nodes)

    @property
    def pid(self) -> int:
        """The process whose threads this kernel simulates: the one it runs in (or the tree's)."""
        return int(os.path.basename(os.path.realpath(os.path.join(self.proc_root, "self"))))

    @property
    def threads(self) -> tuple[SimulatedThread, ...]:
        """Every thread of the process now, by TID, with its simulated state."""
        process = self._state()
        try:
            listed = read_threads(f"{self.proc_root}/self/task")
        except OSError as err:
            raise BindError(f"cannot list the threads of this process: {err}") from err
        return self._meet(process, listed, self.pid, own=self._live)

    @staticmethod
    def _meet(
        process: _Process, listed: tuple[ThreadState, ...], main: int, *, own: bool
    ) -> tuple[SimulatedThread, ...]:
        """The listed threads with what they hold, first meetings recorded, exited threads forgotten.

        ``own``: the threads are this process's, whose Python threads' creators were noted at birth.
        """
        alive = {t.tid for t in listed}
        for tid in [tid for tid in process.threads if tid not in alive]:
            del process.threads[tid]  # a TID the kernel hands out again is a new thread
        new = [t for t in listed if t.tid not in process.threads]
        if new:
            python = {t.native_id: t for t in threading.enumerate()} if own else {}
            # The main thread first: a thread with no known creator takes what it holds.
            for thread in sorted(new, key=lambda t: t.tid != main):
                held = process.held(thread.tid, main, python.get(thread.tid))
                process.threads[thread.tid] = _thread(thread.tid, thread.name, held)
        met = []
        for thread in listed:
            known = process.threads[thread.tid]
            met.append(known if known.name == thread.name else replace(known, name=thread.name))
        return tuple(met)

    def _calling_tid(self, threads: tuple[SimulatedThread, ...]) -> int:
        """The calling thread's TID, or the first thread's when the threads are a rendered tree's."""
        native = threading.get_native_id()
        return native if any(t.tid == native for t in threads) else threads[0].tid

    # -- what other threads and processes inherit -----------------------------------------
    def _creator_held(self) -> Held | None:
        """What the calling thread holds now, without listing the threads (None: this process is not simulated)."""
        process = self._process
        if process is None or process.pid != os.getpid():
            return None
        return process.held(threading.get_native_id(), process.pid, threading.current_thread())

    def _born(self, thread: threading.Thread, held: Held) -> None:
        """``thread`` was started by a thread that held ``held``."""
        process = self._process
        if process is None or process.pid != os.getpid():
            return
        process.births[thread] = held

    def _started(self, thread: threading.Thread) -> None:
        """``thread`` runs now: its TID is known; shown to other processes."""
        process = self._process
        born = process.births.get(thread) if process is not None else None
        if process is None or born is None or thread.native_id is None:
            return
        process.threads.setdefault(thread.native_id, _thread(thread.native_id, thread.name, born))
        self._publish(process)

    def _forked(self, held: Held) -> None:
        """In a forked child: its one thread holds what the forking thread held."""
        inherited = self._process
        self._process = _Process(os.getpid(), held)
        self._process.threads[os.getpid()] = _thread(os.getpid(), threading.current_thread().name, held)
        if inherited is not None and inherited.record is not None:
            os.close(inherited.record)  # the parent's file: the child shows its own
        self._publish(self._process)

    def _hand_down(self, held: Held) -> None:
        """Tell spawned and exec'd children what they inherit (named machines only)."""
        if self.machine is not None and self._live:
            os.environ[INHERITED] = f"{self.machine}|{os.getpid()}|{held.text()}"

    def _publish(self, process: _Process) -> None:
        """Show this process's threads to other processes (named machines only): an in-memory file."""
        if self.machine is None or not self._live:
            return
        lines = [f"{RECORD_NAME}|{self.machine}"]
        lines.extend(f"{t.tid}|{t.held.text()}" for t in list(process.threads.values()))
        lines.append("pages|" + ",".join(f"{node}={count}" for node, count in sorted(process.pages.items())))
        data = ("\n".join(lines) + "\nend\n").encode()
        if process.record is None:
            process.record = os.memfd_create(RECORD_NAME, os.MFD_CLOEXEC)
        os.pwrite(process.record, data, 0)
        os.ftruncate(process.record, len(data))

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
        caller = self._calling_tid(threads)
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
                changed[caller] = replace(changed[caller], mempolicy=memory_word, mempolicy_nodes=memory_nodes)
                effective = replace(plan, memory_nodes=memory_nodes)
        process = self._state()
        process.threads.update(changed)
        self.applied.append(plan)
        self._hand_down(changed[caller].held)
        self._publish(process)
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
        return self._kernel_view(pid, threads, caller, main)

    def _kernel_view(
        self, pid: int, threads: tuple[SimulatedThread, ...], policy: SimulatedThread, main: SimulatedThread
    ) -> KernelView:
        return KernelView(
            pid=pid,
            cpus_allowed=main.cpus,
            mems_allowed=frozenset(self.allowed.mems),
            threads=tuple(ThreadState(t.tid, t.name, t.cpus) for t in threads),
            mempolicy=policy.mempolicy,
            mempolicy_nodes=policy.mempolicy_nodes,
            mempolicy_tid=policy.tid,
        )

    # -- what happens after a binding: libraries, memory, migration ---------------------------------
    def sched_setaffinity(self, tid: int, cpus: CpuSet) -> None:
        """A library sets thread ``tid``'s CPUs (an OpenMP runtime placing it, a communicator pinning it).

        Cut to the cpuset and the online CPUs as Linux does; nothing left is ``OSError`` EINVAL, an unknown
        thread ``ProcessLookupError`` (ESRCH).
        """
        granted = cpus & self._online_cpus() & self.allowed.cpus
        if not granted:
            raise OSError(errno.EINVAL, f"sched_setaffinity({tid}, {cpus.to_list()}): {_words(errno.EINVAL)}")
        threads = {t.tid: t for t in self.threads}
        if tid not in threads:
            raise ProcessLookupError(errno.ESRCH, f"no thread {tid} in this process")
        process = self._state()
        process.threads[tid] = replace(threads[tid], cpus=granted)
        self._publish(process)

    def set_mempolicy(self, policy: Mempolicy) -> None:
        """The calling thread sets its own memory policy (a library's ``numa_set_localalloc``, ``numa_set_membind``).

        Nodes are cut to ``Mems_allowed`` and the nodes with memory; nothing left for a mode that names nodes is
        ``OSError`` EINVAL.
        """
        nodes = tuple(n for n in policy.nodes if n in self._memory_nodes())
        if policy.nodes and not nodes:
            raise OSError(errno.EINVAL, f"set_mempolicy({policy}): {_words(errno.EINVAL)}")
        threads = self.threads
        caller = self._calling_tid(threads)
        process = self._state()
        process.threads[caller] = replace(process.threads[caller], mempolicy=policy.word, mempolicy_nodes=nodes)
        self._publish(process)

    def touch(self, pages: int) -> dict[int, int]:
        """The calling thread touches ``pages`` new base pages: where they land, node -> pages.

        Its memory policy places them (``bind``/``preferred``/``preferred_many``: the first of its nodes;
        ``interleave``: spread over them); with none (``default``/``local``), the node of the CPU it runs on
        (its lowest CPU's node), as first touch does.
        """
        threads = self.threads
        caller = next(t for t in threads if t.tid == self._calling_tid(threads))
        usable = self._memory_nodes()
        policy_nodes = [n for n in caller.mempolicy_nodes if n in usable]
        if caller.mempolicy in ("interleave", "weighted_interleave") and policy_nodes:
            placed = {n: pages // len(policy_nodes) for n in policy_nodes}
            for n in policy_nodes[: pages % len(policy_nodes)]:
                placed[n] += 1
        elif policy_nodes:
            placed = {policy_nodes[0]: pages}
        else:
            placed = {self._local_node(caller.cpus, usable): pages}
        process = self._state()
        for node, count in placed.items():
            process.pages[node] = process.pages.get(node, 0) + count
        self._publish(process)
        return {n: c for n, c in placed.items() if c}

    def _memory_nodes(self) -> list[int]:
        """The nodes pages may land on: with memory and in ``Mems_allowed``, by id."""
        return sorted(n.id for n in self.topology.nodes if n.has_memory and n.id in self.allowed.mems)

    def _local_node(self, cpus: CpuSet, usable: list[int]) -> int:
        """The node a thread on ``cpus`` allocates on by default: its lowest CPU's, else the first usable node."""
        first = min(cpus.ids) if cpus else None
        for node in self.topology.nodes:
            if first is not None and first in node.cpus and node.id in usable:
                return node.id
        if not usable:
            raise OSError(errno.ENOMEM, "no node with memory is allowed")
        return usable[0]

    def numa_maps(self) -> str:
        """This process's ``/proc/self/numa_maps`` as the kernel writes it: its pages on each node, the mapping
        without a policy of its own showing the main thread's."""
        threads = self.threads
        main = next((t for t in threads if t.tid == self.pid), threads[0])
        return _numa_maps_text(main.held, self._state().pages)

    def numa_maps_of(self, pid: int) -> str | None:
        """Another process's ``numa_maps`` as its simulated kernel shows it; None when it published nothing."""
        machine, published, pages = _published(pid)
        if machine is None or (self.machine is not None and machine != self.machine):
            return None
        main = published.get(pid, self._starting((read_environ(pid) or {}).get(INHERITED)))
        return _numa_maps_text(main, pages)

    def migrate(self, nodes: Sequence[int]) -> int:
        """``migrate_pages(2)``: the process's pages on every allowed node move to ``nodes`` (the k-th node
        that is left maps to the k-th target, cycling); returns the pages not moved (none, here).

        A target without memory or outside ``Mems_allowed`` is ``OSError`` EINVAL; ``fail="migrate_eperm"`` makes
        it EPERM, as a seccomp profile that forbids ``migrate_pages`` does.
        """
        if self.fail == "migrate_eperm":
            raise OSError(errno.EPERM, f"migrate_pages: {_words(errno.EPERM)}")
        usable = self._memory_nodes()
        targets = sorted(n for n in set(nodes) if n in usable)
        if not targets:
            raise OSError(errno.EINVAL, f"migrate_pages to node {node_list(nodes)}: {_words(errno.EINVAL)}")
        process = self._state()
        sources = sorted(n for n in process.pages if n not in targets)
        for index, node in enumerate(sources):
            target = targets[index % len(targets)]
            process.pages[target] = process.pages.get(target, 0) + process.pages.pop(node)
        self._publish(process)
        return 0

    # -- the binder port after a binding -----------------------------------------------------------
    def read_back(self) -> KernelView:
        """What this kernel holds for the process now (:meth:`view`)."""
        return self.view()

    def pages(self) -> Pages:
        """Where the process's pages are: its :meth:`numa_maps` read by the production parser."""
        return parse_numa_maps(self.numa_maps())

    def repair(self, tids: Collection[int], cpus: CpuSet, mempolicy: Mempolicy | None = None) -> tuple[int, ...]:
        """Set threads ``tids`` back to ``cpus`` and the calling thread's policy to ``mempolicy`` (when given).

        A thread that exited is left out of the threads returned; a policy refused (``fail="mempolicy_eperm"``,
        no usable node) is a :class:`~gpunuma.errors.BindError` after the CPUs were set.
        """
        done = []
        for tid in tids:
            try:
                self.sched_setaffinity(tid, cpus)
            except OSError:
                continue
            done.append(tid)
        if mempolicy is not None:
            if self.fail == "mempolicy_eperm":
                raise BindError(f"set_mempolicy: {_words(errno.EPERM)}")
            try:
                self.set_mempolicy(mempolicy)
            except OSError as err:
                raise BindError(str(err)) from err
        return tuple(done)

    def view_of(self, pid: int) -> KernelView:
        """What this machine's kernel holds for another process ``pid`` of this host, as ``/proc`` shows it.

        Its real threads, each with what that process's simulated kernel published for it (see
        :func:`published_view`); a process that published nothing holds what its parent handed down to it,
        else the starting state. The memory policy is the main thread's (``numa_maps`` shows it so).
        A process that does not exist is a :class:`~gpunuma.errors.TopologyUnavailableError`.
        """
        base = f"/proc/{pid}"
        try:
            listed = read_threads(f"{base}/task")
        except OSError as err:
            raise TopologyUnavailableError(f"process {pid}: no such process ({err.strerror})") from err
        machine, published = published_view(pid)
        if machine is not None and self.machine is not None and machine != self.machine:
            raise TopologyUnavailableError(
                f"process {pid} runs on the simulated machine {machine!r}, not {self.machine!r}: "
                f"check it with GPUNUMA_SIMULATE={machine}"
            )

        process = _Process(pid, self._starting((read_environ(pid) or {}).get(INHERITED)))
        process.threads.update({tid: _thread(tid, "?", held) for tid, held in published.items()})
        threads = self._meet(process, listed, pid, own=False)
        if not threads:
            raise TopologyUnavailableError(f"process {pid}: no such process (it has no threads)")
        main = next((t for t in threads if t.tid == pid), threads[0])
        return self._kernel_view(pid, threads, main, main)


def _numa_maps_text(main: Held, pages: dict[int, int]) -> str:
    """``numa_maps`` as Linux writes it for a process with ``pages`` (node -> base pages) on its heap and its main
    thread holding ``main``: a mapping without a policy of its own shows the task's."""
    word = _NUMA_MAPS_WORDS.get(main.mempolicy, main.mempolicy)
    policy = f"{word}:{node_list(main.mempolicy_nodes)}" if main.mempolicy_nodes else word
    total = sum(pages.values())
    heap = f"{_HEAP:x} {policy} heap"
    if total:
        counts = " ".join(f"N{node}={count}" for node, count in sorted(pages.items()) if count)
        heap += f" anon={total} dirty={total} {counts} kernelpagesize_kB={PAGE_KB}"
    stack = f"7ffd1f3c0000 {policy} stack"
    return f"{heap}\n{stack}\n"


def published_view(pid: int) -> tuple[str | None, dict[int, Held]]:
    """The simulated machine process ``pid`` runs on and what its kernel published for each thread.

    ``(None, {})`` when it publishes nothing (it runs on no named simulated machine, or never bound).
    Read from the in-memory file its kernel keeps open (``/proc/<pid>/fd/N``), as a debugger would.
    """
    machine, held, _ = _published(pid)
    return machine, held


def _published(pid: int) -> tuple[str | None, dict[int, Held], dict[int, int]]:
    """:func:`published_view` and the process's pages on each node."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return None, {}, {}
    for fd in fds:
        try:
            if os.readlink(f"{fd_dir}/{fd}") != _RECORD_LINK:
                continue
            with open(f"{fd_dir}/{fd}", encoding="ascii") as handle:
                lines = handle.read().splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        if len(lines) < 2 or lines[-1] != "end" or not lines[0].startswith(f"{RECORD_NAME}|"):
            continue  # caught mid-write: as if nothing were published yet
        held: dict[int, Held] = {}
        pages: dict[int, int] = {}
        for line in lines[1:-1]:
            tid, _, text = line.partition("|")
            if tid == "pages":
                pairs = (item.partition("=") for item in text.split(",") if item)
                pages = {int(node): int(count) for node, _, count in pairs if node.isdigit() and count.isdigit()}
                continue
            state = Held.parse(text)
            if tid.isdigit() and state is not None:
                held[int(tid)] = state
        return lines[0].partition("|")[2], held, pages
    return None, {}, {}


# -- how the kernel learns of threads and children ---------------------------------------------
#: Every kernel simulating this process's own threads.
_KERNELS: weakref.WeakSet[SimulatedKernel] = weakref.WeakSet()
_THREAD_START = threading.Thread.start
_HOOKED: list[bool] = []
#: Set in the forking thread just before ``fork``: each kernel and what that thread held.
_FORKING: list[tuple[SimulatedKernel, Held]] = []


def _watch(kernel: SimulatedKernel) -> None:
    """Let ``kernel`` learn of the threads and children this process starts (hooks installed once)."""
    if not _HOOKED:
        _HOOKED.append(True)
        threading.Thread.start = _start  # type: ignore[method-assign]
        os.register_at_fork(before=_before_fork, after_in_parent=_FORKING.clear, after_in_child=_after_fork)
    _KERNELS.add(kernel)


def _start(self: threading.Thread) -> None:
    """``threading.Thread.start``, noting the creator's state for every simulating kernel first."""
    kernels = []
    for kernel in list(_KERNELS):
        held = kernel._creator_held()
        if held is not None:
            kernel._born(self, held)
            kernels.append(kernel)
    _THREAD_START(self)
    for kernel in kernels:
        kernel._started(self)


def _before_fork() -> None:
    _FORKING[:] = [(k, held) for k in list(_KERNELS) if (held := k._creator_held()) is not None]


def _after_fork() -> None:
    for kernel, held in _FORKING:
        kernel._forked(held)
    _FORKING.clear()
