"""Reasons as data: a code and its values, with the English rendered from one template per code.

A :class:`Reason` *is* its English text (a ``str``), so logs, ``summary()`` and the ``reasons``
list in JSON read as before, while tests and tools use ``reason.code`` and ``reason.values``
and the prose can improve without breaking them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

_DISALLOWED = "none of node {node}'s CPUs {cpus} are allowed by this cgroup (allowed: {allowed})"
_RESERVED = "reserve={reserve} keeps out every CPU of node {node} this process may use ({cpus})"
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
    "gpu_nearest_tie": (
        "{gpu}'s node {node} has no CPUs and nodes {nodes} are all nearest to it (distance {distance}): "
        "choosing one would be a guess"
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
    "said_no_node_file": "no numa_node (its file is missing or empty)",
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
    "node_reserved": _RESERVED,
    "node_reserved_not_binding": _RESERVED + "; not binding (on_disallowed=none)",
    "node_reserved_no_allowed_node": _RESERVED + "; no node has a CPU left to bind to",
    "node_reserved_nearest": _RESERVED + "; using node {target}, the nearest node with CPUs left ({distance})",
    "node_partly_allowed": "{allowed_count} of node {node}'s {total} CPUs are allowed by this cgroup",
    # -- rules 2, 4, 6, 7: scope, several GPUs, explicit node, narrowed affinity (core.planner) -
    "affinity_narrowed": _NARROWED + "; leaving it alone (override_affinity=True rebinds)",
    "affinity_overridden": _NARROWED + "; override_affinity=True rebinds within this cgroup's CPUs {cpus}",
    "explicit_node": "node {node} was requested explicitly",
    "explicit_node_over_gpus": "node {node} was requested explicitly; it overrides the GPUs' own node(s)",
    "not_local_refused": (
        "require_local (GPUNUMA_REQUIRE=local): not binding to node(s) {nodes}, which are not {gpu}'s own node {own}"
    ),
    "not_on_gpu_node": (
        "{gpu} is on node {own}, which this plan does not bind to (node(s) {nodes}): not local to the GPU, because"
        " {why}"
    ),
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
    "share_slots_refused": (
        "no share of the GPU for this worker: {error}; binding it to the whole plan, which the other workers "
        "on its GPU may overlap"
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
    "no_gpu_owned": "this process owns no GPU ({source} gave it none): nothing to bind",
    "topology_note": "topology: {note}",
    "no_process_status": (
        "{path} is not in the captured tree: planned as if no cgroup limited the process "
        "(every online CPU and memory node allowed)"
    ),
    "no_process_status_cgroup": (
        "{path} is not in the captured tree: planned within the cgroup cpuset it recorded ({cpuset}), "
        "its affinity taken as that cpuset"
    ),
    "plan_failed": "could not plan a binding: {error}",
    "binder_unavailable": "could not build the {method} binder, nothing changed: {error}",
    "bind_failed": "binding failed and was undone: {error}",
    "bind_failed_not_undone": "binding failed and was not fully undone: {error}",
    "concurrent_bind_won": (
        "another bind of this process ran at the same time and won: the process holds CPUs {cpus} "
        "(GPU {gpus}, node(s) {nodes}); this bind changed nothing"
    ),
    "bound_by_concurrent_bind": (
        "another bind of this process ran at the same time and set what this one planned: CPUs {cpus} "
        "(GPU {gpus}, node(s) {nodes})"
    ),
    "launched": "started by gpunuma.launch",
    # -- the sysfs adapter: files a tree lacks, and what was read instead (adapters.sysfs*) ------
    "sysfs_no_pci_devices": "{path} missing: no GPUs",
    "sysfs_gpu_node_unknown": "{path} missing or empty: NUMA node unknown",
    "sysfs_gpu_uuid_unknown": "{path} missing: UUID unknown to sysfs",
    "sysfs_gpu_vendor_from_driver": (
        "{path} missing: NVIDIA's, as the NVIDIA driver lists this display function ({listing})"
    ),
    "sysfs_local_cpus_unknown": "{path} and local_cpus missing: local CPUs unknown",
    "sysfs_online_from_flags": (
        "{path} missing or empty: online CPUs are the cpuN folders whose online flag is not 0"
    ),
    "sysfs_online_assumed": "{path} and the cpuN folders missing: every CPU of {name!r} assumed online",
    "sysfs_sockets_from_package_lists": (
        "no physical_package_id for CPUs {cpus}: their sockets are told apart by package_cpus_list alone"
    ),
    "sysfs_cpu_layout_unknown": (
        "no core or socket files for CPUs {cpus}: their cores and sockets are unknown (left out of the CPU layout)"
    ),
    "sysfs_no_numa": "{path} missing (kernel without NUMA): one node 0 holding every online CPU",
    "sysfs_nodes_merged": (
        "nodes {nodes} list the same CPUs {cpus} at the local distance of each other (an old kernel's layout): "
        "read as one node, {kept}, as hwloc reads them"
    ),
    "sysfs_nodes_all_online": "{path} missing or empty: every nodeN folder taken as online",
    "sysfs_has_memory_missing": "{path} missing or empty: memory judged from each node's meminfo",
    "sysfs_node_memory_assumed": (
        "node {node}: has_memory and meminfo missing: assumed with memory, as nodes with CPUs usually are"
    ),
    "sysfs_node_no_memory_assumed": (
        "node {node}: has_memory and meminfo missing: assumed without memory, as nodes without CPUs usually are"
    ),
    "sysfs_node_cpus_from_links": "nodes {nodes}: no cpulist or cpumap; their CPUs taken from the cpuN/nodeM links",
    "sysfs_node_cpus_unlisted": (
        "nodes {nodes}: no cpulist or cpumap; their CPUs are the online CPUs no other node lists ({cpus})"
    ),
    "sysfs_distance_missing": "{path} missing: node {node} knows only its own distance",
    "sysfs_distance_partial": "{path}: no entry for online nodes {nodes}: those distances are unknown",
    "sysfs_distance_unordered": (
        "{path}: {count} distances for {online} online nodes, in no order a kernel prints: "
        "node {node}'s distances to other nodes are unknown"
    ),
    "sysfs_meminfo_missing": "{path} missing: memory size unknown",
    "sysfs_no_cache_levels": "{path} has no cache levels: cache domains unknown (cpu_scope=cache uses nodes)",
    "sysfs_cache_files_missing": (
        "no {index} (L{level}) cache files for CPUs {cpus}: left out of the cache domains"
    ),
    "sysfs_rdma_without_pci": "{path} does not lead to a PCI device: RDMA device {name} left out",
    # -- GPUs this process cannot open (core.exposure, from the sysfs adapter's evidence) --------
    "gpus_not_openable": "{vendor} GPU(s) {buses} left out: {why}",
    "nvidia_not_listed": (
        "/proc/driver/nvidia/gpus does not list it (the container runtime did not give it to this process)"
    ),
    "nvidia_device_node_missing": (
        "/dev/nvidia{minor} is not here (the container runtime did not give it to this process)"
    ),
    "nvidiactl_missing": "/dev/nvidiactl is not here: this process cannot open any NVIDIA GPU",
    "nvidia_visible_none": "NVIDIA_VISIBLE_DEVICES=none",
    "nvidia_visible_unnamed": "NVIDIA_VISIBLE_DEVICES={value!r} does not name it (host GPU {index})",
    "kfd_missing": "/dev/kfd is not here: ROCm can open no AMD GPU",
    "render_node_missing": "{nodes} is not here (the container was not given it)",
    # -- the NVML and auto adapters (adapters.nvml, adapters.auto) -------------------------------
    "nvml_field_failed": "{function}: {error}",
    "nvml_gpu_skipped": "NVML GPU {index} skipped: {why}",
    "nvml_bus_id_malformed": "NVML GPU {index} skipped: its bus id {text} is not a PCI bus id",
    "nvml_no_affinity": "no CPU affinity: locality unknown",
    "nvml_affinity_off_nodes": "CPU affinity {cpus} names no CPU of any node",
    "nvml_affinity_everything": "CPU affinity is every CPU: no locality reported",
    "nvml_affinity_spans": "CPU affinity spans nodes {nodes}",
    "nvml_mig_slot_failed": "nvmlDeviceGetMigDeviceHandleByIndex({slot}): {error}",
    "nvml_not_used": "NVML not used: {error}",
    "gpu_not_seen_by_nvml": "{gpu}: in sysfs but not visible to NVML; left out",
    "gpu_seen_by_nvml_only": "{gpu}: seen by NVML only; its locality is NVML's",
    "gpu_nodes_disagree": (
        "{gpu}: sysfs numa_node {kernel_node} but NVML CPU affinity says node {nvml_node}; "
        "using the kernel's {kernel_node}"
    ),
    # -- the binders (adapters.process, adapters.libnuma) ----------------------------------------
    "libnuma_not_used": "libnuma not used ({error}); bound through raw syscalls",
    "get_mempolicy_refused": "get_mempolicy refused ({errno}): memory policy left alone",
    "threads_shared": (
        "OMP_NUM_THREADS={threads} and OpenMP places on CPUs {places} for children: {gpus} GPUs are planned on"
        " these {cpus} CPUs, one process each, and this process has {mine} of them"
    ),
    "no_preferred_many": (
        "no MPOL_PREFERRED_MANY here (Linux 5.15+; numactl 2.0.15+ for a launcher): memory prefers node {node}"
        " only, not {nodes}"
    ),
    "memory_policy_refused": "memory policy refused by the kernel ({errno}): bound CPUs only",
    "memory_policy_not_in_force": "memory policy not in force after setting it (kernel holds {held}): bound CPUs only",
    "migrate_pages_refused": "migrate_pages refused ({errno}): existing pages stay where they are",
    "migrate_pages_moved": (
        "moved {moved} page(s) to node {nodes} in {ms} ms (migrate_pages): {before} of the pages there before, "
        "{after} after; {left} page(s) could not be moved"
    ),
    "migrate_without_memory_policy": (
        "existing pages not moved (migrate): the binding holds no memory policy ({policy}), so nothing would "
        "keep the process's new pages on node {nodes}"
    ),
    # -- verify: the binding in force against what the process holds now (tools.verify) ------------
    "verify_nothing_in_force": "no binding holds in this process to compare with: {why}",
    "verify_policy_not_repaired": "the memory policy was not put back: {error}",
    # -- the settings edge: a GPUNUMA_* value not understood (settings), its text the error's ------
    "setting_not_understood": "{problem}",
    # -- gpunuma check: why a process's binding is shown without a verdict, or judged on defaults (check) --
    "check_environment_unreadable": "the environment of process {pid} is unreadable: its GPU is unknown",
    "check_environment_unreadable_named": (
        "the environment of process {pid} is unreadable: its GPUNUMA_* settings are taken as the defaults "
        "and a local GPU index as the physical one"
    ),
    "check_ray_worker": (
        "process {pid} is a Ray worker ({variable} is set): Ray sets its CUDA_VISIBLE_DEVICES after the process "
        "started, so /proc/{pid}/environ lacks it and its GPU is unknown here; ask the actor for its "
        "binding_report() (gpunuma.integrations.ray) to see how it was bound, or name its GPU (--physical-gpu)"
    ),
    "check_no_visible_devices": (
        "the process sets no CUDA_VISIBLE_DEVICES: it may use every GPU, so no single node is expected "
        "(a Ray worker gets its CUDA_VISIBLE_DEVICES from Ray after it started, which /proc does not "
        "show: name its GPU with --gpu or --physical-gpu, or ask the actor for its binding_report())"
    ),
    "check_threads_within_plan": (
        "{count} thread(s) run on CPUs {cpus}, part of the planned {planned} (the process's own narrowing, such as"
        " an OpenMP team's places): within the plan ({tids})"
    ),
    "check_memory_within_plan": "memory policy is {held}, part of the planned {planned}: within the plan",
    "check_own_record": (
        "what gpunuma bound it to before it started (GPUNUMA_OWN in its environment): CPUs {cpus}, memory {memory}"
    ),
    "check_setting_defaulted": "the process's {setting}: it ran with the default",
    "check_gpu_unresolved": "no plan to compare with: its GPU could not be resolved",
    "check_no_plan": "no plan to compare with: {error}",
    "check_no_gpu": "the process sees no GPU: nothing to bind",
    "check_not_bound_by_choice": (
        "the process runs with GPUNUMA_BIND={value}: gpunuma was told not to bind it, so its affinity is not "
        "compared with the plan (shown for information)"
    ),
    # -- unpacking a captured tree (tools.archive): members left out, and why -----------------
    "archive_members_skipped": "{count} member(s) skipped: {why} (e.g. {example!r})",
    "archive_path_through_link": "its path runs through a link",
    "archive_path_through_file": "its path runs through a file",
    "archive_folder_in_the_way": "a folder of the same name exists",
    "archive_link_leaves": "a link whose target is absolute or leaves the archive",
    "archive_folder_over_member": "a folder where a file or link was",
    "archive_special_file": "a device, FIFO or other special file",
    "archive_hard_link_dangling": "a hard link to a member that is not an unpacked file",
    # -- text from outside gpunuma that carries no code of its own (an injected topology's notes) --
    "note": "{text}",
}


class Reason(str):
    """One reason, equal to its English text, that also carries its ``code`` and ``values``.

    Build it with :meth:`Reason.of`; plain strings from outside gpunuma (an injected topology's
    notes) read as code ``note`` (:meth:`Reason.coerce`).
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
        """The reason ``code`` with ``values``, its text rendered from :data:`TEMPLATES` (KeyError: no such code).

        An empty value (``""``, an empty list) reads ``none`` in the text, never a blank; ``values`` keep it as given.
        """
        shown = {key: "none" if _empty(value) else value for key, value in values.items()}
        return cls(TEMPLATES[code].format(**shown), code, sorted(values.items()))

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


def _empty(value: Any) -> bool:
    """An empty text or collection (a CPU list, node list or GPU list with nothing in it)."""
    return isinstance(value, (str, tuple, list, set, frozenset)) and not isinstance(value, Reason) and not value


def _plain(value: Any) -> Any:
    if isinstance(value, Reason):
        return value.to_dict()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list, frozenset, set)):
        return [_plain(item) for item in value]
    return str(value)


def details(reasons: Iterable[str]) -> list[dict[str, Any]]:
    """Each reason's ``{"code", "values"}``, in order: the JSON ``reason_details`` beside a ``reasons`` list."""
    return [Reason.coerce(reason).to_dict() for reason in reasons]


def codes(reasons: Iterable[str]) -> tuple[str, ...]:
    """The code of each reason, in order (``note`` for plain text)."""
    return tuple(Reason.coerce(reason).code for reason in reasons)


def with_code(reasons: Iterable[str], code: str) -> tuple[Reason, ...]:
    """The reasons (or notes) whose code is ``code``, in order: what a test or a tool looks for."""
    return tuple(reason for reason in map(Reason.coerce, reasons) if reason.code == code)
