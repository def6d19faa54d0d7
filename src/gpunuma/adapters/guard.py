"""One bind at a time per process, no Python signal handler in the middle of one, and a forked child that
starts afresh.

**The lock.** :func:`lock` is the process's bind lock, a re-entrant lock of the C ``_thread`` module, taken as
``with lock():`` and in no other way. CPython acquires a C lock and sets up the block's exit in one instruction
(``SETUP_WITH``; ``BEFORE_WITH`` under the exception table from 3.11), so no signal handler runs between the
two: the lock is held exactly while the block runs. A handler that raises while the thread waits for the lock
leaves without it. (``lock.acquire()`` followed by ``try:`` has an instant between the two.)

**Signals.** CPython runs a signal's Python handler in the main thread between two bytecodes. A
``KeyboardInterrupt`` (SIGINT) or the ``SystemExit`` a server's SIGTERM handler raises could otherwise stop a
bind with some threads on the new CPUs and some on the old. In the main thread, ``with DeferredSignals():``
puts a stand-in in place of every Python handler, then turns all of them on with one store: from that instant
until the block ends they only record their signal. Leaving turns them all off with one store, so from that
instant each stands for its original handler again, and puts the originals back; a signal that comes
meanwhile meets its original handler or a stand-in that passes it on (putting every original back first),
and its exception, if any, waits until all are back. Then the recorded signals are handed to their handlers,
in order, as if they had come just after the block. A stand-in can outlive its block only when a second
signal comes while the first one's exception is being caught; it passes its signals on and puts the
originals back when one comes, and the next bind puts them back too.

Blocking the signals with ``signal.pthread_sigmask`` instead would not do: the mask is per thread, so the
kernel hands a process-directed signal to another thread, whose C handler still asks the main thread to run
the Python one at its next bytecode. Off the main thread no Python handler runs in the binding thread, and
only the lock applies.

**Fork.** A child forked while another thread holds the lock or defers signals has neither that thread nor
the end of its block: after a fork the child gets a fresh lock (unless the forking thread itself holds it),
and handlers another thread deferred are put back, the signals they recorded (the parent's) dropped.
"""

from __future__ import annotations

import _signal  # the C module behind ``signal``: the same calls on plain ints, without ``enum``
import _thread
import os
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

#: A Python signal handler: (signum, frame) -> anything.
Handler = Callable[[int, FrameType | None], Any]

_lock = _thread.RLock()


def lock() -> _thread.RLock:
    """The process's bind lock; take it only as ``with lock():`` (see the module's docstring)."""
    return _lock


class _StandIn:
    """One signal's handler while a bind runs: records the signal while its deferral is on, else puts the
    original handler back and hands the signal to it."""

    __slots__ = ("deferral", "original", "signum")

    def __init__(self, deferral: _Deferral, signum: int, original: Handler) -> None:
        self.deferral = deferral
        self.signum = signum
        self.original = original

    def __call__(self, signum: int, frame: FrameType | None) -> Any:
        if self.deferral.on:
            self.deferral.pending.append(signum)
            return None
        _put_back_all(self.deferral)
        return self.original(signum, frame)


class _Deferral:
    """One block's stand-ins, the switch they share, the signals they recorded, and the thread it belongs to."""

    __slots__ = ("on", "owner", "pending", "stand_ins")

    def __init__(self) -> None:
        self.on = False
        self.owner = _thread.get_ident()
        self.pending: list[int] = []
        self.stand_ins: dict[int, _StandIn] = {}


#: The deferral of the block running in the main thread, if any (nested blocks defer nothing more).
_current: _Deferral | None = None


class DeferredSignals:
    """``with DeferredSignals(): ...``: Python signal handlers run when the block is over, not in the middle.

    In the main thread only; elsewhere, and inside another such block, it changes nothing.
    """

    def __init__(self) -> None:
        self._deferral: _Deferral | None = None

    def __enter__(self) -> DeferredSignals:
        global _current
        if _current is not None and _current.on:
            return self
        deferral = _Deferral()
        _current = deferral  # before any stand-in: a child forked from here on finds them all
        try:
            for signum in sorted(_signal.valid_signals()):
                try:
                    handler = _signal.getsignal(signum)
                except (OSError, ValueError):
                    continue
                if isinstance(handler, _StandIn):
                    handler = handler.original  # left by a bind that a second signal interrupted: see the docstring
                if not callable(handler) or handler in (_signal.SIG_DFL, _signal.SIG_IGN):
                    continue  # the kernel's default (or nothing): no Python code runs mid-bind
                stand_in = _StandIn(deferral, signum, handler)
                deferral.stand_ins[signum] = stand_in  # before it is in place: putting back finds it either way
                try:
                    _signal.signal(signum, stand_in)
                except ValueError:  # not the main thread: Python handlers never run in this one
                    del deferral.stand_ins[signum]
                    break
                except OSError:
                    del deferral.stand_ins[signum]
        except BaseException:
            # A signal whose stand-in was not in place yet was handled at once; the ones in place pass theirs on.
            if _current is deferral:
                _current = None
            _put_back_all(deferral)
            raise
        deferral.on = True  # one store: every stand-in records from this instant
        self._deferral = deferral
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        global _current
        deferral, self._deferral = self._deferral, None
        if deferral is None:
            return
        interrupted: BaseException | None = None
        while True:
            try:
                deferral.on = False  # one store: every stand-in passes its signal on from this instant
                if _current is deferral:
                    _current = None
                _put_back_all(deferral)
                break
            except BaseException as err:  # noqa: BLE001 - a signal that came meanwhile: raised once all are back
                interrupted = interrupted or err
        # Every original handler is in place: what comes from here on is handled as if no bind had run.
        try:
            _hand_over(deferral)
        finally:
            if interrupted is not None:
                raise interrupted  # it came after the recorded ones: it propagates, theirs as its context


def _hand_over(deferral: _Deferral) -> None:
    """Run each recorded signal's handler here, in order, as Python would have on its arrival.

    A handler that raises does not keep the next signal's from running: Python runs it while the exception
    unwinds, so the later exception propagates with the earlier one as its context.
    """
    pending = deferral.pending
    while pending:
        signum = pending.pop(0)
        try:
            deferral.stand_ins[signum].original(signum, None)
        except BaseException:
            if pending:
                _hand_over(deferral)
            raise


def _put_back(stand_in: _StandIn) -> None:
    if _signal.getsignal(stand_in.signum) is stand_in:
        _signal.signal(stand_in.signum, stand_in.original)


def _put_back_all(deferral: _Deferral) -> None:
    """Every original handler of ``deferral`` back in place (again: those already back are left as they are)."""
    for stand_in in deferral.stand_ins.values():
        _put_back(stand_in)


def _after_fork_in_child() -> None:
    global _lock, _current
    if _lock.acquire(blocking=False):  # free, or held by the forking thread itself, which will release it
        _lock.release()
    else:
        _lock = _thread.RLock()  # held by a thread this child does not have
    deferral = _current
    if deferral is not None and deferral.owner != _thread.get_ident():
        deferral.on = False
        deferral.pending.clear()
        _current = None
        _put_back_all(deferral)


os.register_at_fork(after_in_child=_after_fork_in_child)
