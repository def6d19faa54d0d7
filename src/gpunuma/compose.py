"""The composition root: the one place that builds adapters and runs resolve -> plan -> apply.

Every entry point (``bind_to_gpu``/``bind_to_node``/``plan_for``/``apply_plan``, ``check_process``,
the CLI, the Ray integration, the launch helpers) builds one frozen :class:`Options` at its edge
and calls :func:`plan`, :func:`apply` or :func:`bind` here. Adapters are passed in as instances
(tests inject simulated machines and the simulated kernel) or built here by registry name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from gpunuma.adapters import guard, own_binding
from gpunuma.adapters.files import files_of
from gpunuma.adapters.kernel_view import read_environ, read_pages, read_process
from gpunuma.adapters.libnuma import default_binder
from gpunuma.adapters.share_slots import ShareSlots as ShareSlots
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.cpuset import node_list
from gpunuma.core.filetree import FileTree
from gpunuma.core.identity import GpuEnvironment, describe_resolution
from gpunuma.core.pages import Pages, parse_numa_maps
from gpunuma.core.plan import Allowed, BindingPlan
from gpunuma.core.planner import plan_binding
from gpunuma.core.policy import CpuScope, MemoryPolicy, Policy
from gpunuma.core.ports import Binder, RayLike, TopologySource
from gpunuma.core.reasons import Reason
from gpunuma.core.rebind import format_record
from gpunuma.core.report import BindingReport, KernelView
from gpunuma.errors import (
    GpunumaError,
    HalfBoundError,
    NotBoundError,
    PlanError,
    PolicyError,
    SnapshotError,
    UnknownSourceError,
)
from gpunuma.registry import binder_class, simulated_source_class, topology_source_class
from gpunuma.settings import Settings, SettingsError, read_gpu_environment
from gpunuma.settings import hand_down_own_binding as hand_down

logger = logging.getLogger(__name__)

#: The variables that make up a :class:`Policy`: a caller's own policy replaces them all.
POLICY_VARIABLES = (
    "GPUNUMA_CPU_SCOPE", "GPUNUMA_MEMORY", "GPUNUMA_OVERRIDE", "GPUNUMA_SPREAD", "GPUNUMA_SHARE", "GPUNUMA_RESERVE",
)


@dataclass(frozen=True, slots=True)
class Options:
    """How to bind, decided once: the adapters, the policy and the switches every entry point shares.

    ``source``/``binder`` are registry names or adapter instances (``binder=None``: libnuma, else raw
    syscalls). ``enabled=False`` (``GPUNUMA_BIND=0``) swaps in the no-op binder whatever was given.
    ``root`` is the filesystem root sources built by name read (``/`` on a real machine), or a captured
    machine's tree held in memory (:class:`~gpunuma.core.filetree.FileTree`).
    ``require`` raises :class:`~gpunuma.errors.NotBoundError` when nothing gets bound; ``require_local`` also when
    the binding would not be on the GPU's own node (the plan's ``elsewhere``), binding nothing then. ``simulate``
    names a simulated machine or a captured host: the named adapters are then replaced by its source
    and its simulated kernel, so nothing on this machine changes. ``problems`` names the ``GPUNUMA_*``
    values that were malformed and replaced by their defaults (best-effort mode).
    """

    source: str | TopologySource = "auto"
    binder: str | Binder | None = None
    policy: Policy = Policy()
    strict: bool = False
    enabled: bool = True
    label: str | None = None
    root: str | Path | FileTree = "/"
    require: bool = False
    simulate: str | None = None
    problems: tuple[str, ...] = ()
    require_local: bool = False
    #: Hand the binding's environment to the children a launcher starts (``GPUNUMA_CHILD_ENV``).
    child_env: bool = True

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        source: str | TopologySource | None = None,
        binder: str | Binder | None = None,
        policy: Policy | None = None,
        strict: bool | None = None,
        label: str | None = None,
        root: str | Path | FileTree = "/",
        require: bool | None = None,
        ignore: Collection[str] = (),
        warn: bool = True,
        require_local: bool | None = None,
        child_env: bool | None = None,
    ) -> Options:
        """``GPUNUMA_*`` of ``env`` (default ``os.environ``), with every explicit argument winning.

        A variable an explicit argument replaces is not read at all (a bad value there is no mistake);
        ``ignore`` names more such variables (the command line's flags). Other bad values: see
        :meth:`Settings.from_env <gpunuma.settings.Settings.from_env>`.
        """
        check_arguments(source=source, binder=binder, policy=policy, strict=strict, require=require, label=label,
                        root=root, require_local=require_local, child_env=child_env)
        skipped = {*ignore, *(POLICY_VARIABLES if policy is not None else ())}
        if source is not None:
            skipped.add("GPUNUMA_SOURCE")
        if strict is not None:
            skipped.add("GPUNUMA_STRICT")
        if require is not None or require_local is not None:
            skipped.add("GPUNUMA_REQUIRE")
        if child_env is not None:
            skipped.add("GPUNUMA_CHILD_ENV")
        settings = Settings.from_env(env, strict=strict, ignore=skipped, warn=warn)
        return cls(
            source=settings.source if source is None else source,
            binder=binder,
            policy=settings.policy if policy is None else policy,
            strict=settings.strict if strict is None else strict,
            enabled=settings.enabled,
            label=label,
            root=root,
            require=settings.require if require is None and require_local is None else bool(require or require_local),
            require_local=settings.require_local if require is None and require_local is None else bool(require_local),
            child_env=settings.child_env if child_env is None else child_env,
            simulate=settings.simulate,
            problems=settings.problems,
        )

    @property
    def method(self) -> str:
        """The name reports give the binder before it is built."""
        if not self.enabled:
            return "noop"
        if self.binder is None:
            return "libnuma"
        return self.binder if isinstance(self.binder, str) else str(getattr(self.binder, "name", "?"))


# -- adapters ------------------------------------------------------------------------------------
def check_arguments(
    *,
    source: object = None,
    binder: object = None,
    policy: object = None,
    strict: object = None,
    require: object = None,
    label: object = None,
    root: object = "/",
    require_local: object = None,
    child_env: object = None,
) -> None:
    """A wrong kind of argument is a typed error naming it, before anything reads it (``policy="exclusive"``).

    The entry points' keyword arguments have their checks here: adapters (:class:`UnknownSourceError`), the
    policy (:class:`PolicyError`), the switches, the label and the root (:class:`SettingsError`). A wrong kind is
    a programming error: it raises whatever the mode, where a problem of the machine is best-effort.
    """
    switches = (("strict", strict), ("require_bound", require), ("require_local", require_local),
                ("child_env", child_env))
    for name, switch in switches:
        if switch is not None and not isinstance(switch, bool):
            raise SettingsError(f"{name}={switch!r:.80}: expected True, False or None (None: its GPUNUMA_* variable)")
    if label is not None and not isinstance(label, str):
        raise SettingsError(f"label={label!r:.80}: expected text naming this process in the log, or None")
    if not isinstance(root, (str, os.PathLike, FileTree)):
        raise SettingsError(f"root={root!r:.80}: expected a path, such as '/' (this machine), or a captured tree")
    if policy is not None and not isinstance(policy, Policy):
        raise PolicyError(f"policy={policy!r:.80}: expected a Policy, e.g. Policy(cpu_scope='exclusive')")
    if source is not None and not isinstance(source, str) and not (
        callable(getattr(source, "read", None)) and callable(getattr(source, "allowed", None))
    ):
        raise UnknownSourceError(f"source={source!r:.80}: expected a name or an object with read() and allowed()")
    if binder is not None and not isinstance(binder, str) and not callable(getattr(binder, "apply", None)):
        raise UnknownSourceError(f"binder={binder!r:.80}: expected a binder name or an object with apply(plan)")


def check_plan(plan: object) -> BindingPlan:
    """``plan`` when it is a :class:`BindingPlan`, else a :class:`~gpunuma.errors.PlanError` naming it (misuse)."""
    if not isinstance(plan, BindingPlan):
        raise PlanError(f"plan={plan!r:.80}: expected a BindingPlan (from plan_for), not a {type(plan).__name__}")
    return plan


def make_source(
    source: str | TopologySource | None = None,
    *,
    root: str | Path | FileTree = "/",
    simulate: str | None = None,
    nvidia_visible_devices: str | None = None,
    layout: bool = True,
    gpus: bool = True,
    nvml_when: str = "always",
) -> TopologySource:
    """A topology source: an instance passes through, a name (``auto``/``nvml``/``sysfs``) is built.

    ``simulate`` names a catalogue machine (``gpunuma machines``) or a captured host (a snapshot):
    the named source then reads that simulated machine instead of this one. A ``root`` other than
    ``/`` is a captured tree: its kernel files only, since this machine's NVML does not describe it.
    ``nvidia_visible_devices`` (the container runtime's variable) reaches the sysfs reader, which
    uses it only when ``/proc`` and ``/dev`` say nothing. ``layout=False``: the sysfs reader skips each
    CPU's core and socket (a node-scope plan needs neither); ``gpus=False``: it skips the PCI bus (no GPU,
    no NIC: a plan for an explicit node and no GPU needs neither). ``nvml_when="needed"``: the auto source
    asks NVML only for what sysfs cannot answer (:func:`gpunuma.adapters.auto.nvml_needs`).
    """
    if source is None:
        source = "auto"
    if not isinstance(source, str):
        return source
    if simulate is not None:
        return simulated_source_class()(simulate, source)
    cls = topology_source_class(source)
    sysfs = topology_source_class("sysfs")(
        root=root, nvidia_visible_devices=nvidia_visible_devices, layout=layout, gpus=gpus
    )
    if source in ("auto", "nvml") and not _this_machine(root):
        why = (
            "this machine's NVML does not describe a captured tree "
            "(--simulate PATH replays a snapshot's recorded NVML answers)"
        )
        if source == "nvml":
            raise SnapshotError(f"source 'nvml' cannot read {getattr(root, 'root', root)}: {why}; use sysfs or auto")
        return cls(sysfs=sysfs, without_nvml=why)
    if source == "sysfs":
        return sysfs
    if source == "auto":
        return cls(sysfs=sysfs, nvml_when=nvml_when)
    return cls(sysfs=sysfs)


def make_binder(binder: str | Binder | None = None) -> Binder:
    """A binder: an instance passes through, a name is built, None is libnuma (else raw syscalls)."""
    if binder is None:
        return default_binder()
    if isinstance(binder, str):
        return binder_class(binder)()
    return binder


def hand_down_own_binding(*, only_set: bool = False) -> None:
    """Pass gpunuma's own binding of this process to the programs it starts (``GPUNUMA_OWN``), so a
    ``bind_to_*`` there tells it from a ``taskset``/``numactl`` narrowing, as this process would.

    Written after every binding that held and before an exec; ``only_set`` leaves the variable alone when
    there is no record (a binder that keeps none, such as a simulated kernel).
    """
    own = own_binding.current()
    if own is not None or not only_set:
        hand_down(format_record(own) if own is not None else None)


def _this_machine(root: str | Path | FileTree) -> bool:
    """Whether ``root`` is this machine's own ``/`` (not a captured tree, on disk or in memory)."""
    return isinstance(root, (str, os.PathLike)) and os.path.realpath(root) == "/"


def process_state(
    pid: int | str, root: str | Path | FileTree = "/", *, simulate: str | None = None
) -> tuple[KernelView, dict[str, str] | None]:
    """What the kernel holds for process ``pid`` under ``root`` and the environment it started with.

    ``simulate`` names a simulated machine: what its simulated kernel holds for the process instead (this
    process's own kernel, or what another process's shows), beside the environment the process started with.
    """
    if simulate is not None:
        view = _simulated_machine(simulate).process(pid)  # type: ignore[attr-defined]
        return view, read_environ(pid)
    path, files = files_of(root)
    return read_process(pid, proc_root=os.path.join(path, "proc"), files=files)


def process_pages(pid: int | str, root: str | Path | FileTree = "/", *, simulate: str | None = None) -> Pages | None:
    """Where process ``pid``'s pages are (its ``numa_maps`` under ``root``), None when unreadable.

    ``simulate`` names a simulated machine: the pages its simulated kernel counts for the process.
    """
    if simulate is not None:
        text = _simulated_machine(simulate).numa_maps(pid)  # type: ignore[attr-defined]
        return parse_numa_maps(text) if text is not None else None
    path, files = files_of(root)
    return read_pages(pid, proc_root=os.path.join(path, "proc"), files=files)


def process_allowed(pid: int | str, root: str | Path | FileTree = "/", *, simulate: str | None = None) -> Allowed:
    """What another process's cgroup allows it, its affinity taken as the whole cpuset (for checking it).

    ``simulate``: the simulated machine's cgroup, which every process on it shares.
    """
    if simulate is not None:
        allowed = _simulated_machine(simulate).allowed()
    else:
        allowed = SysfsTopology(root=root, pid=pid).allowed()
    return replace(allowed, affinity=allowed.cpus)


def _simulated_machine(simulate: str, kind: str = "sysfs") -> TopologySource:
    """The simulated machine or captured host ``simulate`` names, read through source ``kind``; a name that is
    neither is a :class:`~gpunuma.settings.SettingsError`."""
    try:
        machine = make_source(kind, simulate=simulate)
        machine.read()
    except LookupError as err:
        raise SettingsError(str(err)) from err
    return machine


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
def simulated(options: Options) -> Options:
    """``options`` with ``simulate`` resolved: named adapters replaced by the simulated machine's.

    The source (a name) reads the simulated machine or captured host; the binder (a name or the
    default, not ``noop``) becomes its simulated kernel, so nothing on this machine is changed.
    Adapter instances passed in code are kept. A name that is neither a catalogue machine nor a
    readable snapshot is a :class:`~gpunuma.settings.SettingsError`.
    """
    if options.simulate is None:
        return options
    binder = options.binder
    replace_binder = binder is None or (isinstance(binder, str) and binder != "noop")
    if not isinstance(options.source, str) and not replace_binder:
        return replace(options, simulate=None)  # both adapters were passed in code
    machine = _simulated_machine(options.simulate, options.source if isinstance(options.source, str) else "auto")
    source = machine if isinstance(options.source, str) else options.source
    if replace_binder:
        binder = machine.kernel()  # type: ignore[attr-defined]
    return replace(options, source=source, binder=binder, simulate=None)


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
    options = simulated(options)
    named = gpus is not None or physical is not None
    node_only = node is not None and not named
    chosen = options.source
    if node_only and chosen in ("auto", "nvml"):
        # An explicit node needs no GPU data: sysfs alone spares loading pynvml and nvmlInit, and the
        # PCI bus (GPUs, NICs) is not read at all.
        chosen = "sysfs"
    # A GPU's plan splits whole cores among the processes of the GPUs sharing its node (their own OpenMP places);
    # for an explicit node only the socket, exclusive and cache scopes, shares and reserved cores look at each
    # CPU's socket, core and cache.
    policy = options.policy
    src = make_source(
        chosen,
        root=options.root,
        nvidia_visible_devices=environment.nvidia_visible_devices if environment is not None else None,
        layout=not node_only or policy.cpu_scope is not CpuScope.NODE or policy.share is not None or policy.reserve > 0,
        gpus=not node_only,
        nvml_when="always" if _names_mig(gpus, physical, environment) else "needed",
    )
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
    options = simulated(options)
    method = options.method
    if options.require_local and options.enabled and planned.binds and planned.elsewhere:
        first = next(reason for reason in planned.reasons if getattr(reason, "code", "") == "not_on_gpu_node")
        values = {key: first.values[key] for key in ("gpu", "own", "nodes")}  # type: ignore[attr-defined]
        return _kept(options, BindingReport.not_bound(planned, method, (Reason.of("not_local_refused", **values),)))
    try:
        binder = make_binder("noop" if not options.enabled else options.binder)
    except GpunumaError as err:
        if options.strict and isinstance(err, UnknownSourceError):
            raise  # a binder name that does not exist: a mistake in the call (exit 2)
        why = Reason.of("binder_unavailable", method=method, error=str(err))
        return _kept(options, BindingReport.not_bound(planned, method, (why,)), cause=err)
    with guard.lock():
        if planned.binds and _held != began:
            return lost_to_another(options, planned)
        with guard.DeferredSignals():
            return _applied(options, binder, planned)


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
            options = simulated(options)
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


def _log(report: BindingReport, options: Options) -> None:
    """One line per binding: INFO when bound (or a dry run, GPUNUMA_BIND=0), WARNING when not bound, when the
    kernel refused part of it, or when the binding is not on the GPU's own node (saying so and why); every
    read-back mismatch as a WARNING."""
    prefix = f"gpunuma: [{options.label}] " if options.label else "gpunuma: "
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
