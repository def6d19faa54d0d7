"""Host-local share slots: which part of a GPU's CPUs each process sharing that GPU takes.

Processes that share one GPU (fractional-GPU Ray actors) each need a distinct part ``i`` of ``n``,
and nothing tells them apart. Each process claims the lowest free slot by taking an exclusive
``flock`` on ``<directory>/<key>.<n>.<i>.lock`` and keeping the file open for the rest of its life: the
kernel drops the lock when the process exits (or is killed), so a slot is never leaked to a dead
process and never needs cleaning up. The files are empty and stay; the locks are what count.

The folder is private to the user: ``$XDG_RUNTIME_DIR/gpunuma`` where the session has one, else
``gpunuma-<uid>`` in the temporary folder (``$TMPDIR``, ``/tmp``). It is made with mode ``0o700``, and used only
when it is a real folder (not a link), owned by this user, with no permission for anyone else: a folder another
user made first could otherwise decide where root creates files, or hold the locks so that processes bind
without a share and overlap. A folder that fails is a :class:`~gpunuma.errors.BindError`, never used; lock
files are opened without following links (``O_NOFOLLOW``) and are not inherited by programs this process runs.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile

from gpunuma.errors import BindError
from gpunuma.settings import runtime_directory

#: Slots this process holds, by (directory, key, count): the slot and its open descriptor.
_HELD: dict[tuple[str, str, int], tuple[int, int]] = {}
#: The most slots one GPU is shared into (Ray's smallest GPU fraction is 0.0001; one lock file per slot tried).
MAX_SLOTS = 1024
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def default_directory() -> str:
    """``$XDG_RUNTIME_DIR/gpunuma`` (the session's private folder) when set, else ``$TMPDIR/gpunuma-<uid>``."""
    runtime = runtime_directory()
    if runtime is not None:
        return os.path.join(runtime, "gpunuma")
    return os.path.join(tempfile.gettempdir(), f"gpunuma-{os.geteuid()}")


def _safe(key: str) -> str:
    return "".join(char if char.isalnum() or char in "-_." else "_" for char in key)


def open_private_folder(path: str) -> int:
    """A descriptor of the folder ``path``, made with mode ``0o700`` when missing, once it is checked to be this
    user's alone: a real folder (not a link), owned by this user, without group or other permissions.

    The checks are made on the open folder (``O_NOFOLLOW``, then ``fstat``), and files are then opened relative
    to it, so swapping the folder after the check changes nothing. Raises :class:`~gpunuma.errors.BindError`.
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as err:
        raise BindError(f"cannot make the share-slot folder {path}: {err.strerror or err}") from err
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        why = err.strerror or str(err)
        if err.errno in (errno.ELOOP, errno.ENOTDIR):  # O_DIRECTORY finds a link first: ENOTDIR
            why = "it is a symbolic link" if os.path.islink(path) else "it is not a folder"
        raise BindError(f"share-slot folder {path} refused: {why}") from err
    found = os.fstat(fd)
    problem = None
    if found.st_uid != os.geteuid():
        problem = f"it belongs to uid {found.st_uid}, not to this user (uid {os.geteuid()})"
    elif stat.S_IMODE(found.st_mode) & 0o077:
        problem = f"its mode {stat.S_IMODE(found.st_mode):#o} lets other users in (expected 0o700)"
    if problem is not None:
        os.close(fd)
        raise BindError(f"share-slot folder {path} refused: {problem}")
    return fd


class ShareSlots:
    """Claims slot ``i`` of ``n`` for this process under ``directory``, held until the process exits.

    ``directory`` (default :func:`default_directory`) must be this user's alone (:func:`open_private_folder`);
    its parent must exist.
    """

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory if directory is not None else default_directory()

    def __repr__(self) -> str:
        return f"ShareSlots(directory={self.directory!r})"

    def claim(self, key: str, count: int) -> int | None:
        """The slot this process holds for ``key`` (the same one on every call), else the lowest free one
        of ``count``; None when all ``count`` are held by other processes.

        Raises :class:`~gpunuma.errors.BindError` when the folder is refused or cannot be made, a lock file
        cannot be opened (a link in its place), or ``count`` is beyond :data:`MAX_SLOTS`.
        """
        held = _HELD.get((self.directory, key, count))
        if held is not None:
            return held[0]
        if not 1 <= count <= MAX_SLOTS:
            raise BindError(f"cannot share a GPU into {count} slots: 1 to {MAX_SLOTS}")
        folder = open_private_folder(self.directory)
        try:
            for slot in range(count):
                name = f"{_safe(key)}.{count}.{slot}.lock"
                try:
                    fd = os.open(name, _LOCK_FLAGS, 0o600, dir_fd=folder)
                except OSError as err:
                    why = "it is a symbolic link" if err.errno == errno.ELOOP else err.strerror or str(err)
                    raise BindError(f"cannot open the share-slot lock {self.directory}/{name}: {why}") from err
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                except OSError as err:  # ENOLCK: the folder's filesystem takes no locks
                    os.close(fd)
                    raise BindError(f"cannot lock {self.directory}/{name}: {err.strerror or err}") from err
                # Kept open on purpose: the lock lasts as long as this process.
                _HELD[(self.directory, key, count)] = (slot, fd)
                return slot
            return None
        finally:
            os.close(folder)
