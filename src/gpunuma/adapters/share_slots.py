"""Host-local share slots: which part of a GPU's CPUs each process sharing that GPU takes.

Processes that share one GPU (fractional-GPU Ray actors) each need a distinct part ``i`` of ``n``,
and nothing tells them apart. Each process claims the lowest free slot by taking an exclusive
``flock`` on ``<directory>/<key>.<i>.lock`` and keeping the file open for the rest of its life: the
kernel drops the lock when the process exits (or is killed), so a slot is never leaked to a dead
process and never needs cleaning up. The files are empty and stay; the locks are what count.
"""

from __future__ import annotations

import fcntl
import os
import tempfile

from gpunuma.errors import BindError

#: Slots this process holds, by (directory, key, count): the slot and its open descriptor.
_HELD: dict[tuple[str, str, int], tuple[int, int]] = {}


def default_directory() -> str:
    """``$TMPDIR/gpunuma-shares-<uid>``: one folder per user, so users never share (or block) slots."""
    return os.path.join(tempfile.gettempdir(), f"gpunuma-shares-{os.getuid()}")


def _safe(key: str) -> str:
    return "".join(char if char.isalnum() or char in "-_." else "_" for char in key)


class ShareSlots:
    """Claims slot ``i`` of ``n`` for this process under ``directory``, held until the process exits."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory if directory is not None else default_directory()

    def __repr__(self) -> str:
        return f"ShareSlots(directory={self.directory!r})"

    def claim(self, key: str, count: int) -> int | None:
        """The slot this process holds for ``key`` (the same one on every call), else the lowest free one
        of ``count``; None when all ``count`` are held by other processes.

        Raises :class:`~gpunuma.errors.BindError` when the folder cannot be made or a lock file opened.
        """
        held = _HELD.get((self.directory, key, count))
        if held is not None:
            return held[0]
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        except OSError as err:
            raise BindError(f"cannot make the share-slot folder {self.directory}: {err}") from err
        for slot in range(count):
            path = os.path.join(self.directory, f"{_safe(key)}.{count}.{slot}.lock")
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as err:
                raise BindError(f"cannot open the share-slot lock {path}: {err}") from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            # Kept open on purpose: the lock lasts as long as this process.
            _HELD[(self.directory, key, count)] = (slot, fd)
            return slot
        return None
