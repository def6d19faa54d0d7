"""Launcher that prefixes a command with ``numactl`` so the child starts bound.

Used where the process to bind is started by us; in-process binders cover the rest
(a Ray actor, a process someone else started).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence

from gpunuma.core.cpuset import node_list
from gpunuma.core.kernel_policy import PREFERRED_MANY_SINCE, Mode, planned_policy, release_at_least
from gpunuma.core.model import Topology
from gpunuma.core.plan import BindingPlan
from gpunuma.errors import LibraryNotFoundError

logger = logging.getLogger(__name__)

#: numactl's option for each mode the plan may ask for (--preferred-many: numactl 2.0.15+, Linux 5.15+).
_MEMORY_OPTIONS = {Mode.BIND: "--membind", Mode.PREFERRED: "--preferred", Mode.PREFERRED_MANY: "--preferred-many"}


def _knows(numactl: str, option: str) -> bool:
    """Whether ``numactl``'s usage text lists ``option`` (it prints it for any unknown flag); False if it cannot run."""
    try:
        done = subprocess.run([numactl, "--help"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return option in done.stdout + done.stderr


class NumactlLauncher:
    """Builds ``numactl --physcpubind=... --membind=... -- CMD`` argv (a list, never a shell string).

    With ``topology``, a plan whose CPUs are exactly its nodes' CPUs uses ``--cpunodebind``.
    A "preferred" plan over several nodes needs ``--preferred-many`` (Linux 5.15+, numactl 2.0.15+):
    ``preferred_many=None`` checks both once (the kernel release, numactl's usage text) and otherwise
    prefers the first planned node with a warning, as the in-process binders do; True or False decides.
    """

    name = "numactl"

    def __init__(
        self, numactl: str = "numactl", *, topology: Topology | None = None, preferred_many: bool | None = None
    ) -> None:
        self.numactl = numactl
        self.topology = topology
        self.preferred_many = preferred_many

    def _cpu_option(self, plan: BindingPlan) -> str:
        if self.topology is not None and plan.nodes:
            node_cpus = [self.topology.node(n) for n in plan.nodes]
            if all(node is not None for node in node_cpus):
                union = frozenset().union(*(node.cpus.ids for node in node_cpus if node is not None))
                if union == plan.cpus.ids:
                    return f"--cpunodebind={node_list(plan.nodes)}"
        return f"--physcpubind={plan.cpus.to_list()}"

    def _memory_option(self, plan: BindingPlan) -> list[str]:
        wanted, narrowed = planned_policy(plan.memory_policy, plan.memory_nodes, preferred_many=self._many)
        if wanted is None:
            return []
        if narrowed is not None:
            logger.warning("%s", narrowed)
        return [f"{_MEMORY_OPTIONS[wanted.mode]}={node_list(wanted.nodes)}"]

    def _many(self) -> bool:
        """Whether this kernel and this numactl take ``--preferred-many`` (asked once per launcher)."""
        if self.preferred_many is None:
            self.preferred_many = release_at_least(os.uname().release, PREFERRED_MANY_SINCE) and _knows(
                self.numactl, "--preferred-many"
            )
        return self.preferred_many

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
