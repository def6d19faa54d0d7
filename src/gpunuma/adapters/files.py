"""Where the topology adapters read kernel files: this host's filesystem, or a machine's tree held in memory.

Both implement :class:`~gpunuma.core.ports.KernelFiles`. :data:`HOST` reads through the OS with raw ``os``
calls (sysfs reads are many and tiny). A :class:`FileTree` holds a whole machine's files, folders and links
in memory: a simulated machine's (built from its spec by ``gpunuma_fakes``) or a captured host's (read from
its archive or folder by :mod:`gpunuma.adapters.archive`). Its paths start with its ``root``, a label such
as ``dgx-h100:`` or ``host.tar.gz:/host`` that names no file on this machine, so nothing read from a tree
can be mistaken for this host's files, and no message names a temporary folder.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator, Mapping

from gpunuma.errors import SysfsFormatError, SysfsReadError

_CHUNK = 65536
#: The largest file a reader takes: the kernel files gpunuma reads are a page or two.
MAX_FILE_BYTES = 1 << 20
#: Links followed in one path before it counts as a loop (the kernel's limit).
MAX_HOPS = 40


def _too_large(path: str, limit: int) -> SysfsFormatError:
    size = f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit} bytes"
    return SysfsFormatError(path, "", f"larger than {size}: not a kernel file")


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
            if len(data) == _CHUNK:
                parts = [data]
                total = len(data)
                while total <= limit and (chunk := os.read(fd, _CHUNK)):
                    parts.append(chunk)
                    total += len(chunk)
                data = b"".join(parts)
            if len(data) > limit:
                if not cut:
                    raise _too_large(path, limit)
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

# What a walk through a tree ends on.
_FILE, _DIR, _LINK, _MISSING, _NOT_DIR, _LOOP = range(6)


class FileTree:
    """A machine's kernel files held in memory, read through the same calls as this host's.

    ``files`` maps each file's path below the tree (``sys/devices/system/node/online``) to its bytes,
    ``links`` each symbolic link's path to its target (relative, as sysfs writes them), ``folders`` names
    folders that hold nothing (others are implied by their content). Links resolve inside the tree only: one
    whose target is absolute or climbs above the tree leads nowhere (a missing file), so reading a tree never
    touches this machine's files. Built once and never changed, so one tree serves every reader of a process.
    """

    def __init__(
        self,
        root: str,
        files: Mapping[str, bytes],
        links: Mapping[str, str] | None = None,
        folders: Iterable[str] = (),
    ) -> None:
        self.root = root
        self._files = dict(files)
        self._links = dict(links or {})
        folders = tuple(folders)
        children: dict[str, set[str]] = {"": set(), **{folder: set() for folder in folders}}
        for path in (*self._files, *self._links, *folders):
            while path:
                parent, _, name = path.rpartition("/")
                known = children.get(parent)
                if known is None:
                    children[parent] = {name}
                else:
                    known.add(name)
                path = parent
        self._children = {folder: sorted(names) for folder, names in children.items()}
        for path in (*self._files, *self._links):
            self._children.pop(path, None)  # a file's path is no folder, even when a later path ran through it
        #: Real folder of each folder path read so far (links in it followed).
        self._real: dict[str, str | None] = {}

    def __repr__(self) -> str:
        return f"FileTree({self.root!r}, {len(self._files)} files, {len(self._links)} links)"

    def __len__(self) -> int:
        return len(self._files) + len(self._links)

    # -- its content ----------------------------------------------------------------------------------
    def items(self) -> Iterator[tuple[str, bytes | str | None]]:
        """Every entry below the root in path order: a file's bytes, a link's target (str), a folder (None)."""
        entries: dict[str, bytes | str | None] = {folder: None for folder in self._children if folder}
        entries.update(self._files)
        entries.update(self._links)
        for path in sorted(entries):
            yield path, entries[path]

    # -- the port ---------------------------------------------------------------------------------
    def read(self, path: str, limit: int = MAX_FILE_BYTES, *, cut: bool = False) -> str | None:
        state, key, _ = self._find(path, follow=True)
        if state == _FILE:
            data = self._files[key]
            if len(data) > limit:
                if not cut:
                    raise _too_large(path, limit)
                data = data[:limit]
            return data.decode("utf-8", "replace")
        if state == _DIR:
            raise SysfsReadError(path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
        if state == _LOOP:
            raise SysfsReadError(path, OSError(errno.ELOOP, os.strerror(errno.ELOOP)))
        return None

    def listdir(self, path: str) -> list[str] | None:
        state, key, _ = self._find(path, follow=True)
        if state == _DIR:
            return list(self._children[key])
        if state == _LOOP:
            raise SysfsReadError(path, OSError(errno.ELOOP, os.strerror(errno.ELOOP)))
        return None

    def readlink(self, path: str) -> str | None:
        state, key, _ = self._find(path, follow=False)
        return self._links[key] if state == _LINK else None

    def exists(self, path: str) -> bool:
        return self._find(path, follow=True)[0] in (_FILE, _DIR)

    def is_dir(self, path: str) -> bool:
        return self._find(path, follow=True)[0] == _DIR

    def resolve(self, path: str) -> str | None:
        """As :func:`os.path.realpath`: the links followed, a missing tail kept as it is written."""
        state, key, rest = self._find(path, follow=True)
        if state == _LOOP:
            return None
        parts = [key] if key else []
        for name in rest:
            if name == "..":
                if parts:
                    parts.pop()
            elif name not in ("", "."):
                parts.append(name)
        return "/".join([self.root, *parts]) if parts else self.root

    # -- walking ----------------------------------------------------------------------------------
    def _relative(self, path: str) -> str | None:
        """``path`` below the root (``sys/devices``), None for a path outside the tree."""
        root = self.root
        if not path.startswith(root):
            return None
        rest = path[len(root) :]
        if rest and rest[0] != "/" and root[-1:] not in ("/", ":"):
            return None  # "dgx-h100:x" is no path of "dgx-h100:", nor "/a/bc" of "/a/b"
        return rest.strip("/")

    def _find(self, path: str, *, follow: bool) -> tuple[int, str, list[str]]:
        """What ``path`` leads to: (state, key of the last entry reached, the parts not walked)."""
        rel = self._relative(path)
        if rel is None:
            return _MISSING, "", []
        if "//" not in rel and "/." not in rel and not rel.startswith("."):
            # Plain paths first: a file or folder named as it is stored, or one in a folder met before.
            if rel in self._files:
                return _FILE, rel, []
            if rel in self._children:
                return _DIR, rel, []
            parent, _, name = rel.rpartition("/")
            if parent:
                real = self._real.get(parent, "")
                if real == "":
                    state, found, _ = self._walk(parent.split("/"), follow=True)
                    real = self._real[parent] = found if state == _DIR else None
                if real is None:
                    return self._walk(rel.split("/"), follow=follow)
                key = f"{real}/{name}" if real else name
                if key in self._files:
                    return _FILE, key, []
                if key in self._children:
                    return _DIR, key, []
                if key not in self._links:
                    return _MISSING, real, [name]
                return self._walk([*real.split("/"), name] if real else [name], follow=follow)
        return self._walk(rel.split("/"), follow=follow)

    def _walk(self, parts: list[str], *, follow: bool) -> tuple[int, str, list[str]]:
        """Walk ``parts`` from the root one name at a time, following links as the kernel does."""
        done: list[str] = []
        hops = 0
        index = 0
        while index < len(parts):
            name = parts[index]
            index += 1
            if name in ("", "."):
                continue
            if name == "..":
                if not done:
                    return _MISSING, "", parts[index:]  # above the tree: nothing of this machine is read
                done.pop()
                continue
            key = f"{'/'.join(done)}/{name}" if done else name
            target = self._links.get(key)
            if target is not None and (follow or index < len(parts)):
                hops += 1
                if hops > MAX_HOPS:
                    return _LOOP, key, []
                if target.startswith("/"):
                    return _MISSING, "/".join(done), [name, *parts[index:]]  # absolute: this machine's path
                parts = [*target.split("/"), *parts[index:]]
                index = 0
                continue
            if target is not None:
                return _LINK, key, []
            if key in self._files:
                return (_NOT_DIR if index < len(parts) else _FILE), key, []
            if key not in self._children:
                return _MISSING, "/".join(done), [name, *parts[index:]]
            done.append(name)
        return _DIR, "/".join(done), []


def files_of(root: str | os.PathLike[str] | FileTree) -> tuple[str, HostFiles | FileTree]:
    """``(root path, reader)`` of a root a caller gives: a folder of this host, or a tree held in memory."""
    if isinstance(root, FileTree):
        return root.root, root
    return os.fspath(root), HOST
