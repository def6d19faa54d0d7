"""Where the topology adapters read kernel files: this host's filesystem, or a machine's tree held in memory.

Both implement :class:`~gpunuma.core.ports.KernelFiles`. :data:`HOST` reads through the OS with raw ``os``
calls (sysfs reads are many and tiny). A :class:`~gpunuma.core.filetree.FileTree` holds a whole machine's
files in memory (a simulated machine's, or a captured host's read by :mod:`gpunuma.tools.archive`);
:func:`files_of` tells which a caller's ``root`` is.
"""

from __future__ import annotations

import os

from gpunuma.core.filetree import MAX_FILE_BYTES, FileTree, too_large
from gpunuma.errors import SysfsReadError

_CHUNK = 65536


class HostFiles:
    """This host's files, read through the OS: bounded reads that never block on a FIFO."""

    def __repr__(self) -> str:
        return "HOST"

    def read(self, path: str, limit: int = MAX_FILE_BYTES, *, cut: bool = False) -> str | None:
        try:
            # O_NONBLOCK: a FIFO in a captured tree reads as empty (no value, as a file masked with /dev/null)
            # instead of blocking the reader forever; kernel files ignore the flag.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError, ProcessLookupError):
            return None
        except OSError as err:
            raise SysfsReadError(path, err) from err
        try:
            data = os.read(fd, min(_CHUNK, limit + 1))
            if data:
                # A short read is no end of file: a /proc seq_file (numa_maps, maps) hands out about a page per
                # read whatever was asked for. Read on until the kernel says the end.
                parts = [data]
                total = len(data)
                try:
                    while total <= limit and (chunk := os.read(fd, min(_CHUNK, limit + 1 - total))):
                        parts.append(chunk)
                        total += len(chunk)
                except BlockingIOError:  # a FIFO whose writer has nothing more yet: what came is the text
                    pass
                data = b"".join(parts) if len(parts) > 1 else data
            if len(data) > limit:
                if not cut:
                    raise too_large(path, limit)
                data = data[:limit]
        except ProcessLookupError:
            # The process exited between open and read (ESRCH): its files no longer exist.
            return None
        except OSError as err:
            raise SysfsReadError(path, err) from err
        finally:
            os.close(fd)
        return data.decode("utf-8", "replace")

    def listdir(self, path: str) -> list[str] | None:
        try:
            return os.listdir(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as err:
            raise SysfsReadError(path, err) from err

    def readlink(self, path: str) -> str | None:
        try:
            return os.readlink(path)
        except (OSError, ValueError):
            return None

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def resolve(self, path: str) -> str | None:
        """The path the kernel resolved ``path`` to (``/proc/self/fd`` of an ``O_PATH`` open).

        Three system calls whatever the depth, where following links one component at a time costs one
        ``readlink`` per folder; None for a path that does not resolve (a broken link, a loop) or without ``/proc``.
        """
        try:
            fd = os.open(os.path.abspath(path), os.O_PATH)
        except (OSError, ValueError):
            return None
        try:
            resolved = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        finally:
            os.close(fd)
        # The kernel marks a path it cannot name from here (deleted, another mount namespace): not a path to use.
        return resolved if resolved.startswith("/") and not resolved.endswith(" (deleted)") else None


#: This host's files.
HOST = HostFiles()

def files_of(root: str | os.PathLike[str] | FileTree) -> tuple[str, HostFiles | FileTree]:
    """``(root path, reader)`` of a root a caller gives: a folder of this host, or a tree held in memory."""
    if isinstance(root, FileTree):
        return root.root, root
    return os.fspath(root), HOST
