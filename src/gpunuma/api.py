"""The composition root: builds the adapters, then resolves, plans, binds and reports.

Every public entry point takes its adapters as arguments (``source=``, ``binder=``) and
builds the real defaults only when they are left out, so tests and downstream CI inject
simulated machines and the simulated kernel here and nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import Policy
from gpunuma.core.report import BindingReport, not_bound_report
from gpunuma.errors import GpunumaError
from gpunuma.registry import binder_class, topology_source_class
from gpunuma.settings import Settings

if TYPE_CHECKING:  # annotations only: the bind path in every worker skips building the Protocols
    from gpunuma.core.ports import Binder, TopologySource

logger = logging.getLogger("gpunuma")

#: A GPU as a caller names it: a local device index (the ``cuda:N`` this process sees),
#: a ``GPU-``/``MIG-`` UUID or a PCI bus id, or several of these.
GpuSpec: TypeAlias = int | str | Sequence[int | str] | None


def make_source(source: str | TopologySource | None = None, *, root: str | Path = "/") -> TopologySource:
    """A topology source: an instance passes through, a name (``auto``/``nvml``/``sysfs``) is built."""
    if source is None:
        source = "auto"
    if not isinstance(source, str):
        return source
    cls = topology_source_class(source)
    if source == "nvml":
        sysfs_cls = topology_source_class("sysfs")
        return cls(sysfs=sysfs_cls(root=root))
    return cls(root=root)


def make_binder(binder: str | Binder | None = None) -> Binder:
    """A binder: an instance passes through, a name is built, None is libnuma (else raw syscalls)."""
    if binder is None:
        from gpunuma.adapters.libnuma import default_binder

        return default_binder()
    if isinstance(binder, str):
        return binder_class(binder)()
    return binder


def _gpu_arg(gpu: GpuSpec) -> Sequence[int | str] | None:
    if gpu is None:
        return None
    if isinstance(gpu, (int, str)):
        return [gpu]
    return list(gpu)


def plan_for(
    gpu: GpuSpec = None,
    *,
    node: int | None = None,
    source: str | TopologySource | None = None,
    policy: Policy | None = None,
    env: Mapping[str, str] | None = None,
    ray: Any = None,
) -> BindingPlan:
    """Resolve this process's GPU(s), read the topology and return the plan; changes nothing.

    With ``node`` and no ``gpu``, plans an explicit node for a CPU-only process.
    """
    return _plan(gpu, node, source, policy, env, ray, Settings.from_env(env))


def _plan(
    gpu: GpuSpec,
    node: int | None,
    source: str | TopologySource | None,
    policy: Policy | None,
    env: Mapping[str, str] | None,
    ray: Any,
    settings: Settings,
) -> BindingPlan:
    from gpunuma.core.identity import describe_resolution
    from gpunuma.core.planner import plan_binding

    chosen = source if source is not None else settings.source
    if node is not None and gpu is None and chosen in ("auto", "nvml"):
        # An explicit node needs no GPU data: sysfs alone spares loading pynvml and nvmlInit.
        chosen = "sysfs"
    src = make_source(chosen)
    topology = src.read()
    allowed = src.allowed()
    resolution_reasons: tuple[str, ...] = ()
    if node is not None and gpu is None:
        physical: tuple[int, ...] = ()
    else:
        resolution = describe_resolution(topology, gpus=_gpu_arg(gpu), env=env, ray=ray)
        physical = resolution.gpus
        resolution_reasons = (*resolution.reasons, *resolution.warnings)
    if not physical and node is None:
        why = (
            "this machine has no GPU that sysfs or NVML can see: nothing to bind"
            if not topology.gpus
            else "this process owns no GPU (CUDA_VISIBLE_DEVICES or Ray gave it none): nothing to bind"
        )
        return not_bound_report(None, "plan", (why,)).plan
    plan = plan_binding(topology, physical, allowed, policy or settings.policy, node=node)
    notes = (*resolution_reasons, *(f"topology: {note}" for note in topology.notes))
    return _with_reasons(plan, notes, first=True) if notes else plan


def apply_plan(
    plan: BindingPlan,
    binder: str | Binder | None = None,
    *,
    strict: bool | None = None,
    env: Mapping[str, str] | None = None,
    label: str | None = None,
) -> BindingReport:
    """Apply ``plan``: the one apply path (``bind_to_*``, ``gpunuma.launch``, ``gpunuma exec``), logged.

    ``GPUNUMA_BIND=0`` swaps in the no-op binder, whatever ``binder`` was given; ``strict=None``
    takes ``GPUNUMA_STRICT``. In best-effort mode a binder that cannot be built or fails gives a
    "not bound" report and a warning; binders restore the process before raising, so a failure
    never leaves it half bound.
    """
    settings = Settings.from_env(env)
    return _apply(plan, binder, settings.strict if strict is None else strict, settings, label)


def _apply(
    plan: BindingPlan, binder: str | Binder | None, strict: bool, settings: Settings, label: str | None
) -> BindingReport:
    if not settings.enabled:  # the off switch wins over any binder, also one passed in code
        binder = "noop"
    method = _method(binder)
    try:
        chosen = make_binder(binder)
    except GpunumaError as err:
        if strict:
            raise
        logger.warning("gpunuma: %snot bound (%s binder cannot be built): %s", _prefix(label), method, err)
        return not_bound_report(plan, method, (f"could not build the {method} binder, nothing changed: {err}",))
    try:
        report = chosen.apply(plan)
    except GpunumaError as err:
        if strict:
            raise
        logger.warning("gpunuma: %snot bound (%s binder): %s", _prefix(label), chosen.name, err)
        return not_bound_report(plan, chosen.name, (f"binding failed and was undone: {err}",))
    _log(report, label)
    return report


def _method(binder: str | Binder | None) -> str:
    """The name reports give a binder before it is built."""
    if binder is None:
        return "libnuma"
    return binder if isinstance(binder, str) else str(getattr(binder, "name", "?"))


def _bind(
    gpu: GpuSpec,
    node: int | None,
    source: str | TopologySource | None,
    binder: str | Binder | None,
    policy: Policy | None,
    strict: bool | None,
    env: Mapping[str, str] | None,
    ray: Any,
    label: str | None,
) -> BindingReport:
    settings = Settings.from_env(env)
    strict = settings.strict if strict is None else strict
    try:
        plan = _plan(gpu, node, source, policy, env, ray, settings)
    except GpunumaError as err:
        if strict:
            raise
        logger.warning("gpunuma: %snot bound: %s", _prefix(label), err)
        method = "noop" if not settings.enabled else _method(binder)
        return not_bound_report(None, method, (f"could not plan a binding: {err}",))
    return _apply(plan, binder, strict, settings, label)


def _prefix(label: str | None) -> str:
    return f"[{label}] " if label else ""


def _log(report: BindingReport, label: str | None) -> None:
    prefix = _prefix(label)
    gpus = ",".join(str(g) for g in report.plan.gpus)
    suffix = f" for GPU {gpus}" if gpus else ""
    logger.info("%s%s%s", prefix, report.summary(), suffix)
    for mismatch in report.mismatches:
        logger.warning("%sread-back differs from the plan: %s", prefix, mismatch)


def bind_to_gpu(
    gpu: GpuSpec = None,
    *,
    source: str | TopologySource | None = None,
    binder: str | Binder | None = None,
    policy: Policy | None = None,
    strict: bool | None = None,
    env: Mapping[str, str] | None = None,
    ray: Any = None,
    label: str | None = None,
) -> BindingReport:
    """Bind the whole calling process to the NUMA node of its GPU and return the read-back report.

    ``gpu`` is the local device index (``cuda:N``), a UUID or bus id; left out, the GPU is
    resolved from Ray's assignment or ``CUDA_VISIBLE_DEVICES``. Best-effort by default
    (``strict=True`` or ``GPUNUMA_STRICT=1`` raises instead); ``GPUNUMA_BIND=0`` makes it a dry run.
    """
    return _bind(gpu, None, source, binder, policy, strict, env, ray, label)


def bind_to_node(
    node: int,
    *,
    source: str | TopologySource | None = None,
    binder: str | Binder | None = None,
    policy: Policy | None = None,
    strict: bool | None = None,
    env: Mapping[str, str] | None = None,
    label: str | None = None,
) -> BindingReport:
    """Bind the whole calling process to an explicit NUMA node (CPU-only helpers, tests)."""
    return _bind(None, node, source, binder, policy, strict, env, None, label)


def _with_reasons(plan: BindingPlan, reasons: tuple[str, ...], *, first: bool) -> BindingPlan:
    from dataclasses import replace

    merged = (*reasons, *plan.reasons) if first else (*plan.reasons, *reasons)
    return replace(plan, reasons=merged)
