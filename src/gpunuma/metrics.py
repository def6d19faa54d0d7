"""A check's figures as metrics: one home for their names, labels and values, and two ways out.

Every figure is a gauge about one GPU worker process, labelled by where it runs (:data:`WORKER_LABELS`); a fleet
check adds one per Ray node. :func:`prometheus_text` writes them in Prometheus's text format through
``prometheus_client`` (``gpunuma check --prometheus``, ``gpunuma fleet --prometheus``; the optional extra
``gpunuma[metrics]``); the Ray integration sets the same figures as ``ray.util.metrics`` gauges, which Ray's own
Prometheus endpoint serves. docs/fleet.md lists them with alert examples.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpunuma.core.readback import Drift
from gpunuma.errors import MissingDependencyError

if TYPE_CHECKING:
    from gpunuma.tools.check import CheckResult

#: The labels of every worker figure: the host, the Ray node id (empty outside Ray), the process, its GPU(s)
#: (``"5"``, ``"0,1"``; empty when unknown) and the class of the Ray actor it runs (empty outside Ray).
WORKER_LABELS = ("host", "node_id", "pid", "gpu", "actor_class")
#: The labels of a Ray node's figures in a fleet check.
NODE_LABELS = ("host", "node_id")


@dataclass(frozen=True, slots=True)
class Metric:
    """One gauge: its name, what it means, and its label names."""

    name: str
    help: str
    labels: tuple[str, ...] = WORKER_LABELS


BOUND = Metric(
    "gpunuma_worker_bound",
    "1 when every thread of the worker and its memory policy hold the plan for its GPU, 0 when not; "
    "absent when the check cannot tell or no binding is expected (no GPU)",
)
CHECKED = Metric(
    "gpunuma_worker_checked",
    "1 when the check reached a verdict, 0 when it cannot tell (its GPU unknown, GPUNUMA_BIND=0, the process "
    "unreadable or gone, its node did not answer)",
)
THREADS = Metric("gpunuma_worker_threads", "threads of the worker process")
OFF_PLAN = Metric(
    "gpunuma_worker_threads_off_plan",
    "threads of the worker on CPUs outside the plan for its GPU (moved or widened by a library)",
)
DRIFTED = Metric(
    "gpunuma_worker_drifted_threads",
    "threads of the worker that differ from the plan, by how: narrowed (on part of the planned CPUs), moved "
    "(CPUs outside it), widened (every planned CPU and more), policy (the memory policy changed)",
    (*WORKER_LABELS, "drift"),
)
LOCAL_MEMORY = Metric(
    "gpunuma_worker_local_memory_ratio",
    "the share of the worker's resident pages on the plan's memory nodes (numa_maps), from 0 to 1",
)
NODE_ANSWERED = Metric(
    "gpunuma_node_answered", "1 when the Ray node's check answered within the timeout, 0 when it did not",
    NODE_LABELS,
)
NODE_SECONDS = Metric("gpunuma_node_check_seconds", "seconds the Ray node spent checking its GPU workers", NODE_LABELS)
#: Every figure, in the order they are written.
METRICS = (BOUND, CHECKED, THREADS, OFF_PLAN, DRIFTED, LOCAL_MEMORY, NODE_ANSWERED, NODE_SECONDS)


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of a figure, with its label values in the order of ``metric.labels``."""

    metric: Metric
    labels: tuple[str, ...]
    value: float

    @property
    def tags(self) -> dict[str, str]:
        """Label name -> value."""
        return dict(zip(self.metric.labels, self.labels, strict=True))


def worker_labels(
    *, host: str, pid: int, gpus: Iterable[int] = (), node_id: str = "", actor_class: str = ""
) -> tuple[str, ...]:
    """The label values of one worker, in the order of :data:`WORKER_LABELS`."""
    return (host, node_id, str(pid), ",".join(str(gpu) for gpu in gpus), actor_class)


def worker_samples(result: CheckResult, labels: tuple[str, ...]) -> tuple[Sample, ...]:
    """The figures of one checked worker (``labels`` from :func:`worker_labels`)."""
    verdict = str(result.verdict.value)
    samples = [Sample(CHECKED, labels, 0.0 if verdict == "cannot_tell" else 1.0)]
    # The plan the worker is judged against, when it binds (a GPU worker, not shown-only under GPUNUMA_BIND=0).
    plan = result.plan if result.plan is not None and result.plan.binds and result.compared else None
    if plan is not None and verdict != "cannot_tell":
        samples.append(Sample(BOUND, labels, 1.0 if verdict == "as_expected" else 0.0))
    samples.append(Sample(THREADS, labels, float(len(result.view.threads))))
    if plan is not None:
        drifts = [found for found in result.drift if found is not None]
        off = sum(1 for found in drifts if found in (Drift.MOVED, Drift.WIDENED))
        samples.append(Sample(OFF_PLAN, labels, float(off)))
        samples.extend(
            Sample(DRIFTED, (*labels, kind.value), float(drifts.count(kind))) for kind in Drift
        )
    fraction = result.local_fraction
    if plan is not None and fraction is not None:
        samples.append(Sample(LOCAL_MEMORY, labels, fraction))
    return tuple(samples)


def unchecked_samples(labels: tuple[str, ...]) -> tuple[Sample, ...]:
    """The figures of a worker that could not be checked (its process gone, its node silent)."""
    return (Sample(CHECKED, labels, 0.0),)


def node_samples(*, host: str, node_id: str, answered: bool, seconds: float | None) -> tuple[Sample, ...]:
    """The figures of one Ray node of a fleet check."""
    labels = (host, node_id)
    samples = [Sample(NODE_ANSWERED, labels, 1.0 if answered else 0.0)]
    if seconds is not None:
        samples.append(Sample(NODE_SECONDS, labels, seconds))
    return tuple(samples)


def _prometheus_client() -> Any:
    try:
        import prometheus_client
    except ImportError as err:
        raise MissingDependencyError("prometheus_client", "metrics", "--prometheus") from err
    return prometheus_client


def prometheus_text(samples: Iterable[Sample]) -> str:
    """``samples`` in Prometheus's text exposition format, generated by ``prometheus_client`` in a registry of its
    own (nothing of the process's default registry). A figure without a sample is left out.

    Raises :class:`~gpunuma.errors.MissingDependencyError` when ``prometheus_client`` is not installed.
    """
    client = _prometheus_client()
    registry = client.CollectorRegistry(auto_describe=False)
    gauges: dict[str, Any] = {}
    by_metric: dict[str, list[Sample]] = {}
    for sample in samples:
        by_metric.setdefault(sample.metric.name, []).append(sample)
    for metric in METRICS:  # in one fixed order, whatever order the samples came in
        for sample in by_metric.get(metric.name, ()):
            gauge = gauges.get(metric.name)
            if gauge is None:
                gauge = gauges[metric.name] = client.Gauge(
                    metric.name, metric.help, metric.labels, registry=registry
                )
            gauge.labels(*sample.labels).set(sample.value)
    return str(client.generate_latest(registry).decode("utf-8"))
