"""The composition root: the one place that builds adapters and runs resolve -> plan -> apply.

Every entry point (``bind_to_gpu``/``bind_to_node``/``plan_for``/``apply_plan``, ``check_process``,
the CLI, the Ray integration, the launch helpers) decides one frozen :class:`~gpunuma.settings.Options`
at its edge (:func:`gpunuma.settings.configure`) and calls :func:`plan`, :func:`apply` or :func:`bind`
here. Adapters are passed in as instances (tests inject simulated machines and the simulated kernel) or
built here by registry name, each given its collaborators: the kernel source the NVML and auto sources
read nodes from, this process's own view for a source that reads this very process, the raw-syscall
binder where libnuma is missing, a simulated machine's kernel for a binding on it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from gpunuma.adapters import guard, own_binding
from gpunuma.adapters.files import files_of
from gpunuma.adapters.kernel_view import read_environ, read_pages, read_process
from gpunuma.adapters.own_binding import ThisProcess
from gpunuma.adapters.process import errno_word
from gpunuma.adapters.share_slots import ShareSlots as ShareSlots
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.cpuset import node_list
from gpunuma.core.identity import GpuEnvironment, describe_resolution
from gpunuma.core.pages import Pages, parse_numa_maps, percent
from gpunuma.core.plan import Allowed, BindingPlan
from gpunuma.core.planner import TopologyNeeds, plan_binding, topology_needs
from gpunuma.core.policy import MemoryPolicy
from gpunuma.core.ports import Binder, RayLike, TopologySource
from gpunuma.core.reasons import Reason
from gpunuma.core.rebind import format_record
from gpunuma.core.report import BindingReport, KernelView, Migration
from gpunuma.errors import (
    BindError,
    GpunumaError,
    HalfBoundError,
    NotBoundError,
    PlanError,
    PolicyError,
    SettingsError,
    SnapshotError,
    UnknownSourceError,
)
from gpunuma.registry import SOURCE_NAMES, binder_class, topology_source_class
from gpunuma.settings import CapturedTree, Options, Simulated, read_gpu_environment
from gpunuma.settings import hand_down_own_binding as hand_down

logger = logging.getLogger(__name__)

#: Why a captured tree is read without NVML.
_TREE_WITHOUT_NVML = (
    "this machine's NVML does not describe a captured tree (--simulate PATH replays a snapshot's recorded NVML answers)"
)


# -- adapters ------------------------------------------------------------------------------------
def check_plan(plan: object) -> BindingPlan:
    """``plan`` when it is a :class:`BindingPlan`, else a :class:`~gpunuma.errors.PlanError` naming it (misuse)."""
    if not isinstance(plan, BindingPlan):
        raise PlanError(f"plan={plan!r:.80}: expected a BindingPlan (from plan_for), not a {type(plan).__name__}")
    return plan


def make_source(
    source: str | TopologySource = "auto",
    *,
    machine: CapturedTree | Simulated | None = None,
    nvidia_visible_devices: str | None = None,
    needs: TopologyNeeds = TopologyNeeds(),
    nvml_when: str = "always",
) -> TopologySource:
    """A topology source: an instance passes through; a name (``auto``/``nvml``/``sysfs``) is built to read
    ``machine``: this machine (None), a captured tree (its kernel files only: this machine's NVML does not
    describe it) or a simulated machine (the registry's ``simulated`` source, reading it through the named one).

    ``nvidia_visible_devices`` (the container runtime's variable) reaches the sysfs reader, which uses it only
    when ``/proc`` and ``/dev`` say nothing. ``needs`` is what the plan reads of the topology
    (:func:`~gpunuma.core.planner.topology_needs`); ``nvml_when="needed"``: the auto source asks NVML only for
    what sysfs cannot answer (:func:`gpunuma.adapters.auto.nvml_needs`).
    """
    if not isinstance(source, str):
        return source
    if source not in SOURCE_NAMES:
        raise UnknownSourceError(f"unknown topology source {source!r}; known: {', '.join(SOURCE_NAMES)}")
    if isinstance(machine, Simulated):
        return topology_source_class("simulated")(machine.name, source)
    sysfs = topology_source_class("sysfs")(
        root="/" if machine is None else machine.tree,
        nvidia_visible_devices=nvidia_visible_devices,
        layout=needs.layout,
        gpus=needs.gpus,
        process=ThisProcess() if machine is None else None,
    )
    if source == "sysfs":
        return sysfs
    cls = topology_source_class(source)
    if machine is not None:
        if source == "nvml":
            where, _ = files_of(machine.tree)
            raise SnapshotError(f"source 'nvml' cannot read {where}: {_TREE_WITHOUT_NVML}; use sysfs or auto")
        return cls(sysfs=sysfs, without_nvml=_TREE_WITHOUT_NVML)
    if source == "auto":
        return cls(sysfs=sysfs, nvml_when=nvml_when)
    return cls(sysfs=sysfs)


def make_binder(binder: str | Binder | None = None) -> Binder:
    """A binder: an instance passes through, a name is built, None is the default (:func:`default_binder`)."""
    if binder is None:
        return default_binder()
    if isinstance(binder, str):
        return binder_class(binder)()
    return binder


def default_binder(library: str = "libnuma.so.1") -> Binder:
    """The libnuma binder, or the raw-syscall binder when ``library`` is missing or refuses; its reports say why."""
    try:
        return binder_class("libnuma")(library)
    except BindError as err:
        return binder_class("syscall")(notes=(Reason.of("libnuma_not_used", error=str(err)),))


def _simulated(machine: Simulated, kind: str = "sysfs") -> Any:
    """The ``simulated`` source of ``machine`` read through ``kind`` (it has the machine's kernel too); a name that
    is neither a catalogue machine nor a readable snapshot is a :class:`~gpunuma.errors.SettingsError`."""
    try:
        source = make_source(kind, machine=machine)
        source.read()
    except LookupError as err:
        raise SettingsError(str(err)) from err
    return source


def _source(
    options: Options, needs: TopologyNeeds, environment: GpuEnvironment | None, *, nvml_when: str
) -> TopologySource:
    """The source a plan reads: the options' own, or the one its name builds for what the plan needs."""
    chosen = options.source
    if not needs.gpus and chosen in ("auto", "nvml"):
        # No GPU data needed: sysfs alone spares loading pynvml and nvmlInit.
        chosen = "sysfs"
    if isinstance(chosen, str) and isinstance(options.machine, Simulated):
        return _simulated(options.machine, chosen)
    return make_source(
        chosen,
        machine=options.machine,
        nvidia_visible_devices=environment.nvidia_visible_devices if environment is not None else None,
        needs=needs,
        nvml_when=nvml_when,
    )


def _binder(options: Options) -> Binder:
    """The binder an apply uses: no-op when binding is off; on a simulated machine its simulated kernel, unless an
    instance or ``noop`` was given, so nothing on this machine changes; else the options' own."""
    if not options.enabled:
        return make_binder("noop")
    binder = options.binder
    if isinstance(options.machine, Simulated) and (binder is None or (isinstance(binder, str) and binder != "noop")):
        kernel: Binder = _simulated(options.machine).kernel()
        return kernel
    return make_binder(binder)


def hand_down_own_binding(*, only_set: bool = False) -> None:
    """Pass gpunuma's own binding of this process to the programs it starts (``GPUNUMA_OWN``), so a
    ``bind_to_*`` there tells it from a ``taskset``/``numactl`` narrowing, as this process would.

    Written after every binding that held and before an exec; ``only_set`` leaves the variable alone when
    there is no record (a binder that keeps none, such as a simulated kernel).
    """
    own = own_binding.current()
    if own is not None or not only_set:
        hand_down(format_record(own) if own is not None else None)


def process_state(
    pid: int | str, machine: CapturedTree | Simulated | None = None
) -> tuple[KernelView, dict[str, str] | None]:
    """What the kernel of ``machine`` (None: this one) holds for process ``pid`` and the environment it started
    with; on a simulated machine, what its simulated kernel holds (this process's own kernel, or what another
    process's shows)."""
    if isinstance(machine, Simulated):
        view = _simulated(machine).process(pid)
        return view, read_environ(pid)
    path, files = files_of("/" if machine is None else machine.tree)
    return read_process(pid, proc_root=os.path.join(path, "proc"), files=files)


def process_pages(pid: int | str, machine: CapturedTree | Simulated | None = None) -> Pages | None:
    """Where process ``pid``'s pages are (its ``numa_maps`` on ``machine``, None: this one), None when unreadable;
    on a simulated machine, the pages its simulated kernel counts for the process."""
    if isinstance(machine, Simulated):
        text = _simulated(machine).numa_maps(pid)
        return parse_numa_maps(text) if text is not None else None
    path, files = files_of("/" if machine is None else machine.tree)
    return read_pages(pid, proc_root=os.path.join(path, "proc"), files=files)


def process_allowed(pid: int | str, machine: CapturedTree | Simulated | None = None) -> Allowed:
    """What a process's cgroup allows it, its affinity taken as the whole cpuset (for checking it); on a
    simulated machine, the machine's cgroup, which every process on it shares."""
    if isinstance(machine, Simulated):
        allowed: Allowed = _simulated(machine).allowed()
    else:
        itself = machine is None and str(pid) in ("self", str(os.getpid()))
        root = "/" if machine is None else machine.tree
        allowed = SysfsTopology(root=root, pid=pid, process=ThisProcess() if itself else None).allowed()
    return replace(allowed, affinity=allowed.cpus)


def gpu_environment(
    gpus: object, node: int | None, env: Mapping[str, str] | None = None, ray: RayLike | None = None
) -> GpuEnvironment:
    """What the environment (``env``, default ``os.environ``) and Ray say about this process's GPUs.

    An explicit node with no GPU resolves nothing; named GPUs leave Ray unasked (they win over it).
    """
    if node is not None and gpus is None:
        return GpuEnvironment()
    return read_gpu_environment(env, ray, ask_ray=gpus is None)


# -- resolve, plan, apply -----------------------------------------------------------------------
def plan(
    options: Options,
    *,
    gpus: Sequence[int | str] | None = None,
    physical: Sequence[int | str] | None = None,
    node: int | None = None,
    environment: GpuEnvironment | None = None,
    allowed: Allowed | None = None,
    reasons: tuple[Reason, ...] = (),
) -> BindingPlan:
    """Read the topology, resolve this process's GPUs (``gpus``/``physical``, else ``environment``) and plan.

    Changes nothing. With ``node`` and no GPU, plans an explicit node for a CPU-only process.
    ``allowed`` replaces what the source reports this process may use (checking another process).
    ``reasons`` are what the caller decided before planning (a share derived from Ray); they lead the plan's.
    It reads the process under the bind lock, never half way through another thread's bind.
    """
    with guard.lock():
        return _plan(options, gpus, physical, node, environment, allowed, reasons)


def _plan(
    options: Options,
    gpus: Sequence[int | str] | None,
    physical: Sequence[int | str] | None,
    node: int | None,
    environment: GpuEnvironment | None,
    allowed: Allowed | None,
    reasons: tuple[Reason, ...],
) -> BindingPlan:
    named = gpus is not None or physical is not None
    node_only = node is not None and not named
    needs = topology_needs(options.policy, node_only=node_only)
    nvml_when = "always" if _names_mig(gpus, physical, environment) else "needed"
    src = _source(options, needs, environment, nvml_when=nvml_when)
    topology = src.read()
    if allowed is None:
        allowed = src.allowed()
    resolution_reasons: tuple[Reason, ...] = ()
    given = "CUDA_VISIBLE_DEVICES or Ray"
    if node_only:
        owned: tuple[int, ...] = ()
    else:
        resolution = describe_resolution(topology, gpus=gpus, physical=physical, env=environment or GpuEnvironment())
        owned = resolution.gpus
        given = resolution.source or given
        for warning in resolution.warnings:  # the core says what was odd in the environment; logged here
            logger.warning(warning)
        resolution_reasons = (*resolution.reasons, *resolution.warnings)
    if not owned and node is None:
        if not topology.gpus:
            why: tuple[Reason, ...] = (Reason.of("no_gpu_on_machine"),)
        else:
            why = resolution_reasons or (Reason.of("no_gpu_owned", source=given),)
        return BindingReport.not_bound(None, "plan", why).plan
    planned = plan_binding(topology, owned, allowed, options.policy, node=node)
    notes = (*reasons, *resolution_reasons, *(Reason.of("topology_note", note=note) for note in topology.notes))
    return replace(planned, reasons=(*notes, *planned.reasons)) if notes else planned


def _names_mig(
    gpus: Sequence[int | str] | None, physical: Sequence[int | str] | None, environment: GpuEnvironment | None
) -> bool:
    """Whether the request names a MIG instance: only NVML can say which GPU holds it."""
    named = [str(item) for item in (*(gpus or ()), *(physical or ()))]
    return any(item.upper().startswith("MIG-") for item in named) or (
        environment is not None and environment.names_mig
    )


def apply(options: Options, planned: BindingPlan, *, began: int | None = None) -> BindingReport:
    """Apply ``planned`` with the options' binder: the one apply path, logged and kept (:func:`last_report`).

    Best effort unless ``options.strict``: a binder that cannot be built or fails gives a "not bound"
    report and a warning; binders restore the process before raising, so it is never half bound (where
    the kernel refuses to give a thread back, the report names it: ``bind_failed_not_undone``).
    ``options.require`` raises :class:`~gpunuma.errors.NotBoundError` when the outcome is not bound;
    ``options.require_local`` also, changing nothing, when the plan is not on its GPUs' own node.

    Applying and recording happen under the bind lock, signals deferred. A call that another binding of this
    process overtook (one that held after the call began, when :func:`bindings_held` was ``began``)
    changes nothing, and says which binding won (:func:`lost_to_another`).
    """
    began = _held if began is None else began
    method = options.method
    if options.require_local and options.enabled and planned.binds and planned.elsewhere:
        first = next(reason for reason in planned.reasons if getattr(reason, "code", "") == "not_on_gpu_node")
        values = {key: first.values[key] for key in ("gpu", "own", "nodes")}  # type: ignore[attr-defined]
        return _kept(options, BindingReport.not_bound(planned, method, (Reason.of("not_local_refused", **values),)))
    try:
        binder = _binder(options)
    except GpunumaError as err:
        if options.strict and isinstance(err, UnknownSourceError):
            raise  # a binder name that does not exist: a mistake in the call (exit 2)
        why = Reason.of("binder_unavailable", method=method, error=str(err))
        return _kept(options, BindingReport.not_bound(planned, method, (why,)), cause=err)
    with guard.lock():
        if planned.binds and _held != began:
            return lost_to_another(options, planned)
        with guard.DeferredSignals():
            report = _applied(options, binder, planned)
    if options.migrate and report.bound:
        # Outside the bind lock, signals not deferred: moving gigabytes takes seconds and Ctrl-C must stop it.
        report = _migrated(options, binder, report)
    return report


def _migrated(options: Options, binder: Binder, report: BindingReport) -> BindingReport:
    """``report`` with the pages the process already had moved to its memory nodes (``migrate=True``), logged and
    kept as the binding in force. Refused, with a reason, where the binding holds no memory policy."""
    prefix = f"gpunuma: [{options.label}] " if options.label else "gpunuma: "
    nodes = report.memory_nodes or report.plan.memory_nodes or report.plan.nodes
    if report.memory_policy is None:
        held = "none" if report.plan.memory_policy is MemoryPolicy.NONE else "refused by the kernel"
        reason = Reason.of("migrate_without_memory_policy", policy=held, nodes=node_list(nodes))
        logger.warning("%s%s", prefix, reason)
        return _in_force(report, replace(report, reasons=(*report.reasons, reason)))
    before = binder.pages()
    started = time.perf_counter()
    try:
        left = binder.migrate(nodes)
    except OSError as err:
        reason = Reason.of("migrate_pages_refused", errno=errno_word(err.errno))
        logger.warning("%s%s", prefix, reason)
        return _in_force(report, replace(report, reasons=(*report.reasons, reason)))
    seconds = time.perf_counter() - started
    migration = Migration.measured(nodes, before, binder.pages(), left, seconds)
    reason = Reason.of(
        "migrate_pages_moved", moved=migration.pages_moved, nodes=node_list(nodes), ms=round(seconds * 1000, 1),
        before=percent(migration.local_before), after=percent(migration.local_after), left=left,
    )
    logger.info("%s%s", prefix, reason)
    return _in_force(report, replace(report, reasons=(*report.reasons, reason), migration=migration))


def _in_force(kept: BindingReport, report: BindingReport) -> BindingReport:
    """``report`` (``kept`` with more said), kept as the binding in force where ``kept`` still is."""
    with guard.lock():
        if _LAST and _LAST[-1] is kept:
            _LAST[:] = [report]
    return report


def _applied(options: Options, binder: Binder, planned: BindingPlan) -> BindingReport:
    global _held
    try:
        report = binder.apply(planned)
    except GpunumaError as err:
        if isinstance(err, HalfBoundError):
            why = Reason.of("bind_failed_not_undone", threads=list(err.unrestored), error=str(err))
        else:
            why = Reason.of("bind_failed", error=str(err))
        return _kept(options, BindingReport.not_bound(planned, binder.name, (why,)), cause=err)
    if report.bound:
        # Children inherit the affinity (fork, spawn, subprocess, exec): with the record beside it, their own
        # bind_to_* knows it is gpunuma's, not a taskset narrowing to leave alone, and rebinds for its GPU.
        hand_down_own_binding(only_set=True)
        _held += 1
    return _kept(options, report, binder)


def lost_to_another(options: Options, planned: BindingPlan) -> BindingReport:
    """The report of a bind that another binding of this process overtook: it changed nothing.

    Bound when the binding in force sets the CPUs and memory this plan asks for, else not bound; either way
    it names the binding in force (``bound_by_concurrent_bind``, ``concurrent_bind_won``), and
    :func:`last_report` keeps naming that binding.
    """
    held = last_report()
    assert held is not None and held.bound, "a binding that held is kept before the bind lock is released"
    gpus = ",".join(map(str, held.plan.gpus)) or "none"
    values = {"cpus": held.cpus.to_list(), "gpus": gpus, "nodes": node_list(held.plan.nodes)}
    if (held.plan.cpus, held.plan.memory_policy, held.plan.memory_nodes) == (
        planned.cpus, planned.memory_policy, planned.memory_nodes
    ):
        report = replace(held, plan=planned, reasons=(*held.reasons, Reason.of("bound_by_concurrent_bind", **values)))
    else:
        report = BindingReport.not_bound(planned, options.method, (Reason.of("concurrent_bind_won", **values),))
    _log(report, options)
    if (options.require or options.strict) and options.enabled and not report.ok:
        raise NotBoundError(report)
    return report


def bind(
    options: Options,
    *,
    gpus: Sequence[int | str] | None = None,
    physical: Sequence[int | str] | None = None,
    node: int | None = None,
    environment: GpuEnvironment | None = None,
    reasons: tuple[Reason, ...] = (),
) -> BindingReport:
    """Plan, then apply, in one hold of the bind lock: a planning failure is a "not bound" report unless
    ``options.strict``; a bind another of this process overtook changes nothing (:func:`apply`)."""
    began = _held
    with guard.lock():
        try:
            planned = plan(options, gpus=gpus, physical=physical, node=node, environment=environment, reasons=reasons)
        except GpunumaError as err:
            if options.strict and isinstance(err, (SettingsError, PolicyError, UnknownSourceError)):
                raise  # a mistake in the configuration, not a machine that cannot be bound (exit 2)
            why = Reason.of("plan_failed", error=str(err))
            return _kept(options, BindingReport.not_bound(None, options.method, (why,)), cause=err)
        return apply(options, planned, began=began)


def bindings_held() -> int:
    """How many bindings that held this process has applied so far (:func:`apply`'s ``began``)."""
    return _held


#: Bindings that held so far in this process (written under the bind lock).
_held = 0


#: The report of the binding in force in this process, or of the latest attempt while none held (see
#: :func:`last_report`).
_LAST: list[BindingReport] = []
#: The binder that applied the binding in force (empty while none holds): ``verify`` reads back and repairs
#: through it.
_IN_FORCE_BINDER: list[Binder] = []


def last_report() -> BindingReport | None:
    """The binding in force in this process: the report of the latest binding that held (``bind_to_*``,
    ``apply_plan``, the Ray setup hook, ``start_bound_process``, ``gpunuma exec``). An attempt that bound
    nothing (it failed, or had nothing to bind) changes nothing, so it does not replace that report (its
    caller still gets it); while none has held, the latest attempt says why. None before any."""
    return _LAST[-1] if _LAST else None


def binding_in_force() -> tuple[BindingReport, Binder] | None:
    """The report of the binding in force in this process and the binder that applied it; None while none holds."""
    if _LAST and _LAST[-1].bound and _IN_FORCE_BINDER:
        return _LAST[-1], _IN_FORCE_BINDER[-1]
    return None


def _kept(
    options: Options, report: BindingReport, binder: Binder | None = None, cause: GpunumaError | None = None
) -> BindingReport:
    """Log ``report``, keep it as the last report when it is in force (it bound, or none bound before), with the
    binder that applied it, and raise when binding was required and did not happen.

    Whichever switch asked (``strict``, ``require``), "nothing got bound" is one type, :class:`NotBoundError`: its
    ``report`` says why, and the typed error that stopped the binding (a GPU the machine lacks, a binder the kernel
    refused) is its ``__cause__``.
    """
    if report.bound or not (_LAST and _LAST[-1].bound):
        _LAST[:] = [report]
        _IN_FORCE_BINDER[:] = [binder] if report.bound and binder is not None else []
    # Strict means "never run unbound": a plan that binds nothing fails like a syscall that fails. The error says
    # why; the caller decides what to show, so nothing is logged twice.
    if (options.require or options.strict) and options.enabled and not report.ok:
        raise NotBoundError(report) from cause
    _log(report, options)
    return report


#: How a handler gpunuma adds (a Ray worker's, the command's) shows a line: the one place that says "gpunuma".
LINE_FORMAT = "gpunuma: %(message)s"


def _log(report: BindingReport, options: Options) -> None:
    """One line per binding: INFO when bound (or a dry run, GPUNUMA_BIND=0), WARNING when not bound, when the
    kernel refused part of it, or when the binding is not on the GPU's own node (saying so and why); every
    read-back mismatch as a WARNING."""
    # No "gpunuma:" of its own: the logger's name (gpunuma.compose) or the handler gpunuma adds (a Ray worker's, the
    # command's) says where a line comes from, once.
    prefix = f"[{options.label}] " if options.label else ""
    gpus = ",".join(str(g) for g in report.plan.gpus)
    suffix = f" for GPU {gpus}" if gpus else ""
    refused = report.bound and report.memory_policy is None and report.plan.memory_policy is not MemoryPolicy.NONE
    away = [reason for reason in report.plan.reasons if getattr(reason, "code", "") == "not_on_gpu_node"]
    if report.bound and away and options.enabled:
        logger.warning("%s%s%s; %s", prefix, report.summary(), suffix, "; ".join(away))
    elif (report.bound and not refused) or not options.enabled:
        logger.info("%s%s%s", prefix, report.summary(), suffix)
    else:
        logger.warning("%s%s%s", prefix, report.summary(), suffix)
    for mismatch in report.mismatches:
        logger.warning("%sread-back differs from the plan: %s", prefix, mismatch)


def share_slots() -> ShareSlots:
    """The host-local slots (one ``flock`` file each) from which processes sharing a GPU claim distinct parts."""
    return ShareSlots()
