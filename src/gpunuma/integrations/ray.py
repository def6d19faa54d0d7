"""Ray integration: bind each GPU actor's whole process to its GPU's NUMA node, inside the actor.

Three ways in, from most to least control:

* :func:`bind_this_process` as the first line of an existing actor's ``__init__``;
* :class:`GpuBoundActor`, a scheduler-actor body that binds and only then builds the heavy object;
* :func:`setup_hook` (``runtime_env={"worker_process_setup_hook": "gpunuma.integrations.ray.setup_hook"}``)
  for actors you cannot edit.

:func:`export_binding_metrics` (or ``GpuBoundActor(..., export_metrics=True)``) checks the worker and sets the
figures of :mod:`gpunuma.metrics` as ``ray.util.metrics`` gauges, which Ray's own Prometheus endpoint serves.

Every entry point takes the same keywords as :func:`gpunuma.bind_to_gpu`: ``source``, ``binder``, ``policy``,
``strict``, ``require_bound``, ``require_local``, ``label`` (each line it logs starts with ``[label]``; left
out, the label names the actor class and its rank: ``RANK``/``LOCAL_RANK`` in its environment, else its actor
name) and ``migrate`` (move the pages the worker touched before it bound). Environment
switches (``GPUNUMA_BIND``, ``GPUNUMA_STRICT``, ``GPUNUMA_CPU_SCOPE``...) are listed in :mod:`gpunuma.settings`;
each entry point reads them once. Ray is imported only inside functions.
"""

from __future__ import annotations

import functools
import importlib
import logging
import socket
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import gpunuma
from gpunuma import compose, metrics
from gpunuma.compose import LINE_FORMAT, ShareSlots
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.kernel_policy import Mempolicy
from gpunuma.core.model import Topology
from gpunuma.core.pages import Pages
from gpunuma.core.plan import Allowed, BindingPlan
from gpunuma.core.policy import Policy, Share
from gpunuma.core.ports import Binder, TopologySource
from gpunuma.core.reasons import Reason
from gpunuma.core.report import BindingReport, KernelView
from gpunuma.errors import BindError, GpunumaError, NotBoundError, TopologyUnavailableError
from gpunuma.settings import Options, configure, is_ray_worker, worker_rank

if TYPE_CHECKING:  # a tool: the actor loads it only when verify is called
    from gpunuma.tools.check import CheckResult

logger = logging.getLogger(__name__)


def _ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise ImportError("gpunuma.integrations.ray needs Ray: pip install 'gpunuma[ray]'") from err
    return ray


def _in_ray_worker(ray: Any) -> bool:
    return bool(ray.is_initialized()) and is_ray_worker(ray)


def bind_this_process(
    *,
    source: str | TopologySource | None = None,
    binder: str | Binder | None = None,
    policy: Policy | None = None,
    strict: bool | None = None,
    require_bound: bool | None = None,
    require_local: bool | None = None,
    label: str | None = None,
    migrate: bool | None = None,
) -> BindingReport:
    """Bind this Ray worker process (every thread) to the NUMA node of the GPU Ray assigned it.

    Call it first in an actor's ``__init__``, before anything starts threads or touches memory.
    Logs one line such as ``[TP3] bound to NUMA node 0 (CPUs 0-55,112-167), ... for GPU 3`` (``label``
    left out: the actor class and rank, :func:`worker_label`). Best-effort unless ``strict``
    (``GPUNUMA_STRICT=1``) or ``require_bound`` (``GPUNUMA_REQUIRE=1``): nothing bound then raises
    :class:`~gpunuma.errors.NotBoundError`. ``migrate=True`` (``GPUNUMA_MIGRATE=1``) moves the pages the worker
    touched before it bound (imports, a late ``__init__``) to the bound node.
    """
    options = configure(
        source=source, binder=binder, policy=policy, strict=strict, label=label, require=require_bound,
        require_local=require_local,
        migrate=migrate,
    )
    return _bind_worker(options)


def show_logs_in_worker() -> None:
    """Make gpunuma's lines reach the driver's console when nothing in this worker configured logging.

    Ray forwards a worker's stderr to the driver, but Python drops INFO records that no handler takes,
    so the "bound" line would be lost. With no handler on the ``gpunuma`` logger or its ancestors, this
    adds one that writes INFO and above to stderr; a worker that configured logging keeps its own.
    """
    log = logging.getLogger("gpunuma")
    if log.hasHandlers():
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LINE_FORMAT))
    log.addHandler(handler)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)


def _bind_worker(options: Options) -> BindingReport:
    """Bind through the composition root, the GPU coming from Ray's assignment (else the variables).

    A worker holding a fraction of one GPU (``num_gpus=0.25``) and no share of its own (``share=``,
    ``GPUNUMA_SHARE``) takes a share derived from Ray: see :func:`share_from_ray`.
    """
    ray = _ray()
    in_worker = _in_ray_worker(ray)
    if in_worker:
        show_logs_in_worker()  # before binding, so the one line it logs is shown
        if options.label is None:
            options = replace(options, label=worker_label(ray))
    environment = compose.gpu_environment(None, None, ray=ray if in_worker else None)
    reasons: tuple[Reason, ...] = ()
    if in_worker and options.policy.share is None:
        options, reasons = worker_share(ray, options)
    return compose.bind(options, environment=environment, reasons=reasons)


def worker_label(ray: Any) -> str | None:
    """The label of this worker's lines: the class of the actor it runs (the function of a task) and its rank.

    The rank is ``RANK`` (else ``LOCAL_RANK``) in the worker's environment, as launchers set it per actor;
    without one, the actor's name when it has one (``Worker.options(name="tp3")``). None outside a task.
    """
    context = ray.get_runtime_context()
    try:
        function = str(context.get_task_function_name() or "")  # "module.Worker.__init__" for an actor's creation
        name = context.get_actor_name() if context.get_actor_id() else None
    except (AttributeError, RuntimeError):  # an older Ray, or no task running
        return None
    parts = function.split(".")
    what = parts[-2] if len(parts) >= 2 and parts[-1] == "__init__" else parts[-1]
    rank = worker_rank()
    if not what:
        return None
    if rank:
        return f"{what} rank {rank}"
    return f"{what} {name}" if name else what


def worker_share(ray: Any, options: Options) -> tuple[Options, tuple[Reason, ...]]:
    """``options`` with the share a fractional-GPU worker derives from Ray (:func:`share_from_ray`), and its reason.

    When the share slots cannot be used (their folder is refused: another user's, a link, open to others),
    a best-effort bind goes on without a share: the worker is still bound to its GPU's CPUs, whole, possibly
    overlapping the other workers on that GPU, and the reason ``share_slots_refused`` says why in its report.
    Strict mode raises :class:`~gpunuma.errors.NotBoundError` instead, the refusal its cause.
    """
    try:
        derived = share_from_ray(ray)
    except GpunumaError as err:
        refused = Reason.of("share_slots_refused", error=str(err))
        if options.strict:  # never bound without its share: nothing got bound, and the error says why
            raise NotBoundError(BindingReport.not_bound(None, options.method, (refused,))) from err
        logger.warning("no share of the GPU for this worker: %s", err)
        return options, (refused,)
    if derived is None:
        return options, ()
    share, reason = derived
    return replace(options, policy=replace(options.policy, share=share)), (reason,)


def share_from_ray(ray: Any, slots: ShareSlots | None = None) -> tuple[Share, Reason] | None:
    """This worker's share of its GPU, from what Ray knows: ``n`` from its fractional assignment
    (``GPU: 0.25`` -> 4 parts), ``i`` the lowest slot no other process on this host holds for that GPU.

    Ray places at most ``n`` such workers on one GPU, so they take distinct parts without anyone
    counting; a slot is held until the process exits (:class:`~gpunuma.adapters.share_slots.ShareSlots`).
    None when the worker holds whole GPUs, several GPUs, or every slot is taken.
    """
    context = ray.get_runtime_context()
    assigned = getattr(context, "get_assigned_resources", None)  # Ray 2.x; older versions: no derived share
    if assigned is None:
        return None
    fraction = float(assigned().get("GPU", 0) or 0)
    gpus = [str(gpu) for gpu in ray.get_gpu_ids()]
    if not 0 < fraction < 1 or len(gpus) != 1:
        return None
    count = int(1 / fraction + 1e-9)
    if count < 2:
        return None
    if slots is None:
        slots = compose.share_slots()
    key = f"ray-{context.get_node_id()}-gpu{gpus[0]}"
    index = slots.claim(key, count)
    if index is None:
        logger.warning("all %d shares of GPU %s on this host are taken; binding without a share", count,
                     gpus[0])
        return None
    reason = Reason.of("share_from_ray", index=index, count=count, fraction=fraction, gpu=gpus[0])
    return Share(index, count), reason


class GpuBoundActor:
    """A scheduler-actor body: binds its process to its GPU's node, then builds the heavy object.

    Wrap it with Ray yourself (``ray.remote(num_gpus=1)(GpuBoundActor)``) or use :func:`start_bound_actor`.
    The adapters given here travel to the actor by pickling, so simulated machines work in CI.

    Strict (``strict=True``, ``require_bound=True`` or their variables) and not bound: the heavy object is never
    built, and every call (``ping``, ``call``, ``binding_report``) raises the typed error, so the driver catches it
    by type: ``ray.get(actor.ping.remote())`` raises an error that is a :class:`~gpunuma.errors.NotBoundError`
    (Ray's ``RayTaskError`` takes the type of its cause), its ``report`` saying why. The actor keeps its GPU until
    the driver ends it (``ray.kill(actor)``).
    """

    def __init__(
        self,
        factory: Callable[..., Any],
        *,
        source: str | TopologySource | None = None,
        binder: str | Binder | None = None,
        policy: Policy | None = None,
        strict: bool | None = None,
        require_bound: bool | None = None,
        require_local: bool | None = None,
        label: str | None = None,
        migrate: bool | None = None,
        factory_args: Sequence[Any] = (),
        factory_kwargs: Mapping[str, Any] | None = None,
        export_metrics: bool = False,
    ) -> None:
        self._failure: GpunumaError | None = None
        self._target: Any = None
        if label is None:
            label = _factory_label(factory)
        try:
            self._report = bind_this_process(
                source=source, binder=binder, policy=policy, strict=strict, require_bound=require_bound,
                require_local=require_local, label=label, migrate=migrate,
            )
        except GpunumaError as err:  # strict: typed for the driver, not an ActorDiedError that keeps only the text
            self._failure = err
            return
        # Built only now, so the threads and memory it creates start on the GPU's node.
        self._target = factory(*factory_args, **dict(factory_kwargs or {}))
        if export_metrics:
            export_binding_metrics()

    def _usable(self) -> None:
        if self._failure is not None:
            raise self._failure

    def binding_report(self) -> BindingReport:
        """The report of the binding done in ``__init__`` (a picklable frozen dataclass)."""
        self._usable()
        return self._report

    def call(self, method_name: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method_name`` on the heavy object and return its result."""
        self._usable()
        return getattr(self._target, method_name)(*args, **kwargs)

    def ping(self) -> bool:
        """True once the actor is up and bound as asked: ``ray.get(actor.ping.remote())`` waits for ``__init__``."""
        self._usable()
        return True

    def export_metrics(self) -> Any:
        """Check the actor's process again and set its Ray metrics (:func:`export_binding_metrics`); the check."""
        self._usable()
        return export_binding_metrics()

    def verify(self, *, repair: bool = False, include_narrowed: bool = False) -> CheckResult:
        """:func:`gpunuma.verify` in the actor: every thread against the binding done in ``__init__``, and where
        its memory is; ``repair=True`` puts the binding back on threads a library moved (a picklable result).

        ``ray.get(actor.verify.remote(repair=True))`` after the engine's first collective: see docs/ray.md.
        """
        self._usable()
        # The public name loads its module when called, so the bind path never loads the tools.
        return gpunuma.verify(repair=repair, include_narrowed=include_narrowed)


def _factory_label(factory: Callable[..., Any]) -> str | None:
    """The heavy object's class (or factory function) name and the rank, for a :class:`GpuBoundActor`'s lines."""
    name = getattr(factory, "__qualname__", None) or getattr(factory, "__name__", None)
    if not name:
        return None
    rank = worker_rank()
    return f"{name} rank {rank}" if rank else str(name)


def start_bound_actor(
    factory: Callable[..., Any],
    *,
    num_gpus: float = 1,
    actor_options: Mapping[str, Any] | None = None,
    **bind_options: Any,
) -> Any:
    """Start a :class:`GpuBoundActor` with ``num_gpus`` and return its handle.

    ``actor_options`` go to ``.options()`` (``num_cpus``, ``resources``, ``name``...);
    ``bind_options`` to :class:`GpuBoundActor` (``source``, ``binder``, ``policy``, ``strict``,
    ``require_bound``, ``require_local``, ``label``, ``migrate``, ``factory_args``, ``factory_kwargs``,
    ``export_metrics``).
    """
    ray = _ray()
    options = {"num_gpus": num_gpus, **dict(actor_options or {})}
    return ray.remote(GpuBoundActor).options(**options).remote(factory, **bind_options)


# -- metrics -------------------------------------------------------------------------------------
#: This process's Ray gauges, by metric name: Ray registers a metric once per process.
_GAUGES: dict[str, Any] = {}


def export_binding_metrics() -> Any:
    """Check this worker process now and set its figures as Ray metrics; returns the check
    (a :class:`~gpunuma.tools.check.CheckResult`).

    The check is :func:`gpunuma.check_process` of this process, against the GPUs Ray assigned it
    (``ray.get_gpu_ids()``, physical numbering); the figures are those ``gpunuma check --prometheus`` prints
    (:mod:`gpunuma.metrics`), each a ``ray.util.metrics.Gauge`` tagged ``host``, ``node_id``, ``pid``, ``gpu`` and
    ``actor_class``, which Ray's metrics endpoint serves with its ``ray_`` prefix
    (``ray_gpunuma_worker_bound``). A gauge keeps the value it was last set to: call this again (after a step, from
    a timer) to refresh them. Opt-in: nothing is exported unless it is called, or a :class:`GpuBoundActor` is
    started with ``export_metrics=True``.
    """
    ray = _ray()
    import gpunuma  # its check_process: the one check every entry point shares

    physical = [int(gpu) for gpu in ray.get_gpu_ids()] if _in_ray_worker(ray) else []
    result = gpunuma.check_process(physical=physical or None)
    context = ray.get_runtime_context()
    in_actor = _in_ray_worker(ray) and bool(context.get_actor_id())
    labels = metrics.worker_labels(
        host=socket.gethostname(), node_id=str(context.get_node_id()) if _in_ray_worker(ray) else "",
        pid=result.view.pid, gpus=result.gpus, actor_class=_actor_class(context) if in_actor else "",
    )
    from ray.util.metrics import Gauge

    for sample in metrics.worker_samples(result, labels):
        gauge = _GAUGES.get(sample.metric.name)
        if gauge is None:
            gauge = _GAUGES[sample.metric.name] = Gauge(
                sample.metric.name, description=sample.metric.help, tag_keys=sample.metric.labels
            )
        gauge.set(sample.value, tags=sample.tags)
    return result


def _actor_class(context: Any) -> str:
    """The class of the actor this worker runs, as Ray's actor table names it (``module.Class.method``)."""
    try:
        function = str(context.get_task_function_name() or "")
    except (AttributeError, RuntimeError):
        return ""
    parts = function.split(".")
    return parts[-2] if len(parts) >= 2 else ""


# -- the worker-process setup hook ------------------------------------------------------------
class _BindOnAssignment:
    """Binds the worker each time Ray hands it a different, non-empty set of GPUs.

    ``bind(rebind)`` is told whether this watcher bound the process before: a reused worker then
    holds the affinity of its previous GPU, which must not pass for one a user narrowed.
    """

    def __init__(self, bind: Callable[[bool], BindingReport]) -> None:
        self._bind = bind
        self._bound_for: tuple[str, ...] = ()
        self._bound_before = False

    def after_assignment(self, ray: Any) -> None:
        gpus = tuple(sorted(str(g) for g in ray.get_gpu_ids()))
        if gpus and gpus != self._bound_for:
            try:
                report = self._bind(self._bound_before)
            except GpunumaError as err:  # strict: this task must not run unbound
                fail_this_task(ray, err)
                return
            self._bound_for = gpus
            # A failed rebind is undone, so the process still holds this watcher's earlier binding.
            self._bound_before = self._bound_before or report.bound


def fail_this_task(ray: Any, err: GpunumaError) -> None:
    """Make the task (or actor creation) Ray is about to run fail with ``err``, so its caller gets the reason.

    Ray calls the assignment hook outside the code that turns a task's exceptions into its result: an
    exception raised there kills the worker, and the caller sees a bare ``WorkerCrashedError`` after
    the retries. Instead, the next function Ray looks up on this worker becomes one that raises ``err``
    inside that code (Ray's function manager, a private API: where it is missing, ``err`` is raised
    here and the worker dies with it, its message in Ray's log and an actor's death cause).
    """
    try:
        manager = ray._private.worker.global_worker.function_actor_manager
        cached: dict[Any, Any] = manager.execution_infos
        # The class's method, bound: a second failure before the lookup replaces the first, never stacks on it.
        original = type(manager).get_execution_info.__get__(manager)
    except AttributeError:
        raise err from None

    def get_execution_info(job_id: Any, function_descriptor: Any) -> Any:
        vars(manager).pop("get_execution_info", None)  # once: back to the class's method
        info = original(job_id, function_descriptor)

        def refuse(*_args: Any, **_kwargs: Any) -> None:
            if cached.get(function_descriptor) is failing:
                del cached[function_descriptor]
            raise err

        failing = info._replace(function=refuse)
        return failing

    logger.warning("%s; the task fails instead of running unbound (strict)", err)
    # Ray looks the function up in this per-worker cache first: without an entry it asks the manager.
    cached.clear()
    manager.get_execution_info = get_execution_info


# Ray sets CUDA_VISIBLE_DEVICES for each task or actor creation through this function, after the
# worker process started and right before user code runs; the setup hook itself runs too early
# (the worker holds no GPU yet), so binding happens when Ray calls it.
_ASSIGNMENT_HOOK = ("ray._private.utils", "set_visible_accelerator_ids")
#: Set on the wrapper, so a second install in the same process leaves the first one alone.
_INSTALLED_MARK = "__gpunuma_binding_hook__"


def _binder_for_hook(
    source: str | TopologySource | None,
    binder: str | Binder | None,
    policy: Policy | None,
    strict: bool | None,
    require_bound: bool | None,
    require_local: bool | None,
    label: str | None,
    migrate: bool | None,
) -> Callable[[bool], BindingReport]:
    def bind(rebind: bool) -> BindingReport:
        options = configure(
            source=source, binder=binder, policy=policy, strict=strict, label=label, require=require_bound,
            require_local=require_local,
            migrate=migrate,
        )
        if rebind:
            options = replace(options, policy=replace(options.policy, override_affinity=True))
        return _bind_worker(options)

    return bind


def install_binding_hook(
    *,
    source: str | TopologySource | None = None,
    binder: str | Binder | None = None,
    policy: Policy | None = None,
    strict: bool | None = None,
    require_bound: bool | None = None,
    require_local: bool | None = None,
    label: str | None = None,
    migrate: bool | None = None,
) -> bool:
    """Arrange for this worker process to bind as soon as Ray assigns it GPUs; True if arranged.

    Binds at once when the process already holds GPUs. A process that never gets a GPU is left
    alone, silently. Strict mode (or ``require_bound``) makes a binding that binds nothing fail the task or
    actor creation with :class:`~gpunuma.errors.NotBoundError`. ``label`` left out, each line names the actor
    class and rank Ray is about to run (:func:`worker_label`).
    Idempotent: once arranged in a process, later calls change nothing and return True.
    """
    ray = _ray()
    module_name, attr = _ASSIGNMENT_HOOK
    module: Any = None
    original: Any = None
    try:
        module = importlib.import_module(module_name)
        original = getattr(module, attr)
    except (ImportError, AttributeError):
        original = None
    if original is not None and getattr(original, _INSTALLED_MARK, False):
        logger.debug("the binding hook is already installed in this worker; leaving it")
        return True
    watcher = _BindOnAssignment(
        _binder_for_hook(source, binder, policy, strict, require_bound, require_local, label, migrate)
    )
    if _in_ray_worker(ray):
        watcher.after_assignment(ray)
    if original is None:
        logger.warning(
            "this Ray version has no %s.%s; the setup hook cannot bind GPU workers "
            "(call gpunuma.integrations.ray.bind_this_process() in the actor instead)",
            module_name,
            attr,
        )
        return False

    @functools.wraps(original)
    def set_visible_accelerator_ids(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        watcher.after_assignment(ray)
        return result

    setattr(set_visible_accelerator_ids, _INSTALLED_MARK, True)
    setattr(module, attr, set_visible_accelerator_ids)
    return True


def setup_hook() -> None:
    """Ray ``worker_process_setup_hook``: bind GPU workers with the default adapters and ``GPUNUMA_*``.

    Runs in every worker process, GPU or not; workers that never hold a GPU are left alone, quietly.
    """
    install_binding_hook()


def make_setup_hook(
    *,
    source: str | TopologySource | None = None,
    binder: str | Binder | None = None,
    policy: Policy | None = None,
    strict: bool | None = None,
    require_bound: bool | None = None,
    require_local: bool | None = None,
    label: str | None = None,
    migrate: bool | None = None,
) -> Callable[[], None]:
    """A ``worker_process_setup_hook`` callable with chosen adapters and switches (pickled into each worker by
    Ray); the keywords are :func:`install_binding_hook`'s."""

    def gpunuma_setup_hook() -> None:
        install_binding_hook(source=source, binder=binder, policy=policy, strict=strict,
                             require_bound=require_bound, require_local=require_local, label=label, migrate=migrate)

    return gpunuma_setup_hook


# -- heterogeneous clusters ---------------------------------------------------------------------
def _current_node_id() -> str:
    return str(_ray().get_runtime_context().get_node_id())


class RayNodeTopology:
    """A topology source that delegates to one source per Ray node id.

    For CI that simulates a cluster of different machines: each Ray node reads its own machine.
    """

    name = "ray-node"

    def __init__(self, sources: Mapping[str, TopologySource]) -> None:
        self.sources = dict(sources)

    def _source(self) -> TopologySource:
        node_id = _current_node_id()
        try:
            return self.sources[node_id]
        except KeyError:
            raise TopologyUnavailableError(
                f"no topology source for Ray node {node_id} (known: {', '.join(sorted(self.sources)) or 'none'})"
            ) from None

    def read(self) -> Topology:
        """The topology of the machine this Ray node stands for."""
        return self._source().read()

    def allowed(self) -> Allowed:
        """What this process may use on that machine."""
        return self._source().allowed()


class RayNodeBinder:
    """A binder that delegates to one binder per Ray node id (simulated kernels, one per machine)."""

    name = "ray-node"

    def __init__(self, binders: Mapping[str, Binder]) -> None:
        self.binders = dict(binders)

    def _binder(self) -> Binder:
        node_id = _current_node_id()
        try:
            return self.binders[node_id]
        except KeyError:
            raise BindError(f"no binder for Ray node {node_id}; nothing was changed") from None

    def apply(self, plan: BindingPlan) -> BindingReport:
        """Apply ``plan`` with the binder of the Ray node this process runs on."""
        return self._binder().apply(plan)

    def read_back(self) -> KernelView:
        """What the binder of this Ray node reads back for this process."""
        return self._binder().read_back()

    def pages(self) -> Pages | None:
        """Where this process's pages are, as the binder of this Ray node reads them."""
        return self._binder().pages()

    def repair(self, tids: Collection[int], cpus: CpuSet, mempolicy: Mempolicy | None = None) -> tuple[int, ...]:
        """Put the binding back through the binder of this Ray node."""
        return self._binder().repair(tids, cpus, mempolicy)

    def migrate(self, nodes: Sequence[int]) -> int:
        """Move this process's pages through the binder of this Ray node."""
        return self._binder().migrate(nodes)
