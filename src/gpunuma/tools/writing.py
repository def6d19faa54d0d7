"""The one way gpunuma writes a file: whole or not at all, never through a link, never over what it did not make.

Every file gpunuma writes (``gpunuma snapshot -o FILE``, a simulated machine's tree rendered to a folder)
goes through :func:`replacing`. The bytes go to a fresh name in the target's folder, created with
``O_CREAT | O_EXCL | O_NOFOLLOW`` (so no file or link that someone else put there is ever opened,
followed or truncated), and only a complete file is renamed onto the target name (``os.replace``):
a reader sees the old file or the new one, never half of one. A failure, ``Ctrl-C`` or ``SIGTERM`` handled
as an exception removes the temporary file, and nothing else: no other name in the folder is ever deleted.

The target name may be free or hold a regular file (replaced: that is what writing ``-o FILE`` asks for).
A folder, a link or anything else there is a :class:`~gpunuma.errors.FileWriteError`, and nothing is
written: a link is not followed to overwrite its target, and it is not replaced by the file either.
The new file gets mode ``0o666`` less the umask, as ``open(path, "w")`` gives, unless ``mode`` says otherwise.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from gpunuma.errors import FileWriteError

#: Flags of the temporary file: a new name only (O_EXCL), never a link (O_NOFOLLOW), not inherited by exec.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: Fresh temporary names tried before giving up (each is 64 random bits: a clash means someone is guessing).
_ATTEMPTS = 16


def _in_the_way(folder: int, name: str, shown: str) -> None:
    """A :class:`FileWriteError` when ``name`` in ``folder`` is anything but free or a regular file."""
    try:
        found = os.lstat(name, dir_fd=folder)
    except FileNotFoundError:
        return
    except OSError as err:
        raise FileWriteError(shown, err.strerror or str(err)) from err
    if stat.S_ISDIR(found.st_mode):
        raise FileWriteError(shown, "a folder has that name")
    if stat.S_ISLNK(found.st_mode):
        raise FileWriteError(shown, "a symbolic link has that name (it is neither followed nor replaced)")
    if not stat.S_ISREG(found.st_mode):
        raise FileWriteError(shown, "something other than a regular file has that name")


def _temporary(folder: int, name: str, mode: int, shown: str) -> tuple[str, int]:
    """A new file beside ``name`` that no one else has opened: its name and a descriptor open for writing."""
    for _ in range(_ATTEMPTS):
        temporary = f".{name[:200]}.{os.urandom(8).hex()}.tmp"
        try:
            return temporary, os.open(temporary, _CREATE, mode, dir_fd=folder)
        except FileExistsError:
            continue
        except OSError as err:
            raise FileWriteError(shown, err.strerror or str(err)) from err
    raise FileWriteError(shown, f"no fresh temporary name after {_ATTEMPTS} tries")


@contextmanager
def replacing(path: str | os.PathLike[str], *, mode: int = 0o666) -> Iterator[BinaryIO]:
    """``with replacing(path) as handle: handle.write(...)``: ``path`` holds exactly what was written, or is
    left as it was when the block raises (the exception goes on; the temporary file is removed).

    ``mode`` is the new file's permission bits before the umask (``0o600``: readable by its owner only).
    Raises :class:`~gpunuma.errors.FileWriteError` when the file cannot be written or put in place
    (a folder or a link holds the name, a missing or read-only folder, a full disk).
    """
    shown = os.fspath(path)
    head, name = os.path.split(shown)
    if not name:
        raise FileWriteError(shown, "names a folder, not a file")
    try:
        folder = os.open(head or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise FileWriteError(shown, f"its folder cannot be opened: {err.strerror or err}") from err
    try:
        _in_the_way(folder, name, shown)
        temporary, fd = _temporary(folder, name, mode, shown)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
            _in_the_way(folder, name, shown)
            os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException as err:  # KeyboardInterrupt and SystemExit too: the temporary file goes
            try:
                os.unlink(temporary, dir_fd=folder)
            except OSError:
                pass
            if isinstance(err, OSError) and not isinstance(err, FileWriteError):
                raise FileWriteError(shown, err.strerror or str(err)) from err
            raise
    finally:
        os.close(folder)


def write_file(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o666) -> None:
    """Write ``data`` to ``path`` through :func:`replacing`: the whole file, or nothing changed."""
    with replacing(path, mode=mode) as handle:
        handle.write(data)
