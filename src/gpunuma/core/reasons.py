"""Reasons as data: a code and its values, with the English rendered from one template per code.

A :class:`Reason` *is* its English text (a ``str``), so logs, ``summary()`` and the ``reasons``
list in JSON read as before, while tests and tools use ``reason.code`` and ``reason.values``
and the prose can improve without breaking them.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

_DISALLOWED = "none of node {node}'s CPUs {cpus} are allowed by this cgroup (allowed: {allowed})"
_NARROWED = "CPU affinity was already narrowed to {affinity} (numactl, taskset or a batch scheduler)"
_NO_MEMORY = "node(s) {nodes} have no memory this process may use (allowed memory nodes: {mems})"
_RAY = "{gpu} from ray.get_gpu_ids()={ids}"

#: Every code and the template its English is rendered from (``str.format`` over the values).
TEMPLATES: Mapping[str, str] = {
    # -- which GPUs this process owns (core.identity) ------------------------------------------
    "gpu_from_visibility": "{gpu} from {origin}",
    "gpu_named": "{gpu} from gpus={item!r}",
    "gpu_local_ordinal": "{gpu} from gpus={item!r} (local cuda:{local})",
    "gpu_local_ordinal_through": "{gpu} from gpus={item!r} (local cuda:{local} through {origin})",
    "gpu_from_ray": _RAY,
    "gpu_from_ray_noset": (
        _RAY + " (RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES=1: Ray left CUDA_VISIBLE_DEVICES alone)"
    ),
    "device_order_mixed_models": (
        "CUDA_DEVICE_ORDER={order} (the CUDA default) on GPUs of different models ({models}): CUDA may number "
        "them unlike PCI bus order; gpunuma assumes bus order. Set CUDA_DEVICE_ORDER=PCI_BUS_ID to be sure."
    ),
    "gpu_physical": "{gpu} from physical={item!r} (NVML / nvidia-smi numbering: PCI bus order)",
    "gpu_from_local_rank": (
        "{gpu} from LOCAL_RANK={rank}: a torchrun worker owns cuda:LOCAL_RANK ({origin})"
    ),
    "local_rank_single_worker": (
        "LOCAL_RANK={rank} does not pick a GPU: LOCAL_WORLD_SIZE=1, a single worker per node may use every GPU"
    ),
    "local_rank_not_an_index": "LOCAL_RANK={rank} does not pick a GPU: it is not a GPU index",
    "local_rank_out_of_range": (
        "LOCAL_RANK={rank} does not pick a GPU: the process sees only {count} GPU(s) ({origin})"
    ),
    "ray_worker_without_gpu": (
        "this Ray worker holds no GPU (ray.get_gpu_ids() is empty: num_gpus=0): nothing to bind"
    ),
    "visible_list_truncated": (
        "{variable}={value!r}: {problem}; the runtime ignores it and every entry after it ({ignored})"
    ),
    # -- rule 1: a GPU's CPU node (core.planner.locality) --------------------------------------
    "gpu_on_node": "{gpu} is on node {node}",
    "gpu_node_not_listed": "{gpu} reports node {reported}, which the topology does not list",
    "gpu_node_cpuless_nearest": (
        "{gpu} reports node {reported}, which has no CPUs; using node {node}, the nearest node with CPUs ({distance})"
    ),
    "gpu_node_cpuless_no_cpus": "{gpu} reports node {reported}, which has no CPUs, and no node has CPUs",
    "gpu_memory_node_not_listed": "{gpu}'s GPU-memory node {memory_node} is not in the topology",
    "gpu_memory_node_nearest": (
        "{gpu} reports numa_node -1; its GPU memory is node {memory_node} (nvmlDeviceGetNumaNodeId); "
        "using node {node}, the nearest node with CPUs ({distance})"
    ),
    "gpu_single_candidate": "{gpu} reports {said} and {evidence} node {node} only; it is on node {node}",
    "gpu_spread": (
        "{gpu} reports {said} and {evidence} nodes {nodes}; spreading the {count} GPU(s) that share them "
        "by rank: rank {rank} of {count} -> node {node}"
    ),
    "gpu_spread_unknown": (
        "{gpu} reports no NUMA locality: {said} and {evidence}; spreading the {count} such GPU(s) over "
        "every node by rank (spread_unknown=True): rank {rank} of {count} -> node {node}"
    ),
    "gpu_locality_unknown": "{gpu} reports no NUMA locality: {said} and {evidence}; not guessing",
    # what the GPU's numa_node said, rendered inside the rule 1c reasons above
    "said_no_node": "numa_node -1",
    "said_node_not_listed": "node {reported} (a node that does not exist)",
    "said_node_cpuless": "node {reported} (a node without CPUs)",
    # evidence for rule 1c, rendered inside the reasons above
    "evidence_local_cpus": "its local CPUs {cpus} lie on",
    "evidence_nvml_affinity": "its NVML memory affinity names",
    "evidence_local_cpus_all": "its local CPUs are every CPU",
    "evidence_local_cpus_span": "its local CPUs {cpus} span every node",
    "evidence_nvml_affinity_all": "its NVML memory affinity names every node",
    "evidence_none": "it has no local CPUs or memory affinity",
    "distance": "distance {distance}",
    "distance_unknown": "distance unknown",
    # -- rule 5: the cgroup (core.planner.placement, core.planner) -----------------------------
    "node_disallowed": _DISALLOWED,
    "node_disallowed_not_binding": _DISALLOWED + "; not binding (on_disallowed=none)",
    "node_disallowed_no_allowed_node": _DISALLOWED + "; no node has a CPU this cgroup allows",
    "node_disallowed_nearest": (
        _DISALLOWED + "; using node {target}, the nearest node with allowed CPUs ({distance})"
    ),
    "node_partly_allowed": "{allowed_count} of node {node}'s {total} CPUs are allowed by this cgroup",
    # -- rules 2, 4, 6, 7: scope, several GPUs, explicit node, narrowed affinity (core.planner) -
    "affinity_narrowed": _NARROWED + "; leaving it alone (override_affinity=True rebinds)",
    "affinity_overridden": _NARROWED + "; override_affinity=True rebinds within this cgroup's CPUs {cpus}",
    "explicit_node": "node {node} was requested explicitly",
    "explicit_node_over_gpus": "node {node} was requested explicitly; it overrides the GPUs' own node(s)",
    "spans_everything": (
        "the plan spans node(s) {nodes} with every CPU ({cpus}) and every memory node: binding would change "
        "nothing, so this is not a binding (bind to a node explicitly to bind anyway)"
    ),
    "no_gpu_placeable": "none of GPUs {gpus} has a node this process can bind to",
    "gpu_left_out": "{gpu} is left out; binding to the node(s) of GPU(s) {placed}",
    "gpus_union": "GPUs {gpus} are on nodes {nodes}; binding to the union of their {what}",
    "socket_unknown": "the topology names no socket for node {node}'s CPUs; cpu_scope=socket uses the node",
    "socket_scope": "cpu_scope=socket: node {node} is on socket {sockets} with node(s) {members}",
    "exclusive_no_gpu_on_node": "cpu_scope=exclusive: no GPU of this process is on node {node}; using all of it",
    "exclusive_share": (
        "cpu_scope=exclusive: {gpu} is rank {rank} of the {count} GPU(s) on node {node}; "
        "its share is cores {first}-{last} of {cores}: CPUs {cpus}"
    ),
    "exclusive_overlap": (
        "cpu_scope=exclusive: node {node} has {cores} core(s) with allowed CPUs for {count} GPUs; "
        "{gpu} (rank {rank}) gets core {first}, so shares overlap"
    ),
    "cache_domain": (
        "cpu_scope=cache: {gpu} is rank {rank} of the {count} GPU(s) on node {node}; it gets L{level} domain "
        "{position} of {domains}: CPUs {cpus}"
    ),
    "cache_domain_shared": (
        "cpu_scope=cache: node {node} has one L{level} domain, shared by its {count} GPU(s); {gpu} gets it: CPUs {cpus}"
    ),
    "cache_domain_overlap": (
        "cpu_scope=cache: node {node} has {domains} L{level} domains for {count} GPUs, so GPUs share them; "
        "{gpu} (rank {rank}) gets domain {position}: CPUs {cpus}"
    ),
    "cache_no_gpu_on_node": "cpu_scope=cache: no GPU of this process is on node {node}; using its allowed CPUs {cpus}",
    "cache_unknown": (
        "cpu_scope=cache: the topology names no cache domains for node {node}; using its allowed CPUs {cpus}"
    ),
    # -- shares and reserved cores (core.planner) ----------------------------------------------
    "reserved_cores": (
        "reserve={reserve}: the first {reserve} core(s) of every node stay out of every plan (CPUs {cpus})"
    ),
    "share_part": (
        "share {index}/{count}: part {index} of {count} of the planned {cores} core(s) is cores {first}-{last}: "
        "CPUs {cpus}"
    ),
    "share_from_ray": (
        "share {index}/{count} from Ray: this worker holds GPU {fraction} of GPU {gpu}, so {count} workers share "
        "it; slot {index} was free on this host"
    ),
    "share_overlap": (
        "share {index}/{count}: the plan has {cores} core(s) for {count} parts; part {index} gets core {first}, "
        "so parts overlap: CPUs {cpus}"
    ),
    # -- rule 3: memory (core.planner.memory) --------------------------------------------------
    "memory_left_alone": "memory policy left alone (memory=none)",
    "memory_on_nodes": "memory {policy} on node(s) {nodes}",
    "memory_no_usable_node": _NO_MEMORY + "; memory policy left alone",
    "memory_policy_set": (
        "memory policy {held} was already set (numactl --membind/--interleave/--localalloc or the program); "
        "leaving it alone (override_affinity=True replaces it)"
    ),
    "memory_policy_overridden": "memory policy {held} was already set; override_affinity=True replaces it",
    "memory_nearest": (
        _NO_MEMORY + "; memory {policy} on node {node}, the nearest allowed node with memory ({distance})"
    ),
    # -- the composition root and the launcher -------------------------------------------------
    "no_gpu_on_machine": "this machine has no GPU that sysfs or NVML can see: nothing to bind",
    "no_gpu_owned": "this process owns no GPU (CUDA_VISIBLE_DEVICES or Ray gave it none): nothing to bind",
    "topology_note": "topology: {note}",
    "no_process_status": (
        "{path} is not in the captured tree: planned as if no cgroup limited the process "
        "(every online CPU and memory node allowed)"
    ),
    "plan_failed": "could not plan a binding: {error}",
    "binder_unavailable": "could not build the {method} binder, nothing changed: {error}",
    "bind_failed": "binding failed and was undone: {error}",
    "launched": "started by gpunuma.launch",
    # -- text from an adapter that carries no code of its own ----------------------------------
    "note": "{text}",
}


class Reason(str):
    """One reason, equal to its English text, that also carries its ``code`` and ``values``.

    Build it with :meth:`Reason.of`; plain strings from adapters read as code ``note``
    (:meth:`Reason.coerce`).
    """

    code: str
    _values: tuple[tuple[str, Any], ...]

    def __new__(cls, text: str, code: str = "note", values: Iterable[tuple[str, Any]] = ()) -> Reason:
        reason = super().__new__(cls, text)
        reason.code = code
        reason._values = tuple(values)
        return reason

    @classmethod
    def of(cls, code: str, **values: Any) -> Reason:
        """The reason ``code`` with ``values``, its text rendered from :data:`TEMPLATES` (KeyError: no such code)."""
        return cls(TEMPLATES[code].format(**values), code, sorted(values.items()))

    @classmethod
    def coerce(cls, text: str) -> Reason:
        """``text`` as a reason: itself when it is one, else an uncoded ``note``."""
        return text if isinstance(text, Reason) else cls(text, "note", (("text", str(text)),))

    @property
    def values(self) -> dict[str, Any]:
        """The values the text was rendered from, by template field."""
        return dict(self._values)

    def to_dict(self) -> dict[str, Any]:
        """``{"code": ..., "values": {...}}`` with every value JSON-ready (nested reasons as dicts)."""
        return {"code": self.code, "values": {key: _plain(value) for key, value in self._values}}

    def __reduce__(self) -> tuple[Any, ...]:
        return (Reason, (str(self), self.code, self._values))


def _plain(value: Any) -> Any:
    if isinstance(value, Reason):
        return value.to_dict()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list, frozenset, set)):
        return [_plain(item) for item in value]
    return str(value)


def codes(reasons: Iterable[str]) -> tuple[str, ...]:
    """The code of each reason, in order (``note`` for plain text)."""
    return tuple(Reason.coerce(reason).code for reason in reasons)
