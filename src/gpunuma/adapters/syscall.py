"""Memory policy through raw syscalls, without libnuma, and the binder that uses it.

:class:`SyscallBinder` is the :class:`~gpunuma.adapters.process.ProcessBinder` with :class:`SyscallMemory`:
``set_mempolicy`` through ``libc.syscall`` (x86_64 and aarch64 numbers), the fallback when libnuma is absent.
"""

from __future__ import annotations

import os
from typing import Any

from gpunuma.adapters.mempolicy import MempolicySyscalls
from gpunuma.adapters.process import ProcessBinder
from gpunuma.core.kernel_policy import Mempolicy, Mode


class SyscallMemory:
    """A :class:`~gpunuma.adapters.process.MemorySetter` through ``set_mempolicy``; pickles as a fresh one."""

    name = "syscall"

    def __init__(self) -> None:
        self.syscalls = MempolicySyscalls()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # The ctypes handle cannot be pickled: a child process rebuilds it.
        return SyscallMemory, ()

    def set(self, mode: Mode, nodes: tuple[int, ...]) -> None:
        self.syscalls.set(Mempolicy(mode, nodes))

    def migrate(self, old: tuple[int, ...], new: tuple[int, ...]) -> int:
        """``migrate_pages(getpid(), old, new)``: the pages that could not be moved; ``OSError`` on refusal."""
        return self.syscalls.migrate_pages(os.getpid(), old, new)


class SyscallBinder(ProcessBinder):
    """The process binder with raw syscalls setting the memory policy; the fallback when libnuma is absent.

    ``notes`` are added to every report (:func:`gpunuma.compose.default_binder` says why libnuma was not
    used); the other arguments are :class:`ProcessBinder`'s.
    """

    name = "syscall"

    def __init__(
        self,
        *,
        proc_root: str = "/proc",
        sys_root: str = "/sys",
        notes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(SyscallMemory(), proc_root=proc_root, sys_root=sys_root, notes=notes)
