"""The ports around the pure planner. Adapters implement them; the core knows nothing else."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol, runtime_checkable

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.kernel_policy import Mempolicy
from gpunuma.core.model import Topology
from gpunuma.core.pages import Pages
from gpunuma.core.plan import Allowed, BindingPlan
from gpunuma.core.report import BindingReport, KernelView


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
class KernelFiles(Protocol):
    """The kernel files a topology source reads: this host's (the OS) or a machine's tree held in memory.

    Paths are strings under the tree's root, as the adapters join them. Links are followed as the kernel
    follows them, except that a tree held in memory never follows one that leaves it.
    """

    def read(self, path: str, limit: int = ..., *, cut: bool = False) -> str | None:
        """The text of a small file, None when it does not exist.

        Bounded: a file longer than ``limit`` bytes is a :class:`~gpunuma.errors.SysfsFormatError` (``cut``:
        its first ``limit`` bytes instead); a folder or a link loop in its place, or a refused read, a
        :class:`~gpunuma.errors.SysfsReadError` naming the file.
        """
        ...

    def listdir(self, path: str) -> list[str] | None:
        """The entry names of a folder, None when it does not exist or is no folder."""
        ...

    def readlink(self, path: str) -> str | None:
        """The target of a symbolic link, None when ``path`` is no link."""
        ...

    def exists(self, path: str) -> bool:
        """Whether ``path`` leads to a file or a folder (links followed)."""
        ...

    def is_dir(self, path: str) -> bool:
        """Whether ``path`` leads to a folder (links followed)."""
        ...

    def resolve(self, path: str) -> str | None:
        """``path`` with every link in it followed, None when this reader cannot say (a broken link, a loop)."""
        ...


@runtime_checkable
class Binder(Protocol):
    """Applies a plan to the whole calling process and reports what the kernel holds; afterwards reads the
    process back, puts the binding back on threads that drifted from it and moves pages to its nodes."""

    name: str

    def apply(self, plan: BindingPlan) -> BindingReport:
        """Bind every thread of this process per ``plan``; restore everything on failure."""
        ...

    def read_back(self) -> KernelView:
        """What the kernel holds for this process now: every thread's CPUs and the calling thread's memory policy."""
        ...

    def pages(self) -> Pages | None:
        """Where this process's pages are (its ``numa_maps``), None when unreadable."""
        ...

    def repair(self, tids: Collection[int], cpus: CpuSet, mempolicy: Mempolicy | None = None) -> tuple[int, ...]:
        """Set threads ``tids`` to ``cpus`` and, when given, the calling thread's policy; the threads set."""
        ...

    def migrate(self, nodes: Sequence[int]) -> int:
        """Move this process's pages to ``nodes`` (``migrate_pages(2)``); the pages that could not be moved."""
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
