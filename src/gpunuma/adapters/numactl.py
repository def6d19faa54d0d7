"""Launcher that prefixes a command with ``numactl`` so the child starts bound.

Used where the process to bind is started by us; in-process binders cover the rest
(a Ray actor, a process someone else started).
"""

from __future__ import annotations

import shutil

from gpunuma.core.cpuset import node_list
from gpunuma.core.kernel_policy import Mode, kernel_policy
from gpunuma.errors import LibraryNotFoundError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from gpunuma.core.model import Topology
    from gpunuma.core.plan import BindingPlan

#: numactl's option for each mode the plan may ask for (--preferred-many: numactl 2.0.15+, Linux 5.15+).
_MEMORY_OPTIONS = {Mode.BIND: "--membind", Mode.PREFERRED: "--preferred", Mode.PREFERRED_MANY: "--preferred-many"}


class NumactlLauncher:
    """Builds ``numactl --physcpubind=... --membind=... -- CMD`` argv (a list, never a shell string).

    With ``topology``, a plan whose CPUs are exactly its nodes' CPUs uses ``--cpunodebind``.
    """

    name = "numactl"

    def __init__(self, numactl: str = "numactl", *, topology: Topology | None = None) -> None:
        self.numactl = numactl
        self.topology = topology

    def _cpu_option(self, plan: BindingPlan) -> str:
        if self.topology is not None and plan.nodes:
            node_cpus = [self.topology.node(n) for n in plan.nodes]
            if all(node is not None for node in node_cpus):
                union = frozenset().union(*(node.cpus.ids for node in node_cpus if node is not None))
                if union == plan.cpus.ids:
                    return f"--cpunodebind={node_list(plan.nodes)}"
        return f"--physcpubind={plan.cpus.to_list()}"

    @staticmethod
    def _memory_option(plan: BindingPlan) -> list[str]:
        wanted = kernel_policy(plan.memory_policy, plan.memory_nodes)
        if wanted is None:
            return []
        return [f"{_MEMORY_OPTIONS[wanted.mode]}={node_list(wanted.nodes)}"]

    def command(self, plan: BindingPlan, argv: Sequence[str]) -> list[str]:
        """The argv that runs ``argv`` bound per ``plan``; ``argv`` unchanged when the plan does not bind."""
        if not plan.binds:
            return list(argv)
        program = shutil.which(self.numactl)
        if program is None:
            raise LibraryNotFoundError(
                f"{self.numactl!r} is not on PATH; install it: apt-get install numactl / dnf install numactl"
            )
        return [self.numactl, self._cpu_option(plan), *self._memory_option(plan), "--", *argv]
