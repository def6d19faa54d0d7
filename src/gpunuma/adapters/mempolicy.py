"""The memory-policy syscalls (get/set_mempolicy, migrate_pages) through ``libc.syscall``.

Used directly by the syscall binder, and by every binder to read a policy back. Failures
raise the builtin ``OSError`` with the kernel's errno; binders translate them.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterable
from pathlib import Path

from gpunuma.adapters.procfs import read_text
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.kernel_policy import Mempolicy, Mode
from gpunuma.errors import BindError, CpuSetParseError, LibraryNotFoundError

#: Syscall numbers from the kernel headers, by machine (``uname -m``).
SYSCALL_NUMBERS: dict[str, dict[str, int]] = {
    "x86_64": {"set_mempolicy": 238, "get_mempolicy": 239, "migrate_pages": 256},
    "aarch64": {"set_mempolicy": 237, "get_mempolicy": 236, "migrate_pages": 238},
}
SYSCALL_NUMBERS["amd64"] = SYSCALL_NUMBERS["x86_64"]
SYSCALL_NUMBERS["arm64"] = SYSCALL_NUMBERS["aarch64"]

#: Mode flags (STATIC_NODES, RELATIVE_NODES, NUMA_BALANCING) live above bit 12; get_mempolicy returns them.
_MODE_MASK = 0x1FFF
_BITS_PER_WORD = 64


def _words_for(max_node: int) -> int:
    # The kernel's get_nodes() decrements maxnode (reads only maxnode-1 bits) and get_mempolicy
    # wants maxnode >= nr_node_ids: allocate at least 1024 bits, with a spare bit at the top.
    return max(16, -(-(max_node + 2) // _BITS_PER_WORD))


def possible_max_node(sys_root: str | Path = "/sys") -> int:
    """The highest possible node id (``/sys/devices/system/node/possible``), 0 when unreadable."""
    try:
        text = read_text(f"{sys_root}/devices/system/node/possible")
        nodes = CpuSet.parse_list(text) if text is not None else CpuSet()
    except (OSError, CpuSetParseError):
        return 0
    return max(nodes.ids) if nodes else 0


def known_nodes(sys_root: str | Path = "/sys") -> frozenset[int] | None:
    """The node ids the kernel knows: ``node/online``, else ``node/possible``; None when neither is readable.

    Tells a node that does not exist (a wrong plan) from one a cpuset or seccomp refuses
    (``set_mempolicy`` answers EINVAL or EPERM for both).
    """
    for name in ("online", "possible"):
        try:
            text = read_text(f"{sys_root}/devices/system/node/{name}")
        except OSError:
            continue
        if text is None:
            continue
        try:
            return CpuSet.parse_list(text).ids
        except CpuSetParseError:
            continue
    return None


class MempolicySyscalls:
    """get_mempolicy / set_mempolicy / migrate_pages for the calling thread, via raw syscalls.

    ``libc`` is a ``CDLL`` loaded with ``use_errno=True`` (default: this process's C library); ``machine``
    picks the syscall numbers (default ``os.uname().machine``, what ``platform.machine()`` returns).
    """

    def __init__(self, *, libc: ctypes.CDLL | None = None, machine: str | None = None, max_node: int | None = None):
        arch = machine or os.uname().machine
        numbers = SYSCALL_NUMBERS.get(arch)
        if numbers is None:
            raise BindError(f"no memory-policy syscall numbers for architecture {arch!r} (x86_64 and aarch64 known)")
        self._numbers = numbers
        self.machine = arch
        if libc is None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
            except OSError as err:
                raise LibraryNotFoundError(f"cannot load the C library for raw syscalls: {err}") from err
        self._syscall = libc.syscall
        self._syscall.restype = ctypes.c_long
        self._words = _words_for(possible_max_node() if max_node is None else max_node)

    @property
    def maxnode(self) -> int:
        """The ``maxnode`` argument passed to the kernel (bits in the mask buffers)."""
        return self._words * _BITS_PER_WORD

    def _mask(self, nodes: Iterable[int] = ()) -> ctypes.Array[ctypes.c_ulong]:
        wanted = tuple(nodes)
        for node in wanted:
            if node < 0 or node >= self.maxnode - 1:
                raise OSError(errno.EINVAL, f"node {node} is beyond the {self.maxnode - 1}-bit node mask")
        return (ctypes.c_ulong * self._words)(*CpuSet.of(wanted).to_words(self._words, _BITS_PER_WORD))

    def _call(self, name: str, *args: object) -> int:
        ctypes.set_errno(0)
        result = self._syscall(ctypes.c_long(self._numbers[name]), *args)
        if result < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"{name}: {os.strerror(code)}")
        return int(result)

    def get(self) -> Mempolicy:
        """The calling thread's policy (``get_mempolicy(&mode, mask, maxnode, NULL, 0)``)."""
        mode = ctypes.c_int(0)
        mask = self._mask()
        self._call("get_mempolicy", ctypes.byref(mode), mask, ctypes.c_ulong(self.maxnode), None, ctypes.c_ulong(0))
        nodes = CpuSet.from_words(mask[:], _BITS_PER_WORD)
        return Mempolicy(Mode(mode.value & _MODE_MASK), tuple(nodes), mode.value & ~_MODE_MASK)

    def set(self, policy: Mempolicy) -> None:
        """Set the calling thread's policy; threads created afterwards and exec'd children inherit it."""
        if policy.mode in (Mode.DEFAULT, Mode.LOCAL) and not policy.nodes:
            self._call("set_mempolicy", ctypes.c_int(policy.mode | policy.flags), None, ctypes.c_ulong(0))
            return
        mask = self._mask(policy.nodes)
        self._call("set_mempolicy", ctypes.c_int(policy.mode | policy.flags), mask, ctypes.c_ulong(self.maxnode))

    def migrate_pages(self, pid: int, old: Iterable[int], new: Iterable[int]) -> int:
        """Move ``pid``'s pages from nodes ``old`` to ``new``; returns how many pages could not be moved."""
        return self._call(
            "migrate_pages",
            ctypes.c_int(pid),
            ctypes.c_ulong(self.maxnode),
            self._mask(old),
            self._mask(new),
        )
