"""A machine's kernel files held in memory: a :class:`~gpunuma.core.ports.KernelFiles` with no file on disk.

A simulated machine's tree (built from its spec by ``gpunuma_fakes``) or a captured host's (read from its
archive or folder by :mod:`gpunuma.tools.archive`) is a :class:`FileTree`. Its paths start with its ``root``,
a label such as ``dgx-h100:`` or ``host.tar.gz:/host`` that names no file on this machine, so nothing read
from a tree can be mistaken for this host's files, and no message names a temporary folder.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator, Mapping

from gpunuma.errors import SysfsFormatError, SysfsReadError

#: The largest file a reader takes: the kernel files gpunuma reads are a page or two.
MAX_FILE_BYTES = 1 << 20
#: Links followed in one path before it counts as a loop (the kernel's limit).
MAX_HOPS = 40
_EISDIR = OSError(errno.EISDIR, "Is a directory")
_ELOOP = OSError(errno.ELOOP, "Too many levels of symbolic links")


def too_large(path: str, limit: int) -> SysfsFormatError:
    """The error of a file longer than ``limit`` bytes: no kernel file is."""
    size = f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit} bytes"
    return SysfsFormatError(path, "", f"larger than {size}: not a kernel file")


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
                if known is not None:
                    known.add(name)
                    break  # the parent was met before: its own parents are registered
                children[parent] = {name}
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
                    raise too_large(path, limit)
                data = data[:limit]
            return data.decode("utf-8", "replace")
        if state == _DIR:
            raise SysfsReadError(path, _EISDIR)
        if state == _LOOP:
            raise SysfsReadError(path, _ELOOP)
        return None

    def listdir(self, path: str) -> list[str] | None:
        state, key, _ = self._find(path, follow=True)
        if state == _DIR:
            return list(self._children[key])
        if state == _LOOP:
            raise SysfsReadError(path, _ELOOP)
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
