"""The planner's output and input values: what a process may use, and what to bind it to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpunuma.core.childenv import child_env
from gpunuma.core.cpuset import CpuSet, node_list
from gpunuma.core.kernel_policy import Mempolicy
from gpunuma.core.model import Nic, nic_dict
from gpunuma.core.policy import MemoryPolicy, Policy
from gpunuma.core.reasons import codes, details


@dataclass(frozen=True, slots=True)
class Allowed:
    """What the kernel lets this process use.

    ``cpus``/``mems`` are the cgroup cpuset (``cpuset.cpus.effective``, ``Mems_allowed``);
    ``affinity`` is the process's current CPU affinity, which may be narrower (taskset, numactl).
    ``mempolicy`` is a memory policy someone already set (``numactl --membind``, ``--interleave``,
    ``--localalloc``); None when the policy is the default or unknown. ``reserved`` are CPUs the cgroup
    allows that the planner took out of ``cpus`` and ``affinity`` for ``Policy.reserve``, so its reasons
    blame the reserve for them, not the cgroup (empty as the kernel reports it).
    """

    cpus: CpuSet
    mems: frozenset[int]
    affinity: CpuSet
    mempolicy: Mempolicy | None = None
    reserved: CpuSet = CpuSet()

    @property
    def cgroup_cpus(self) -> CpuSet:
        """The CPUs the cgroup allows, reserved ones included."""
        return self.cpus | self.reserved if self.reserved else self.cpus

    @property
    def affinity_narrowed(self) -> bool:
        """True when something already narrowed the affinity below the cpuset."""
        return bool(self.affinity) and self.affinity < self.cpus


@dataclass(frozen=True, slots=True)
class BindingPlan:
    """Which node(s), CPUs and memory policy to bind to, and why.

    An empty ``cpus`` means "do not bind": ``reasons`` then says why. Each reason is a
    :class:`~gpunuma.core.reasons.Reason`: its English text, with a ``code`` and ``values``.
    """

    gpus: tuple[int, ...]
    nodes: tuple[int, ...]
    cpus: CpuSet
    memory_policy: MemoryPolicy
    memory_nodes: tuple[int, ...]
    reasons: tuple[str, ...]
    policy: Policy = Policy()
    gpu_labels: tuple[str, ...] = ()
    #: The RDMA NICs nearest the process's GPU(s) (see :mod:`gpunuma.core.model`), for NCCL and UCX.
    nics: tuple[Nic, ...] = ()
    #: The threads a child should run (``OMP_NUM_THREADS``) when the CPUs are shared with other GPUs' processes
    #: (node and socket scopes): this process's part of them. None: one per planned CPU.
    threads: int | None = None
    #: The CPUs of a child's OpenMP places (``OMP_PLACES``): this process's own block of whole cores when other
    #: GPUs' processes are planned on the same CPUs; None: every planned CPU (a process alone on them); empty
    #: where gpunuma cannot know what else runs there (an explicit node): no places and no ``OMP_PROC_BIND``.
    places: CpuSet | None = None
    #: The GPUs whose own CPU node is not among ``nodes`` (the cgroup or the reserve moved the binding to the nearest
    #: node, or a node was named explicitly): bound, but not local to them. Empty: every GPU's own node is planned.
    elsewhere: tuple[int, ...] = ()

    @property
    def binds(self) -> bool:
        """Whether this plan changes anything."""
        return bool(self.cpus)

    @property
    def reason_codes(self) -> tuple[str, ...]:
        """The code of each reason, in order (``note`` for text an adapter gave without one)."""
        return codes(self.reasons)

    @property
    def numa_node(self) -> int | None:
        """The single node planned, or None when there is none or several."""
        return self.nodes[0] if len(self.nodes) == 1 else None

    def summary(self) -> str:
        """One line: ``node 1, CPUs 56-111,168-223, memory preferred 1``."""
        if not self.binds:
            return "no binding: " + (self.reasons[-1] if self.reasons else "nothing to bind")
        nodes = node_list(self.nodes)
        memory = self.memory_policy.value
        if self.memory_policy is not MemoryPolicy.NONE:
            memory += " " + node_list(self.memory_nodes)
        return f"NUMA node {nodes}, CPUs {self.cpus.to_list()}, memory {memory}"

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape of ``gpunuma plan --json`` (documented in docs/cli.md)."""
        return {
            "gpus": list(self.gpus),
            "numa_node": self.numa_node if len(self.nodes) <= 1 else list(self.nodes),
            "numa_nodes": list(self.nodes),
            "cpus": self.cpus.to_list(),
            "memory_policy": self.memory_policy.value,
            "memory_nodes": list(self.memory_nodes),
            "binds": self.binds,
            "cpu_scope": self.policy.cpu_scope.value,
            "share": str(self.policy.share) if self.policy.share is not None else None,
            "reserve": self.policy.reserve,
            "nics": [nic_dict(nic) for nic in self.nics],
            "threads": self.threads if self.binds else None,
            "places": (self.cpus if self.places is None else self.places).to_list() if self.binds else None,
            "elsewhere": list(self.elsewhere),
            "reasons": list(self.reasons),
            "reason_details": details(self.reasons),
        }

    def env(self) -> dict[str, str]:
        """What a child process of this plan should see in its environment (see :func:`child_env`)."""
        return child_env(self.cpus if self.binds else CpuSet(), self.nodes, self.nics, self.threads, self.places)
