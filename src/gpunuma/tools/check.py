"""``gpunuma check``: is a running process bound right? The kernel's view against the plan.

Reads every thread's affinity and the memory policy back from procfs, finds the GPU the
process uses from its ``CUDA_VISIBLE_DEVICES`` (when its environment is readable), plans
what it should hold under its own ``GPUNUMA_*`` settings and lists the differences in plain words.

``/proc/<pid>/environ`` is the environment a process started with. Ray sets a worker's
``CUDA_VISIBLE_DEVICES`` later, from inside the worker, so a Ray actor's GPU is unknown here:
name it (``gpus=``/``physical=``, ``gpunuma check --pid N --physical-gpu G``) or ask the actor for
its ``binding_report()``. Every result has a :class:`Verdict`: as expected, not as expected, or
cannot tell (nothing to compare with), which ``gpunuma check`` turns into its exit code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from gpunuma import compose
from gpunuma.core.cpuset import node_list
from gpunuma.core.filetree import FileTree
from gpunuma.core.identity import VISIBILITY_VARIABLES, GpuEnvironment, id_list
from gpunuma.core.kernel_policy import Mode
from gpunuma.core.numbers import decimal
from gpunuma.core.pages import Pages
from gpunuma.core.plan import BindingPlan
from gpunuma.core.planner import TopologyNeeds, explicit_node_id
from gpunuma.core.policy import MemoryPolicy, Policy, Share
from gpunuma.core.ports import TopologySource
from gpunuma.core.readback import Drift, Repair, compare, drift, narrowed_within
from gpunuma.core.reasons import Reason, codes, details
from gpunuma.core.rebind import OwnBinding
from gpunuma.core.report import BindingReport, KernelView
from gpunuma.errors import GpunumaError, GpuResolutionError, InvalidNodeError, SettingsError, TopologyUnavailableError
from gpunuma.settings import CapturedTree, Simulated, check_arguments, configure, inherited_own_binding
from gpunuma.tools.terminal import visible

#: Set by Ray's raylet in every worker's environment at start.
_RAY_WORKER_MARK = "RAY_RAYLET_PID"


class Verdict(str, Enum):
    """What a check concluded."""

    #: The kernel holds what the plan expects (or the plan expects no binding).
    AS_EXPECTED = "as_expected"
    #: A plan that binds disagrees with what the kernel holds.
    NOT_AS_EXPECTED = "not_as_expected"
    #: Nothing to compare with: the process's GPU is unknown, or it runs with ``GPUNUMA_BIND=0``.
    CANNOT_TELL = "cannot_tell"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What the kernel holds for a process, the plan for its GPU(s), and how they differ."""

    view: KernelView
    gpus: tuple[int, ...]
    plan: BindingPlan | None
    mismatches: tuple[str, ...]
    #: Why there is no verdict, or what the plan assumed: each a :class:`~gpunuma.core.reasons.Reason`
    #: (codes ``check_*``), its English the text.
    notes: tuple[str, ...]
    #: False when the plan is shown for information only (the process runs with ``GPUNUMA_BIND=0``).
    compared: bool = True
    #: Each thread's drift from the plan, in the order of ``view.threads`` (:func:`gpunuma.core.readback.drift`):
    #: None where it holds the plan; empty when there is no plan to compare with.
    drift: tuple[Drift | None, ...] = ()
    #: Where the process's pages are (``numa_maps``), None when unreadable.
    memory: Pages | None = None
    #: What ``verify(repair=True)`` put back: each thread and the drift it had (empty for a check).
    repaired: tuple[Repair, ...] = ()

    @property
    def ok(self) -> bool:
        """True only when the kernel holds what the plan expects: never for a process that cannot be judged."""
        return self.verdict is Verdict.AS_EXPECTED

    @property
    def local_nodes(self) -> tuple[int, ...]:
        """The nodes whose pages count as local: the plan's memory nodes, else its nodes (none without a plan)."""
        if self.plan is None or not self.plan.binds:
            return ()
        return self.plan.memory_nodes or self.plan.nodes

    @property
    def pages_by_node(self) -> dict[int, int] | None:
        """Node -> the process's pages on it (base pages; see :mod:`gpunuma.core.pages`), None when unreadable."""
        return self.memory.pages_by_node if self.memory is not None else None

    @property
    def local_fraction(self) -> float | None:
        """The share of the process's pages on the plan's memory nodes; None without pages or a plan that binds."""
        return self.memory.local_fraction(self.local_nodes) if self.memory is not None else None

    def drift_of(self, tid: int) -> Drift | None:
        """The drift of thread ``tid`` (None: it holds the plan, or it is not listed)."""
        return dict(self._thread_drift()).get(tid)

    def _thread_drift(self) -> list[tuple[int, Drift | None]]:
        """(tid, drift) of every thread, None throughout when nothing was compared."""
        drifts = self.drift or (None,) * len(self.view.threads)
        return [(thread.tid, found) for thread, found in zip(self.view.threads, drifts, strict=True)]

    @property
    def note_codes(self) -> tuple[str, ...]:
        """The code of each note, in order."""
        return codes(self.notes)

    @property
    def verdict(self) -> Verdict:
        """As expected, not as expected, or cannot tell (no plan, or a plan shown but not compared)."""
        if self.mismatches:
            return Verdict.NOT_AS_EXPECTED
        if self.plan is None or not self.compared:
            return Verdict.CANNOT_TELL
        return Verdict.AS_EXPECTED

    def render(self) -> str:
        view = self.view
        lines = [f"process {view.pid}: CPUs allowed {view.cpus_allowed.to_list() or 'none'}, "
                 f"memory nodes allowed {node_list(view.mems_allowed) or 'none'}, "
                 f"memory policy {view.mempolicy or 'unreadable'}"
                 + (f" {node_list(view.mempolicy_nodes)}" if view.mempolicy_nodes else "")]
        groups: dict[tuple[str, Drift | None], list[str]] = {}
        for thread, (_, found) in zip(view.threads, self._thread_drift(), strict=True):
            # Any process names its threads: a name is escaped before it can act on a terminal or break a line.
            groups.setdefault((thread.cpus.to_list(), found), []).append(f"{thread.tid} ({visible(thread.name)})")
        for (cpus, found), threads in groups.items():
            label = f" ({found.value})" if found is not None else ""
            lines.append(f"  {len(threads)} thread(s) on CPUs {cpus}{label}: {', '.join(threads[:6])}"
                         + (" ..." if len(threads) > 6 else ""))
        if self.memory is not None:
            lines.append(f"memory: {self.memory.describe(self.local_nodes)}")
        if self.repaired:
            lines.append(f"repaired {len(self.repaired)} thread(s): "
                         + ", ".join(f"{r.tid} ({r.drift.value})" for r in self.repaired))
        if self.plan is not None:
            lines.append(f"expected: {self.plan.summary()}")
            lines.extend(f"  - {reason}" for reason in self.plan.reasons)
        else:
            lines.append("expected: unknown (no plan to compare with; see the note)")
        lines.extend(f"note: {note}" for note in self.notes)
        verdict = self.verdict
        if verdict is Verdict.NOT_AS_EXPECTED:
            lines.append("NOT bound as planned:")
            lines.extend(f"  ! {m}" for m in self.mismatches)
        elif verdict is Verdict.CANNOT_TELL:
            lines.append("CANNOT TELL whether it is bound right (see the note)")
        elif self.plan is not None and self.plan.binds:
            lines.append("OK: every thread is bound as planned")
        else:
            lines.append("OK: no binding is expected for it")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.view.pid,
            "ok": self.ok,
            "gpus": list(self.gpus),
            "cpus_allowed": self.view.cpus_allowed.to_list(),
            "mems_allowed": sorted(self.view.mems_allowed),
            "mempolicy": self.view.mempolicy,
            "mempolicy_nodes": list(self.view.mempolicy_nodes),
            "threads": [
                {"tid": t.tid, "name": t.name, "cpus": t.cpus.to_list(), "drift": found.value if found else None}
                for t, (_, found) in zip(self.view.threads, self._thread_drift(), strict=True)
            ],
            "pages_by_node": (
                {str(node): pages for node, pages in self.memory.by_node} if self.memory is not None else None
            ),
            "local_fraction": self.local_fraction,
            "memory": self.memory.to_dict(self.local_nodes) if self.memory is not None else None,
            "repaired": [{"tid": r.tid, "drift": r.drift.value, "what": list(r.what)} for r in self.repaired],
            "plan": self.plan.to_dict() if self.plan is not None else None,
            "mismatches": list(self.mismatches),
            "notes": list(self.notes),
            "note_details": details(self.notes),
            "compared": self.compared,
            "verdict": self.verdict.value,
        }


def _pid_arg(pid: object) -> int | str:
    """``self``, or a process id: an ``int`` above 0 or its ASCII digits. Anything else names no process and is a
    :class:`~gpunuma.errors.TopologyUnavailableError` before any file is opened (``"../1"`` is no path to read)."""
    if pid == "self":
        return "self"
    number = decimal(pid) if isinstance(pid, str) else pid
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise TopologyUnavailableError(f"pid={pid!r:.80}: no such process; expected 'self' or a process id (an int "
                                       "above 0)")
    return number


def check_process(
    pid: int | str = "self",
    *,
    source: str | TopologySource = "auto",
    root: str | Path | FileTree | CapturedTree = "/",
    policy: Policy | None = None,
    gpus: Sequence[int | str] | None = None,
    physical: Sequence[int | str] | None = None,
    node: int | None = None,
    share: Share | None = None,
    reserve: int | None = None,
    simulate: str | None = None,
) -> CheckResult:
    """Read a process's binding back and compare it with what it should hold, thread by thread, and read where its
    memory is.

    What it should hold, in order: node ``node`` when given (``gpunuma exec --node``); else the plan for its GPU(s),
    from ``gpus`` (local ``cuda:N`` of the process, through its own ``CUDA_VISIBLE_DEVICES`` when readable; UUIDs;
    bus ids) or ``physical`` (``nvidia-smi`` numbering), else from the process's environment; else the binding a
    gpunuma launcher applied before it started (``GPUNUMA_OWN`` in its environment); else nothing, on a machine
    without a GPU. The plan follows the process's own ``GPUNUMA_*`` settings (``policy`` replaces them;
    ``share``/``reserve`` replace only its ``GPUNUMA_SHARE``/``GPUNUMA_RESERVE``, for a process started with
    ``--share``); a process running with ``GPUNUMA_BIND=0`` is shown, not judged.

    Each thread carries its drift from the plan (``result.drift``: narrowed, moved, widened, policy). Threads on
    part of the planned CPUs (an OpenMP team's places) and a memory policy over part of the planned nodes are
    notes: only CPUs or memory outside the plan are mismatches. ``result.memory`` is where its pages are
    (``numa_maps``), with ``local_fraction`` on the plan's memory nodes. A GPU named here that the machine lacks
    raises :class:`~gpunuma.errors.GpuResolutionError`, a node it lacks :class:`~gpunuma.errors.InvalidNodeError`.
    ``simulate`` (default: this process's ``GPUNUMA_SIMULATE``) names a simulated machine: the process is read
    from its simulated kernel and planned for on it.
    """
    # Misuse raises before anything is read, as it does for bind_to_gpu: each argument's kind, then its size.
    pid = _pid_arg(pid)
    gpus, physical = id_list(gpus, "gpus"), id_list(physical, "physical")  # one id or several
    check_arguments(source=source, policy=policy, root=root)
    share = Share.coerce(share)
    if reserve is not None:
        reserve = replace(Policy(), reserve=reserve).reserve
    if node is not None:
        node = explicit_node_id(node)
    if simulate is not None and not isinstance(simulate, str):
        raise SettingsError(f"simulate={simulate!r:.80}: expected a simulated machine's name or a snapshot's path")
    machine = _machine(root, simulate)
    result = _check_process(
        pid, source=source, machine=machine, policy=policy, gpus=gpus, physical=physical, node=node, share=share,
        reserve=reserve,
    )
    # A captured tree holds its process as proc/self; elsewhere the process is read by its id.
    pages_of = pid if isinstance(machine, CapturedTree) else result.view.pid
    return replace(result, memory=compose.process_pages(pages_of, machine))


def _check_process(
    pid: int | str = "self",
    *,
    source: str | TopologySource = "auto",
    machine: CapturedTree | Simulated | None = None,
    policy: Policy | None = None,
    gpus: Sequence[int | str] | None = None,
    physical: Sequence[int | str] | None = None,
    node: int | None = None,
    share: Share | None = None,
    reserve: int | None = None,
) -> CheckResult:
    """The check of :func:`check_process` (its arguments checked, its machine decided) without the memory."""
    view, env = compose.process_state(pid, machine)
    notes: list[Reason] = []

    def without_plan(note: Reason) -> CheckResult:
        return CheckResult(view=view, gpus=(), plan=None, mismatches=(), notes=(*notes, note))

    named = gpus is not None or physical is not None or node is not None
    if env is None and named:
        notes.append(Reason.of("check_environment_unreadable_named", pid=pid))
        env = {}
    if not named and not any(key in (env or {}) for key in (*VISIBILITY_VARIABLES, "LOCAL_RANK")):
        # Its GPU is unknown: a launcher's record, or a machine with nothing to bind, still tells what to expect.
        if env is not None and _RAY_WORKER_MARK in env:
            return without_plan(Reason.of("check_ray_worker", pid=pid, variable=_RAY_WORKER_MARK))
        record = inherited_own_binding(env) if env is not None else None
        if record is not None:
            nodes = compose.make_source("sysfs", machine=machine, needs=TopologyNeeds(layout=False, gpus=False))
            return _judged(view, _recorded_plan(nodes, record), notes)
        nothing = _nothing_to_bind(compose.make_source(source, machine=machine, needs=TopologyNeeds(layout=False)))
        if nothing is not None:
            return CheckResult(view=view, gpus=(), plan=nothing, mismatches=(), notes=tuple(notes))
        if env is None:
            return without_plan(Reason.of("check_environment_unreadable", pid=pid))
        return without_plan(Reason.of("check_no_visible_devices"))
    env = env or {}
    try:
        # The target's own switches: it was bound with its GPUNUMA_* policy, not this command's; its machine is
        # the one this check reads.
        options = configure(env, source=source, policy=policy, share=share, reserve=reserve, warn=False)
        notes.extend(
            Reason.of("check_setting_defaulted", setting=Reason.coerce(problem)) for problem in options.problems
        )
        # Its affinity is what we check, so an affinity narrowed by the binding must not stop the plan.
        options = replace(options, policy=replace(options.policy, override_affinity=True), machine=machine)
        # A captured tree holds its process as proc/self: its cgroup is read there too.
        allowed_pid = pid if str(pid) == "self" and machine is not None else view.pid
        plan = compose.plan(
            options,
            gpus=gpus,
            physical=physical,
            node=node,
            environment=GpuEnvironment.from_mapping(env),
            allowed=compose.process_allowed(allowed_pid, machine),
        )
    except GpuResolutionError:
        if named:  # the caller named a GPU this machine does not have: their mistake, not an unknown
            raise
        return without_plan(Reason.of("check_gpu_unresolved"))
    except InvalidNodeError:
        raise  # a node the caller named that this machine lacks
    except GpunumaError as err:
        return without_plan(Reason.of("check_no_plan", error=str(err)))
    if not plan.gpus and node is None:  # it sees no GPU (or the machine has none): nothing to bind is expected
        if "no_gpu_on_machine" not in plan.reason_codes:
            notes.append(Reason.of("check_no_gpu"))
        return CheckResult(view=view, gpus=(), plan=plan, mismatches=(), notes=tuple(notes))
    if not options.enabled:
        notes.append(Reason.of("check_not_bound_by_choice", value=env.get("GPUNUMA_BIND", "").strip()))
        return CheckResult(view=view, gpus=plan.gpus, plan=plan, mismatches=(), notes=tuple(notes), compared=False)
    return _judged(view, plan, notes)


def _judged(view: KernelView, plan: BindingPlan, notes: list[Reason]) -> CheckResult:
    """The process against ``plan``: differences outside it are mismatches, narrowing within it notes; each
    thread's drift."""
    mismatches = compare(plan, view, within=True)
    within = narrowed_within(plan, view)
    return CheckResult(view=view, gpus=plan.gpus, plan=plan, mismatches=mismatches, notes=(*notes, *within),
                       drift=drift(plan, view))


def _machine(root: str | Path | FileTree | CapturedTree, simulate: str | None) -> CapturedTree | Simulated | None:
    """The machine a check reads, decided once from its arguments: a simulated one (``simulate``, default this
    process's ``GPUNUMA_SIMULATE``), a captured tree (``root`` other than ``/``), else this machine (None)."""
    if simulate is not None:
        return Simulated(simulate)
    if isinstance(root, CapturedTree):
        return root
    if isinstance(root, FileTree):
        return CapturedTree(root, origin=root.root)
    if os.path.realpath(root) != "/":
        return CapturedTree(os.fspath(root), origin=os.fspath(root))  # a folder, read in place
    return configure(binding=False, strict=False, warn=False).machine


def _recorded_plan(source: TopologySource, record: OwnBinding) -> BindingPlan:
    """What a gpunuma launcher bound the process to before it started, as a plan to compare with."""
    held = record.mempolicy
    memory = MemoryPolicy.NONE
    if held is not None:
        memory = MemoryPolicy.BIND if held.mode is Mode.BIND else MemoryPolicy.PREFERRED
    nodes = tuple(node.id for node in source.read().nodes if not node.cpus.isdisjoint(record.cpus))
    memory_text = "left alone" if held is None else f"{held.mode.word} {node_list(held.nodes)}"
    return BindingPlan(
        gpus=(), nodes=nodes, cpus=record.cpus, memory_policy=memory,
        memory_nodes=held.nodes if held is not None else (),
        reasons=(Reason.of("check_own_record", cpus=record.cpus.to_list(), memory=memory_text),),
    )


def _nothing_to_bind(source: TopologySource) -> BindingPlan | None:
    """A plan that binds nothing on a machine without a GPU (nothing to bind is expected), else None."""
    try:
        topology = source.read()
    except GpunumaError:
        return None
    if topology.gpus:
        return None
    return BindingReport.not_bound(None, "plan", (Reason.of("no_gpu_on_machine"),)).plan
