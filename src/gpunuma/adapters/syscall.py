"""Binder through raw syscalls, without libnuma: ``sched_setaffinity`` per thread and
``set_mempolicy`` through ``libc.syscall`` (x86_64 and aarch64 numbers).

Memory policy is per thread: the calling thread's policy is set, threads created afterwards and
exec'd children inherit it, threads that already existed keep theirs, and pages already touched
stay where they are unless ``migrate_pages=True``.
"""

from __future__ import annotations

from typing import Any

from gpunuma.adapters.mempolicy import MempolicySyscalls
from gpunuma.adapters.process import apply_whole_process
from gpunuma.core.kernel_policy import Mempolicy, Mode
from gpunuma.core.plan import BindingPlan
from gpunuma.core.report import BindingReport


class _SyscallSetter:
    def __init__(self, syscalls: MempolicySyscalls) -> None:
        self._syscalls = syscalls

    def set(self, mode: Mode, nodes: tuple[int, ...]) -> None:
        self._syscalls.set(Mempolicy(mode, nodes))


class SyscallBinder:
    """Binds the whole calling process with raw syscalls; the fallback when libnuma is absent.

    ``notes`` are added to every report (``default_binder`` says why libnuma was not used);
    ``proc_root``/``sys_root`` are where threads are listed and existing nodes read.
    """

    name = "syscall"

    def __init__(
        self,
        *,
        migrate_pages: bool = False,
        proc_root: str = "/proc",
        sys_root: str = "/sys",
        notes: tuple[str, ...] = (),
    ) -> None:
        self.migrate_pages = migrate_pages
        self.proc_root = proc_root
        self.sys_root = sys_root
        self.notes = tuple(notes)
        self._syscalls = MempolicySyscalls()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # The ctypes handle cannot be pickled: a child process rebuilds it.
        return _rebuild, (self.migrate_pages, self.proc_root, self.sys_root, self.notes)

    def apply(self, plan: BindingPlan) -> BindingReport:
        """Bind every thread's CPUs and this thread's memory policy; restore all and raise BindError on failure."""
        return apply_whole_process(
            plan,
            method=self.name,
            setter=_SyscallSetter(self._syscalls),
            syscalls=self._syscalls,
            proc_root=self.proc_root,
            sys_root=self.sys_root,
            migrate=self.migrate_pages,
            notes=self.notes,
        )


def _rebuild(migrate_pages: bool, proc_root: str, sys_root: str, notes: tuple[str, ...]) -> SyscallBinder:
    return SyscallBinder(migrate_pages=migrate_pages, proc_root=proc_root, sys_root=sys_root, notes=notes)
