"""The library's entry points: plan and bind the calling process, through the composition root.

Each call decides its switches once at the edge (:func:`gpunuma.settings.configure`: the explicit
arguments over the ``GPUNUMA_*`` variables of ``env``, default ``os.environ``), reads the GPU visibility
the same way, and hands both to :mod:`gpunuma.compose`, which builds the adapters (``source=``,
``binder=``: a name or an injected instance, so tests and downstream CI bind simulated machines here).

Misuse raises whatever the mode: an argument of the wrong type or size (``gpu=1.5``, ``range(10**12)``,
``node="1"``, ``env={"LOCAL_RANK": 3}``, ``strict="yes"``, ``Policy(cpu_scope="sockets")``) is a programming
error, a :class:`~gpunuma.errors.GpunumaError` naming the argument, raised before anything is read, even in
best-effort mode. Best-effort covers what the machine and its environment do: a GPU the machine lacks, a
``GPUNUMA_*`` value not understood, a kernel that refuses the binding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

from gpunuma import compose
from gpunuma.compose import make_binder, make_source
from gpunuma.core.identity import id_list
from gpunuma.core.plan import BindingPlan
from gpunuma.core.planner import explicit_node_id
from gpunuma.core.policy import Policy
from gpunuma.core.ports import Binder, RayLike, TopologySource
from gpunuma.core.report import BindingReport
from gpunuma.integrations.ray import show_logs_in_worker
from gpunuma.settings import configure, in_ray_worker

__all__ = [
    "GpuSpec",
    "PhysicalSpec",
    "apply_plan",
    "bind_to_gpu",
    "bind_to_node",
    "last_report",
    "make_binder",
    "make_source",
    "plan_for",
]

#: A GPU as a caller names it: a local device index (the ``cuda:N`` this process sees),
#: a ``GPU-``/``MIG-`` UUID or a PCI bus id, or several of these.
GpuSpec: TypeAlias = int | str | Sequence[int | str] | None
#: A GPU by physical index: NVML / ``nvidia-smi`` numbering (PCI bus order), whatever
#: ``CUDA_VISIBLE_DEVICES`` says; or several.
PhysicalSpec: TypeAlias = int | Sequence[int] | None


def _gpu_arg(gpu: GpuSpec) -> Sequence[int | str] | None:
    return id_list(gpu, "gpus")


def _visible_under_ray() -> None:
    """In a Ray worker with no logging configured, send gpunuma's lines to stderr, which Ray shows."""
    if in_ray_worker():
        show_logs_in_worker()


def _physical_arg(physical: PhysicalSpec) -> Sequence[int] | None:
    return id_list(physical, "physical")  # type: ignore[return-value]


def plan_for(
    gpu: GpuSpec = None,
    *,
    physical: PhysicalSpec = None,
    node: int | None = None,
    source: str | TopologySource | None = None,
    policy: Policy | None = None,
    env: Mapping[str, str] | None = None,
    ray: RayLike | None = None,
) -> BindingPlan:
    """Resolve this process's GPU(s), read the topology and return the plan; changes nothing.

    ``physical`` names GPUs by NVML / ``nvidia-smi`` index instead of ``gpu``'s local ``cuda:N``.
    With ``node`` and no GPU, plans an explicit node for a CPU-only process.
    """
    gpus, physicals = _gpu_arg(gpu), _physical_arg(physical)
    node = None if node is None else explicit_node_id(node)
    options = configure(env, source=source, policy=policy)
    environment = compose.gpu_environment(gpus if physicals is None else physicals, node, env, ray)
    return compose.plan(options, gpus=gpus, physical=physicals, node=node, environment=environment)


def apply_plan(
    plan: BindingPlan,
    binder: str | Binder | None = None,
    *,
    strict: bool | None = None,
    env: Mapping[str, str] | None = None,
    label: str | None = None,
    migrate: bool | None = None,
) -> BindingReport:
    """Apply ``plan``: the one apply path (``bind_to_*``, ``gpunuma.launch``, ``gpunuma exec``), logged.

    ``GPUNUMA_BIND=0`` swaps in the no-op binder, whatever ``binder`` was given; ``strict=None``
    takes ``GPUNUMA_STRICT``, ``migrate=None`` ``GPUNUMA_MIGRATE``. In best-effort mode a binder that cannot
    be built or fails gives a "not bound" report and a warning; binders restore the process before raising,
    so a failure never leaves it half bound.
    """
    _visible_under_ray()
    options = configure(env, binder=binder, strict=strict, label=label, migrate=migrate)
    return compose.apply(options, compose.check_plan(plan))


def bind_to_gpu(
    gpu: GpuSpec = None,
    *,
    physical: PhysicalSpec = None,
    source: str | TopologySource | None = None,
    binder: str | Binder | None = None,
    policy: Policy | None = None,
    strict: bool | None = None,
    require_bound: bool | None = None,
    require_local: bool | None = None,
    env: Mapping[str, str] | None = None,
    ray: RayLike | None = None,
    label: str | None = None,
    migrate: bool | None = None,
) -> BindingReport:
    """Bind the whole calling process to the NUMA node of its GPU and return the read-back report.

    ``gpu`` is the local device index (``cuda:N``), a UUID or bus id; ``physical`` the NVML /
    ``nvidia-smi`` index (``bind_to_gpu(physical=7)``: NeMo RL's ``ray.get_gpu_ids()[0]`` under
    ``RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES``). Left out, the GPU is resolved from Ray's
    assignment, ``LOCAL_RANK`` or ``CUDA_VISIBLE_DEVICES``. Best-effort by default (``strict=True`` or
    ``GPUNUMA_STRICT=1`` raises when binding fails); ``require_bound=True`` (``GPUNUMA_REQUIRE=1``) raises
    :class:`~gpunuma.errors.NotBoundError` whenever nothing gets bound; ``require_local=True``
    (``GPUNUMA_REQUIRE=local``) also when the binding would not be on the GPU's own node (the cgroup or the
    reserve leaves none of it), binding nothing then. A binding elsewhere without it is logged as a WARNING that
    says why. ``GPUNUMA_BIND=0`` makes it a dry run. ``migrate=True`` (``GPUNUMA_MIGRATE=1``) then moves the
    pages the process already has to the bound memory nodes (``migrate_pages(2)``): for a late bind, after imports
    or weights; the report's ``migration`` says what moved. Off by default: moving gigabytes takes a while
    (docs/api.md gives the cost).
    """
    gpus, physicals = _gpu_arg(gpu), _physical_arg(physical)
    options = configure(
        env, source=source, binder=binder, policy=policy, strict=strict, label=label, require=require_bound,
        require_local=require_local, migrate=migrate,
    )
    environment = compose.gpu_environment(gpus if physicals is None else physicals, None, env, ray)
    _visible_under_ray()
    return compose.bind(options, gpus=gpus, physical=physicals, environment=environment)


def bind_to_node(
    node: int,
    *,
    source: str | TopologySource | None = None,
    binder: str | Binder | None = None,
    policy: Policy | None = None,
    strict: bool | None = None,
    require_bound: bool | None = None,
    require_local: bool | None = None,
    env: Mapping[str, str] | None = None,
    label: str | None = None,
    migrate: bool | None = None,
) -> BindingReport:
    """Bind the whole calling process to an explicit NUMA node (CPU-only helpers, tests).

    ``node`` must be an int: anything else (``None``, ``"1"``, ``1.0``) raises
    :class:`~gpunuma.errors.InvalidNodeError` whatever ``strict`` says, a mistake in the call, not a machine
    that cannot be bound. ``migrate``: as for :func:`bind_to_gpu`.
    """
    node = explicit_node_id(node)
    options = configure(
        env, source=source, binder=binder, policy=policy, strict=strict, label=label, require=require_bound,
        require_local=require_local, migrate=migrate,
    )
    _visible_under_ray()
    return compose.bind(options, node=node)


def last_report() -> BindingReport | None:
    """The binding in force in this process: the report of the latest binding that held (None before any).

    A later attempt that binds nothing (it failed, planned no binding, or ran with ``GPUNUMA_BIND=0``) leaves
    the process as it was, so it does not replace that report; its caller still gets the attempt. While no
    binding has held, it is the latest attempt's report, which says why. Kept by every binding path:
    ``bind_to_gpu``/``bind_to_node``/``apply_plan``, the Ray setup hook and ``bind_this_process``, the child of
    ``start_bound_process``, ``gpunuma exec`` before it execs.
    """
    return compose.last_report()
