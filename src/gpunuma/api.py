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

from gpunuma.cpuset import CpuSet
from gpunuma.errors import GpunumaError
from gpunuma.plan import BindingPlan
from gpunuma.policy import MemoryPolicy, Policy
from gpunuma.registry import binder_class, topology_source_class
from gpunuma.report import BindingReport
from gpunuma.settings import Settings

if TYPE_CHECKING:  # annotations only: the bind path in every worker skips building the Protocols
    from gpunuma.ports import Binder, TopologySource

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
        from gpunuma.binder.libnuma import default_binder

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
    from gpunuma.identity import describe_resolution
    from gpunuma.planner import plan_binding

    settings = Settings.from_env(env)
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
        return not_bound(None, why, method="plan").plan
    plan = plan_binding(topology, physical, allowed, policy or settings.policy, node=node)
    notes = (*resolution_reasons, *(f"topology: {note}" for note in topology.notes))
    return _with_reasons(plan, notes, first=True) if notes else plan


def apply_plan(plan: BindingPlan, binder: Binder, *, strict: bool = False) -> BindingReport:
    """Apply ``plan`` with ``binder``; in best-effort mode a failure becomes a "not bound" report.

    Binders restore the process before raising, so a failure never leaves it half bound.
    """
    try:
        report = binder.apply(plan)
    except GpunumaError as err:
        if strict:
            raise
        logger.warning("gpunuma: not bound (%s binder): %s", getattr(binder, "name", "?"), err)
        return not_bound(plan, f"binding failed and was undone: {err}", method=getattr(binder, "name", "?"))
    return report


def not_bound(plan: BindingPlan | None, why: str, *, method: str) -> BindingReport:
    """A report that says the process was left as it was, and why."""
    if plan is None:
        plan = BindingPlan(
            gpus=(), nodes=(), cpus=CpuSet(), memory_policy=MemoryPolicy.NONE, memory_nodes=(), reasons=(why,)
        )
    return BindingReport(
        plan=plan,
        bound=False,
        method=method,
        cpus=CpuSet(),
        memory_policy=None,
        memory_nodes=(),
        reasons=(*plan.reasons, why) if why not in plan.reasons else plan.reasons,
    )


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
    if not settings.enabled:  # the off switch wins over any binder, also one passed in code
        binder = "noop"
    try:
        plan = plan_for(gpu, node=node, source=source, policy=policy, env=env, ray=ray)
        chosen = make_binder(binder)
    except GpunumaError as err:
        if strict:
            raise
        logger.warning("gpunuma: %snot bound: %s", f"[{label}] " if label else "", err)
        return not_bound(None, f"could not plan a binding: {err}", method=str(binder or "libnuma"))
    report = apply_plan(plan, chosen, strict=strict)
    _log(report, label)
    return report


def _log(report: BindingReport, label: str | None) -> None:
    prefix = f"[{label}] " if label else ""
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
