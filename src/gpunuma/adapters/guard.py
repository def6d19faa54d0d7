"""One bind at a time per process, and no Python signal handler in the middle of one.

CPython runs a signal's Python handler in the main thread between two bytecodes. A ``KeyboardInterrupt``
(SIGINT) or the ``SystemExit`` a server's SIGTERM handler raises could otherwise stop a bind with some
threads on the new CPUs and some on the old. While a bind runs in the main thread, every signal with a
Python handler gets one that only records it; when the bind is done (or undone) the handlers are put
back and the recorded signals raised again, in order, so they act as if they had come just after.
Off the main thread no handler can run in the binding thread, so only the lock applies.

Two threads binding at once would interleave their per-thread affinity writes: the lock makes the
second wait for the first. It is re-entrant, so a binder that calls another does not deadlock.
"""

from __future__ import annotations

import _signal as signal
import _thread
from types import FrameType, TracebackType

_LOCK = _thread.RLock()


class BindGuard:
    """``with BindGuard(): ...``: hold the process's bind lock and defer Python signal handlers meanwhile."""

    def __init__(self) -> None:
        self._saved: list[tuple[int, object]] = []
        self._pending: list[int] = []

    def __enter__(self) -> BindGuard:
        _LOCK.acquire()
        try:
            self._defer()
        except BaseException:
            self._restore()
            _LOCK.release()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            self._restore()
        finally:
            _LOCK.release()

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self._pending.append(signum)

    def _defer(self) -> None:
        # _signal, the C module behind ``signal``: the same calls on plain ints, without ``enum``.

        for signum in sorted(signal.valid_signals()):
            try:
                handler = signal.getsignal(signum)
            except (OSError, ValueError):
                continue
            if not callable(handler) or handler in (signal.SIG_DFL, signal.SIG_IGN):
                continue  # the kernel's default (or nothing): no Python code runs mid-bind
            try:
                signal.signal(signum, self._record)
            except ValueError:
                return  # not the main thread: Python handlers never run in this thread
            except OSError:
                continue
            self._saved.append((signum, handler))

    def _restore(self) -> None:
        if not self._saved:
            return

        for signum, handler in reversed(self._saved):
            signal.signal(signum, handler)
        self._saved.clear()
        while self._pending:
            # The original handler runs as the signal is raised, in this thread: it may raise here.
            signal.raise_signal(self._pending.pop(0))
