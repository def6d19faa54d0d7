"""``gpunuma fleet``: check every GPU worker of a Ray cluster from one command.

The driver reads the cluster's actor table once (every live actor holding GPUs: its process id, class, Ray node
and the GPUs Ray assigned it), then sends one small task to each Ray node that runs such actors, pinned there with
Ray's node-affinity scheduling (``soft=False``). On its node, the task checks each of them exactly as
``gpunuma check --pid PID`` does (:func:`~gpunuma.tools.check.check_process`), with the GPUs Ray assigned it named
(a Ray worker's own environment never shows them): that node's topology and ``/proc`` are read there, and under
``GPUNUMA_SIMULATE`` that node's simulated machine. The driver waits for the answers up to a timeout
(``ray.wait``); a node that has not answered by then is listed as silent and its task cancelled.

Ray's state API (``ray.util.state.list_actors``) needs the dashboard and does not say which GPU an actor holds;
the actor table it is built from (the GCS's) does, so it is read directly, through Ray's own ``GlobalState``
accessor. That accessor is internal to Ray: where a Ray version lacks it, :class:`~gpunuma.errors.FleetError`
says so. Ray is imported only inside functions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gpunuma import metrics
from gpunuma.errors import FleetError, GpunumaError, MissingDependencyError, SettingsError
from gpunuma.settings import Simulated, configure, ray_address
from gpunuma.tools.check import CheckResult, Verdict, check_process
from gpunuma.tools.terminal import visible

logger = logging.getLogger(__name__)

#: Seconds the driver waits for the nodes' answers by default.
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class FleetWorker:
    """A live Ray actor that holds GPUs, as the cluster's actor table lists it."""

    node_id: str
    pid: int
    actor_class: str
    actor_id: str
    #: The GPUs Ray assigned it, as Ray numbers them on its node (the slots ``ray.get_gpu_ids()`` maps through the
    #: worker's starting ``CUDA_VISIBLE_DEVICES``, when its node has one).
    ray_gpus: tuple[int, ...]
    #: The actor's name, when it has one.
    name: str = ""


@dataclass(frozen=True, slots=True)
class WorkerCheck:
    """One worker checked on its node: the check's result, or why there is none (its process is gone...)."""

    worker: FleetWorker
    result: CheckResult | None = None
    error: str | None = None

    @property
    def verdict(self) -> Verdict:
        """The check's verdict; cannot tell when the worker could not be checked."""
        return self.result.verdict if self.result is not None else Verdict.CANNOT_TELL


@dataclass(frozen=True, slots=True)
class NodeCheck:
    """One Ray node's answer (or silence): its GPU workers, each checked there."""

    node_id: str
    #: The node's address as Ray knows it (``NodeManagerAddress``).
    address: str
    #: The workers the actor table lists on this node.
    workers: tuple[FleetWorker, ...]
    #: Their checks, in the same order; empty when the node did not answer.
    checks: tuple[WorkerCheck, ...] = ()
    answered: bool = False
    #: The simulated machine the node reads (its ``GPUNUMA_SIMULATE``); None on a real host.
    simulated: str | None = None
    #: Seconds the node spent checking its workers, wall and CPU (None when it did not answer).
    seconds: float | None = None
    cpu_seconds: float | None = None
    #: Why there is no answer: the timeout, or the node task's failure.
    error: str | None = None

    @property
    def verdict(self) -> Verdict:
        """Not as expected if any worker is not; else cannot tell if any cannot, or the node did not answer."""
        if not self.answered:
            return Verdict.CANNOT_TELL
        return combined(check.verdict for check in self.checks)

    @property
    def label(self) -> str:
        """The node as the table shows it: its address and the start of its Ray node id."""
        return f"{self.address} {self.node_id[:8]}"


def combined(verdicts: Iterable[Verdict]) -> Verdict:
    """One verdict for many: not as expected wins, then cannot tell; as expected when all are (or there are none)."""
    seen = set(verdicts)
    for verdict in (Verdict.NOT_AS_EXPECTED, Verdict.CANNOT_TELL):
        if verdict in seen:
            return verdict
    return Verdict.AS_EXPECTED


@dataclass(frozen=True, slots=True)
class FleetReport:
    """Every GPU worker of the cluster, node by node, and one verdict for all."""

    nodes: tuple[NodeCheck, ...]
    #: The seconds the driver waited for the nodes.
    timeout: float
    #: Seconds from the first request to the last answer (or the timeout).
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default=())

    @property
    def verdict(self) -> Verdict:
        """Not as expected if any worker is not; else cannot tell if any cannot or a node did not answer."""
        return combined(node.verdict for node in self.nodes)

    @property
    def checks(self) -> tuple[WorkerCheck, ...]:
        """Every worker check of the nodes that answered."""
        return tuple(check for node in self.nodes for check in node.checks)

    def render(self) -> str:
        """The table (node, pid, actor class, GPU, planned node, verdict, local memory: the share of its pages on the
        plan's memory nodes), then what each problem is."""
        header = ("node", "pid", "actor class", "GPU", "planned node", "verdict", "local memory")
        rows: list[tuple[str, ...]] = []
        problems: list[str] = []
        for node in self.nodes:
            if not node.answered:
                rows.extend(
                    (node.label, str(w.pid), visible(w.actor_class), _ray_gpus(w), "-", "no answer", "-")
                    for w in node.workers
                )
                problems.append(f"node {node.label}: {node.error or 'no answer'}")
                continue
            for check in node.checks:
                rows.append(_row(node, check))
                problems.extend(_problems(node, check))
        lines = _table(header, rows) if rows else ["no GPU worker found in the cluster"]
        lines.extend(problems)
        counts = {verdict: 0 for verdict in Verdict}
        for check in self.checks:
            counts[check.verdict] += 1
        silent = [node for node in self.nodes if not node.answered]
        summary = (
            f"{len(self.checks)} GPU worker(s) on {len(self.nodes) - len(silent)} node(s): "
            f"{counts[Verdict.AS_EXPECTED]} as expected, {counts[Verdict.NOT_AS_EXPECTED]} NOT as expected, "
            f"{counts[Verdict.CANNOT_TELL]} cannot tell"
        )
        if silent:
            summary += f"; {len(silent)} node(s) did not answer within {self.timeout:g} s"
        lines.append(summary)
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """One JSON document: the verdict, then every node with each worker's check as ``check --json`` prints it."""
        return {
            "verdict": self.verdict.value,
            "timeout": self.timeout,
            "seconds": self.seconds,
            "notes": list(self.notes),
            "nodes": [
                {
                    "node_id": node.node_id,
                    "address": node.address,
                    "answered": node.answered,
                    "simulated": node.simulated,
                    "seconds": node.seconds,
                    "cpu_seconds": node.cpu_seconds,
                    "error": node.error,
                    "verdict": node.verdict.value,
                    "workers": [_worker_dict(worker, check) for worker, check in _paired(node)],
                }
                for node in self.nodes
            ],
        }

    def samples(self) -> tuple[metrics.Sample, ...]:
        """Every node's and worker's figures (:mod:`gpunuma.metrics`)."""
        samples: list[metrics.Sample] = []
        for node in self.nodes:
            samples.extend(metrics.node_samples(host=node.address, node_id=node.node_id, answered=node.answered,
                                                seconds=node.seconds))
            for worker, check in _paired(node):
                result = check.result if check is not None else None
                gpus = result.gpus if result is not None and result.gpus else worker.ray_gpus
                # A class name is the cluster's users' text: escaped as everything the command prints.
                labels = metrics.worker_labels(host=node.address, node_id=node.node_id, pid=worker.pid, gpus=gpus,
                                               actor_class=visible(worker.actor_class))
                samples.extend(metrics.worker_samples(result, labels) if result is not None
                               else metrics.unchecked_samples(labels))
        return tuple(samples)


def _paired(node: NodeCheck) -> list[tuple[FleetWorker, WorkerCheck | None]]:
    if node.answered:
        return [(check.worker, check) for check in node.checks]
    return [(worker, None) for worker in node.workers]


def _worker_dict(worker: FleetWorker, check: WorkerCheck | None) -> dict[str, Any]:
    return {
        "pid": worker.pid,
        "actor_class": worker.actor_class,
        "actor_id": worker.actor_id,
        "name": worker.name,
        "ray_gpus": list(worker.ray_gpus),
        "verdict": check.verdict.value if check is not None else Verdict.CANNOT_TELL.value,
        "error": check.error if check is not None else None,
        "check": check.result.to_dict() if check is not None and check.result is not None else None,
    }


_VERDICT_WORDS = {
    Verdict.AS_EXPECTED: "as expected",
    Verdict.NOT_AS_EXPECTED: "NOT as expected",
    Verdict.CANNOT_TELL: "cannot tell",
}


def _ray_gpus(worker: FleetWorker) -> str:
    return "ray " + ",".join(map(str, worker.ray_gpus)) if worker.ray_gpus else "-"


def _row(node: NodeCheck, check: WorkerCheck) -> tuple[str, ...]:
    worker, result = check.worker, check.result
    gpus = ",".join(map(str, result.gpus)) if result is not None and result.gpus else _ray_gpus(worker)
    planned = "-"
    if result is not None and result.plan is not None:
        planned = ",".join(map(str, result.plan.nodes)) if result.plan.binds else "none"
    fraction = result.local_fraction if result is not None else None
    memory = f"{fraction:.0%}" if fraction is not None else "-"
    return (node.label, str(worker.pid), visible(worker.actor_class), gpus, planned,
            _VERDICT_WORDS[check.verdict], memory)


def _problems(node: NodeCheck, check: WorkerCheck) -> list[str]:
    where = f"{node.label} pid {check.worker.pid}"
    if check.error is not None:
        return [f"{where}: cannot check: {check.error}"]
    result = check.result
    assert result is not None
    if result.verdict is Verdict.NOT_AS_EXPECTED:
        first, *rest = result.mismatches
        more = f" (and {len(rest)} more: gpunuma check --pid {check.worker.pid} there lists them)" if rest else ""
        return [f"{where}: ! {first}{more}"]
    if result.verdict is Verdict.CANNOT_TELL:
        return [f"{where}: note: {note}" for note in result.notes[-1:]]
    return []


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in (header, *rows)]


# -- on each node ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NodeAnswer:
    """What a node's task sends back: its checks, the simulated machine it read, and what checking cost it."""

    checks: tuple[WorkerCheck, ...]
    #: The node's ``GPUNUMA_SIMULATE``; None on a real host.
    simulated: str | None
    #: Wall seconds, and CPU seconds of the checking thread, from the first check to the last.
    seconds: float
    cpu_seconds: float


def check_node(workers: tuple[FleetWorker, ...]) -> NodeAnswer:
    """Check ``workers`` on this host, each as ``gpunuma check --pid PID`` does with the GPUs Ray assigned it.

    Runs on the node (a Ray task pinned there).
    """
    started, cpu = time.perf_counter(), time.thread_time()
    machine = configure(binding=False, strict=False, warn=False).machine
    simulate = machine.name if isinstance(machine, Simulated) else None
    checks = []
    for worker in workers:
        try:
            # Ray's GPU ids are indices into the worker's starting CUDA_VISIBLE_DEVICES (all GPUs without one):
            # check_process takes local indices through that same variable, as Ray maps them.
            result = check_process(worker.pid, gpus=list(worker.ray_gpus) or None, simulate=simulate)
        except GpunumaError as err:  # gone since the table was read, unreadable, a GPU this host lacks
            checks.append(WorkerCheck(worker, error=str(err)))
            continue
        checks.append(WorkerCheck(worker, result))
    return NodeAnswer(tuple(checks), simulate, time.perf_counter() - started, time.thread_time() - cpu)


# -- on the driver ------------------------------------------------------------------------------
def _ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise MissingDependencyError("ray", "ray", "gpunuma fleet") from err
    return ray


def gpu_workers(ray: Any) -> tuple[FleetWorker, ...]:
    """Every live actor of the cluster that holds GPUs, from the GCS actor table (see the module's text)."""
    try:
        from ray._private.state import state
        from ray.core.generated import gcs_pb2

        table = state._connect_and_get_accessor().get_actor_table(None, "ALIVE")
    except (ImportError, AttributeError) as err:
        raise FleetError(
            f"this Ray ({getattr(ray, '__version__', 'unknown version')}) does not give the actor table's GPU "
            f"assignments gpunuma fleet reads: {err}"
        ) from err
    workers = []
    for raw in table:
        actor = gcs_pb2.ActorTableData.FromString(raw)  # type: ignore[attr-defined]  # generated, untyped
        gpus = sorted({
            entry.index for mapping in actor.resource_mapping if mapping.name == "GPU" for entry in mapping.resource_ids
        })
        if not gpus and not actor.required_resources.get("GPU", 0) > 0:
            continue
        if actor.pid <= 0:
            continue  # not started yet
        workers.append(FleetWorker(
            node_id=actor.address.node_id.hex(), pid=int(actor.pid), actor_class=actor.class_name,
            actor_id=actor.actor_id.hex(), ray_gpus=tuple(gpus), name=actor.name,
        ))
    return tuple(sorted(workers, key=lambda w: (w.node_id, w.pid)))


def _alive_nodes(ray: Any) -> dict[str, str]:
    """Ray node id -> address, for every node alive now."""
    return {str(node["NodeID"]): str(node.get("NodeManagerAddress", "")) for node in ray.nodes() if node.get("Alive")}


def check_fleet(*, address: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> FleetReport:
    """Check every GPU worker of the Ray cluster at ``address`` (default ``RAY_ADDRESS``, else ``auto``).

    A process already connected to Ray (a driver) checks its own cluster and stays connected; otherwise this joins
    the cluster for the check and leaves it after. Each node that runs GPU actors checks them itself; the answers
    are awaited up to ``timeout`` seconds in all, and a node silent by then is listed with ``answered=False``.
    Raises :class:`~gpunuma.errors.FleetError` when the cluster cannot be reached, and
    :class:`~gpunuma.errors.SettingsError` for a ``timeout`` that is no number of seconds.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise SettingsError(f"timeout={timeout!r:.40}: expected seconds, a number of 0 or more")
    ray = _ray()
    joined = False
    if not ray.is_initialized():
        target = address or ray_address()
        try:
            ray.init(address=target, logging_level=logging.WARNING, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise FleetError(f"cannot join the Ray cluster at {target!r}: {err}") from err
        joined = True
    try:
        return _check_cluster(ray, timeout)
    finally:
        if joined:
            ray.shutdown()


def _check_cluster(ray: Any, timeout: float) -> FleetReport:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    started = time.perf_counter()
    alive = _alive_nodes(ray)
    by_node: dict[str, list[FleetWorker]] = {}
    notes = []
    for worker in gpu_workers(ray):
        if worker.node_id in alive:
            by_node.setdefault(worker.node_id, []).append(worker)
        else:
            notes.append(f"actor {worker.actor_id} (pid {worker.pid}) is on node {worker.node_id[:8]}, "
                         "which Ray no longer lists as alive")
    task = ray.remote(num_cpus=0, max_retries=0)(check_node)
    pending: dict[Any, str] = {}
    for node_id, workers in by_node.items():
        strategy = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
        ref = task.options(scheduling_strategy=strategy, name="gpunuma-fleet-check").remote(tuple(workers))
        pending[ref] = node_id
    answers: dict[str, NodeCheck] = {}
    done, late = ray.wait(list(pending), num_returns=len(pending), timeout=timeout) if pending else ([], [])
    for ref in done:
        node_id = pending[ref]
        try:
            answer = ray.get(ref)
        except Exception as err:  # the task failed on its node (the node died, Ray refused it): say so, go on
            answers[node_id] = _node(node_id, alive, by_node, error=f"its check failed: {err}")
            continue
        answers[node_id] = _node(node_id, alive, by_node, answer=answer)
    for ref in late:
        node_id = pending[ref]
        try:
            ray.cancel(ref)
        except Exception as err:  # already gone: nothing to cancel
            logger.debug("fleet: cancelling the check of node %s: %s", node_id, err)
        answers[node_id] = _node(node_id, alive, by_node, error=f"no answer within {timeout:g} s")
    nodes = tuple(answers[node_id] for node_id in sorted(answers, key=lambda n: (alive.get(n, ""), n)))
    return FleetReport(nodes=nodes, timeout=timeout, seconds=time.perf_counter() - started, notes=tuple(notes))


def _node(
    node_id: str,
    alive: Mapping[str, str],
    by_node: Mapping[str, list[FleetWorker]],
    *,
    answer: NodeAnswer | None = None,
    error: str | None = None,
) -> NodeCheck:
    node = NodeCheck(node_id=node_id, address=alive.get(node_id, ""), workers=tuple(by_node[node_id]), error=error)
    if answer is None:
        return node
    return replace(node, checks=answer.checks, answered=True, simulated=answer.simulated, seconds=answer.seconds,
                   cpu_seconds=answer.cpu_seconds)
