"""The two ports around the pure planner. Adapters implement them; the core knows nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from gpunuma.core.model import Topology
from gpunuma.core.plan import Allowed, BindingPlan
from gpunuma.core.report import BindingReport


@runtime_checkable
class TopologySource(Protocol):
    """Reads a machine's topology and what this process is allowed to use."""

    name: str

    def read(self) -> Topology:
        """A snapshot of nodes, CPUs and GPUs."""
        ...

    def allowed(self) -> Allowed:
        """The cgroup cpuset, allowed memory nodes and current affinity of this process."""
        ...


@runtime_checkable
class Binder(Protocol):
    """Applies a plan to the whole calling process and reports what the kernel holds."""

    name: str

    def apply(self, plan: BindingPlan) -> BindingReport:
        """Bind every thread of this process per ``plan``; restore everything on failure."""
        ...


class RayLike(Protocol):
    """The one call gpunuma needs from Ray's API (``ray`` itself, or a stand-in in tests)."""

    def get_gpu_ids(self) -> Sequence[int | str]: ...


@runtime_checkable
class Launcher(Protocol):
    """Turns a plan and an argv into the argv that starts a bound child."""

    name: str

    def command(self, plan: BindingPlan, argv: Sequence[str]) -> list[str]:
        """The argv (a list, never a shell string) that launches ``argv`` bound per ``plan``."""
        ...
