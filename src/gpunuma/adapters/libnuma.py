"""Memory policy through libnuma (``libnuma.so.1``) loaded with ctypes, and the binder that uses it.

:class:`LibnumaBinder` is the :class:`~gpunuma.adapters.process.ProcessBinder` with :class:`LibnumaMemory`.
"""

from __future__ import annotations

import _thread
import ctypes
import errno
import os
from collections.abc import Callable
from typing import Any, TypeVar

from gpunuma.adapters import guard
from gpunuma.adapters.mempolicy import MempolicySyscalls
from gpunuma.adapters.process import ProcessBinder, errno_word
from gpunuma.core.kernel_policy import Mempolicy, Mode
from gpunuma.errors import BindError, LibraryNotFoundError

_R = TypeVar("_R")
_INSTALL_HINT = "apt-get install libnuma1 / dnf install numactl-libs"


class _Bitmask(ctypes.Structure):
    """``struct bitmask { unsigned long size; unsigned long *maskp; }`` from numa.h."""

    _fields_ = [("size", ctypes.c_ulong), ("maskp", ctypes.POINTER(ctypes.c_ulong))]


_BITMASK_P = ctypes.POINTER(_Bitmask)

#: The libnuma calls used, with their numa.h signatures: name -> (restype, argtypes).
_SIGNATURES: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "numa_available": (ctypes.c_int, ()),
    "numa_max_node": (ctypes.c_int, ()),
    "numa_allocate_nodemask": (_BITMASK_P, ()),
    "numa_bitmask_setbit": (_BITMASK_P, (_BITMASK_P, ctypes.c_uint)),
    "numa_bitmask_free": (None, (_BITMASK_P,)),
    "numa_set_membind": (None, (_BITMASK_P,)),
    "numa_set_preferred": (None, (ctypes.c_int,)),
    "numa_migrate_pages": (ctypes.c_int, (ctypes.c_int, _BITMASK_P, _BITMASK_P)),
}


#: While a call runs with descriptor 2 redirected: the saved stderr, the sink, and the calling thread.
_redirected: tuple[int, int, int] | None = None


def quietly(call: Callable[[], _R]) -> tuple[_R, str]:
    """Run a libnuma ``call`` with file descriptor 2 pointed at a private buffer; its result and what it printed.

    libnuma reports errors by printing them (``numa_error``/``numa_warn`` write ``set_mempolicy: Invalid
    argument`` to stderr) and a library must not write on its user's stderr. The window is the call
    itself, under the bind lock with signals deferred (one redirection at a time, never left in place by a
    KeyboardInterrupt); what another thread writes in it is written back after a call that printed nothing
    of its own (errno 0), so nothing is lost. A child forked meanwhile gets its stderr back.
    """
    with guard.lock(), guard.DeferredSignals():
        return _quietly(call)


def _quietly(call: Callable[[], _R]) -> tuple[_R, str]:
    global _redirected
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to protect
        return call(), ""
    try:
        sink = os.memfd_create("gpunuma-libnuma", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        os.close(saved)
        return call(), ""
    try:
        try:
            _redirected = (saved, sink, _thread.get_ident())
            os.dup2(sink, 2)
            ctypes.set_errno(0)
            result = call()
            failed = ctypes.get_errno() != 0
        finally:
            os.dup2(saved, 2)
            _redirected = None
        size = os.lseek(sink, 0, os.SEEK_END)
        printed = os.pread(sink, min(size, 1 << 16), 0) if size else b""
    finally:
        os.close(sink)
        os.close(saved)
    if printed and not failed:
        os.write(2, printed)
        printed = b""
    return result, printed.decode("utf-8", "replace").strip()


def _after_fork_in_child() -> None:
    global _redirected
    window, _redirected = _redirected, None
    if window is not None and window[2] != _thread.get_ident():  # another thread's call: not in this child
        saved, sink, _ = window
        os.dup2(saved, 2)
        os.close(saved)
        os.close(sink)


os.register_at_fork(after_in_child=_after_fork_in_child)


def load_libnuma(library: str) -> ctypes.CDLL:
    """Load ``library`` with every used function's signature declared; checks ``numa_available()``."""
    try:
        lib, _ = quietly(lambda: ctypes.CDLL(library, use_errno=True))  # its constructor may warn
    except OSError as err:
        raise LibraryNotFoundError(f"cannot load {library} ({err}); install it: {_INSTALL_HINT}") from err
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            function = getattr(lib, name)
        except AttributeError as err:
            raise LibraryNotFoundError(f"{library} lacks {name}(); install libnuma 2.0+: {_INSTALL_HINT}") from err
        function.restype = restype
        function.argtypes = argtypes
    available, _ = quietly(lib.numa_available)
    if available < 0:
        raise BindError(
            f"{library} says NUMA is unavailable (numa_available() = -1): get_mempolicy is refused "
            "(ENOSYS, or EPERM under a seccomp profile without CAP_SYS_NICE)"
        )
    return lib


class LibnumaMemory:
    """A :class:`~gpunuma.adapters.process.MemorySetter` through libnuma; MPOL_PREFERRED_MANY through the raw syscall.

    Loads ``library`` (raises :class:`LibraryNotFoundError` when it is missing); pickles by reloading it.
    """

    name = "libnuma"

    def __init__(self, library: str = "libnuma.so.1") -> None:
        self.library = library
        self._lib = load_libnuma(library)
        self.syscalls = MempolicySyscalls(max_node=max(self._lib.numa_max_node(), 0))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # A CDLL handle cannot be pickled: a child process reloads the library.
        return LibnumaMemory, (self.library,)

    def set(self, mode: Mode, nodes: tuple[int, ...]) -> None:
        if mode is Mode.PREFERRED_MANY:
            self.syscalls.set(Mempolicy(mode, nodes))
            return
        # libnuma's void setters report failure only through errno (and a line on stderr, caught by quietly).
        if mode is Mode.BIND:
            code, printed = quietly(lambda: self._set_membind(nodes))
        elif mode is Mode.PREFERRED:
            code, printed = quietly(lambda: self._set_preferred(nodes[0]))
        else:
            raise OSError(errno.EINVAL, f"libnuma binder does not set {mode.word}")
        if code:
            # errno may be left over from an internal call that did not matter: the read-back decides.
            held = self.syscalls.get()
            if held.mode != mode or held.nodes != tuple(nodes):
                said = f" ({printed.splitlines()[-1][:200]})" if printed else ""
                raise OSError(code, f"libnuma: {errno_word(code)}{said}")

    def migrate(self, old: tuple[int, ...], new: tuple[int, ...]) -> int:
        """``numa_migrate_pages(getpid(), old, new)``: the pages that could not be moved; ``OSError`` on refusal."""

        def call() -> tuple[int, int]:
            source, target = self._mask(old), self._mask(new)
            try:
                left = self._lib.numa_migrate_pages(os.getpid(), source, target)
                return left, ctypes.get_errno()
            finally:
                self._lib.numa_bitmask_free(source)
                self._lib.numa_bitmask_free(target)

        (left, code), printed = quietly(call)
        if left < 0:
            said = f" ({printed.splitlines()[-1][:200]})" if printed else ""
            raise OSError(code, f"numa_migrate_pages: {errno_word(code)}{said}")
        return left

    def _mask(self, nodes: tuple[int, ...]) -> Any:
        """A libnuma node mask holding ``nodes``; the caller frees it."""
        mask = self._lib.numa_allocate_nodemask()
        if not mask:
            raise OSError(errno.ENOMEM, "numa_allocate_nodemask returned NULL")
        for node in nodes:
            self._lib.numa_bitmask_setbit(mask, node)
        return mask

    def _set_membind(self, nodes: tuple[int, ...]) -> int:
        mask = self._mask(nodes)
        try:
            self._lib.numa_set_membind(mask)
            return ctypes.get_errno()
        finally:
            self._lib.numa_bitmask_free(mask)

    def _set_preferred(self, node: int) -> int:
        self._lib.numa_set_preferred(node)
        return ctypes.get_errno()


class LibnumaBinder(ProcessBinder):
    """The process binder with libnuma setting the memory policy (the default binder).

    ``library`` is the shared object to load; the other arguments are :class:`ProcessBinder`'s.
    Raises :class:`LibraryNotFoundError` when libnuma is missing.
    """

    name = "libnuma"

    def __init__(
        self,
        library: str = "libnuma.so.1",
        *,
        proc_root: str = "/proc",
        sys_root: str = "/sys",
    ) -> None:
        super().__init__(LibnumaMemory(library), proc_root=proc_root, sys_root=sys_root)
        self.library = library
