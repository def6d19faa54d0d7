"""Open a captured machine tree (``--root PATH``, ``--simulate PATH``): a folder or a tar archive, read into memory.

A tree is a folder holding ``sys/`` (and usually ``proc/``) as the kernel showed them: a gpunuma
snapshot (``gpunuma snapshot -o FILE.tar.gz``), an ``hwloc-gather-topology`` archive (one top folder
holding ``sys/`` and ``proc/``) or any copy made by hand. Either is read into a
:class:`~gpunuma.core.filetree.FileTree` in memory, which the real adapters read as they read ``/``;
nothing is extracted and no file is written. Archives (``.tar.gz``, ``.tar.bz2``, ``.tar.xz``, plain
``.tar``; the compression is read from the content) are read as a stream, member by member.

A tree comes from someone else, so reading it is bounded and confined:

* no member may name a path above the tree (``..``, an absolute name refuses the archive); a link whose
  target is absolute or climbs out of the tree is left out, and links are only ever followed inside the
  tree, so nothing of this machine is read and no message quotes it. A folder is read the same way: its
  links are read as links, never followed, and special files (FIFOs, devices) are left out unopened;
* every size is checked before memory is spent on it: each tar header (GNU long names and links at
  :data:`MAX_NAME` bytes, PAX records at :data:`MAX_EXTENSION`, at most :data:`MAX_CHAIN` before a member,
  :data:`MAX_EXTENSIONS` in all), each file (:data:`MAX_FILE_BYTES`), the files kept (:data:`MAX_BYTES`), the
  members (:data:`MAX_MEMBERS`), the depth (:data:`MAX_DEPTH`) and the decompressed stream
  (:data:`MAX_STREAM`). A hostile archive costs at most ~256 MiB and a few seconds, then a
  :class:`~gpunuma.errors.SnapshotError`.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import lzma
import os
import stat
import tarfile
import zlib
from collections import Counter
from typing import Any

from gpunuma.core.filetree import FileTree
from gpunuma.core.reasons import Reason
from gpunuma.errors import SnapshotError
from gpunuma.settings import CapturedTree

#: Bounds on what one tree may hold: a DGX snapshot is ~5,000 members and a few MB; an
#: ``hwloc-gather-topology --io`` archive of a large host ~100,000 members and ~10 MB of files.
MAX_MEMBERS = 150_000
#: The bytes of all files kept in memory.
MAX_BYTES = 96 << 20
#: The largest file kept (the kernel files gpunuma reads are a page or two).
MAX_FILE_BYTES = 16 << 20
#: The decompressed tar stream read, headers and skipped data included.
MAX_STREAM = 256 << 20
#: A GNU long name or link target: longer than any path (PATH_MAX is 4096).
MAX_NAME = 4096
#: One PAX extended header (a few short records in any real archive).
MAX_EXTENSION = 64 << 10
#: Extended headers (GNU long names, PAX records) before one member.
MAX_CHAIN = 8
#: The bytes of all extended headers of one archive.
MAX_EXTENSIONS = 16 << 20
#: Deeper than any sysfs path (~20 components under /sys/devices).
MAX_DEPTH = 64
#: The file a snapshot keeps NVML's answers in, beside ``sys/`` and ``proc/``.
NVML_RECORD = "nvml.json"

_CORRUPT = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)
_GNU_LONG = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_PAX = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
#: How a regular file of a captured folder is opened: never through a link, never blocking on a FIFO.
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_tree(path: str | os.PathLike[str]) -> CapturedTree:
    """The captured tree at ``path``, a folder or an archive, read into memory (nothing is written)."""
    origin = os.fspath(path)
    try:
        if os.path.isdir(origin):
            return _read_folder(origin)
        if not os.path.isfile(origin):
            raise SnapshotError(f"{origin}: no such directory or archive")
        return _read_archive(origin)
    except MemoryError as err:  # a bound not met by the interpreter's own limits (a ulimit): still typed
        raise SnapshotError(f"{origin}: too large to read into memory") from err


# -- the tree being read ----------------------------------------------------------------------------
class _Tree:
    """Members by their path below the archive's (or folder's) top, kept under the rules a kernel's tree obeys:
    nothing through a link or a file, a later member replacing an earlier file or link, sizes bounded."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.files: dict[str, bytes] = {}
        self.links: dict[str, str] = {}
        self.folders: set[str] = set()
        self.members = 0
        self.kept = 0
        self.skipped: Counter[Reason] = Counter()
        self.example: dict[Reason, str] = {}

    def count(self) -> None:
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise SnapshotError(f"{self.origin}: more than {MAX_MEMBERS} members; not a machine tree")

    def skip(self, code: str, name: str) -> None:
        """Leave member ``name`` out for the reason ``code`` (an ``archive_*`` code of the reasons table)."""
        why = Reason.of(code)
        self.skipped[why] += 1
        self.example.setdefault(why, name[:200])

    def notes(self) -> tuple[Reason, ...]:
        """One note per reason members were left out, with how many and the first one's name."""
        return tuple(
            Reason.of("archive_members_skipped", count=count, why=why, example=self.example[why])
            for why, count in sorted(self.skipped.items())
        )

    def _folder(self, parts: tuple[str, ...], name: str) -> bool:
        """Record the folders ``parts`` as real folders; False when a link or file is in the way."""
        if not parts or "/".join(parts) in self.folders:
            return True  # a known folder: its ancestors are folders too (nothing replaces a folder)
        for depth in range(1, len(parts) + 1):
            key = "/".join(parts[:depth])
            if key in self.links:
                self.skip("archive_path_through_link", name)
                return False
            if key in self.files:
                self.skip("archive_path_through_file", name)
                return False
        for depth in range(1, len(parts) + 1):
            self.folders.add("/".join(parts[:depth]))
        return True

    def _place(self, parts: tuple[str, ...], name: str) -> str | None:
        """The key of member ``parts``, its folders made and an earlier file or link there removed; None: skipped."""
        if not self._folder(parts[:-1], name):
            return None
        key = "/".join(parts)
        if key in self.folders:
            self.skip("archive_folder_in_the_way", name)
            return None
        old = self.files.pop(key, None)
        if old is not None:
            self.kept -= len(old)
        self.links.pop(key, None)
        return key

    def file(self, parts: tuple[str, ...], data: bytes, name: str) -> None:
        key = self._place(parts, name)
        if key is None:
            return
        self.kept += len(data)
        if self.kept > MAX_BYTES:
            raise SnapshotError(f"{self.origin}: holds more than {MAX_BYTES >> 20} MiB of files; not a machine tree")
        self.files[key] = data

    def link(self, parts: tuple[str, ...], target: str, name: str) -> None:
        checked = _link_target(parts, target)
        if checked is None:
            self.skip("archive_link_leaves", name)
            return
        key = self._place(parts, name)
        if key is not None:
            self.links[key] = checked

    def folder(self, parts: tuple[str, ...], name: str) -> None:
        key = "/".join(parts)
        if key in self.links or key in self.files:
            self.skip("archive_folder_over_member", name)
            return
        self._folder(parts, name)

    def tree(self, archive: bool) -> CapturedTree:
        """The tree below the folder holding ``sys/`` (the top, or its single top folder: hwloc-gather's layout).

        Its root names where it was read: ``ARCHIVE:/TOP`` for an archive's members, ``FOLDER/TOP`` for a folder.
        """
        top = _find_top(self.folders, self.origin)
        if top:
            cut = len(top) + 1
            files = {key[cut:]: data for key, data in self.files.items() if key.startswith(top + "/")}
            links = {key[cut:]: target for key, target in self.links.items() if key.startswith(top + "/")}
            folders = [key[cut:] for key in self.folders if key.startswith(top + "/")]
        else:
            files, links, folders = self.files, self.links, list(self.folders)
        if archive:
            root = f"{self.origin}:/{top}" if top else f"{self.origin}:"
        else:
            root = os.path.join(self.origin, top) if top else self.origin
        return CapturedTree(FileTree(root, files, links, folders), self.origin, archive, self.notes())


def _find_top(folders: set[str], origin: str) -> str:
    """The folder holding ``sys/``: "" (the top itself) or the single top folder that holds one."""
    if "sys" in folders:
        return ""
    candidates = sorted(key.partition("/")[0] for key in folders if key.count("/") == 1 and key.endswith("/sys"))
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise SnapshotError(f"{origin}: holds several machine trees ({', '.join(candidates)}); give one of them")
    raise SnapshotError(f"{origin}: no sys/ folder at its top or in a single top folder")


def _member_parts(name: str, origin: str) -> tuple[str, ...]:
    """A member's path as parts below the archive's top; a path that could leave it refuses the archive."""
    if name.startswith("/") or "\x00" in name:
        raise SnapshotError(f"{origin}: member {name[:80]!r} has an absolute path; refusing the archive")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise SnapshotError(f"{origin}: member {name[:80]!r} climbs out of the archive with '..'; refusing the archive")
    if len(parts) > MAX_DEPTH:
        raise SnapshotError(f"{origin}: member {name[:80]!r}... is nested deeper than {MAX_DEPTH} folders")
    return parts


def _link_target(parts: tuple[str, ...], target: str) -> str | None:
    """The link target when it stays inside the tree, in the ``../../name/name`` form sysfs uses, else None.

    Only leading ``..`` steps are allowed, so resolving the link climbs through real folders and then only
    descends: it cannot leave the tree.
    """
    if not target or target.startswith("/") or "\x00" in target or len(target) > MAX_NAME:
        return None
    steps = target.rstrip("/").split("/")
    climbs = 0
    while climbs < len(steps) and steps[climbs] == "..":
        climbs += 1
    names = steps[climbs:]
    if not names or any(name in ("", ".", "..") for name in names):
        return None
    if climbs > len(parts) - 1:
        return None
    return "/".join(steps)


# -- archives -------------------------------------------------------------------------------------
class _Refused(Exception):
    """A tar header that no machine tree holds, met before memory is spent on it."""


class _Header(tarfile.TarInfo):
    """A tar header checked before ``tarfile`` reads what it announces (extended headers, sparse maps)."""

    def _proc_member(self, tar: Any) -> tarfile.TarInfo:
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _Refused("a sparse member (no kernel file is sparse)")
        if self.type in _GNU_LONG or self.type in _PAX:
            limit = MAX_NAME if self.type in _GNU_LONG else MAX_EXTENSION
            if self.size > limit:
                kind = "GNU long name" if self.type in _GNU_LONG else "PAX"
                raise _Refused(f"a {kind} header of {self.size} bytes (at most {limit})")
            tar.gpunuma_chain = getattr(tar, "gpunuma_chain", 0) + 1
            tar.gpunuma_extensions = getattr(tar, "gpunuma_extensions", 0) + self.size
            if tar.gpunuma_chain > MAX_CHAIN:
                raise _Refused(f"more than {MAX_CHAIN} extended headers before one member")
            if tar.gpunuma_extensions > MAX_EXTENSIONS:
                raise _Refused(f"more than {MAX_EXTENSIONS >> 20} MiB of extended headers")
        else:
            tar.gpunuma_chain = 0
        member: tarfile.TarInfo = super()._proc_member(tar)  # type: ignore[misc]
        return member

    def _proc_gnusparse_10(self, next: Any, pax_headers: Any, tar: Any) -> None:
        raise _Refused("a sparse member (no kernel file is sparse)")


class _Counted:
    """The decompressed stream, refused past :data:`MAX_STREAM` bytes (headers and skipped data included)."""

    def __init__(self, stream: io.BufferedIOBase, origin: str) -> None:
        self.stream = stream
        self.origin = origin
        self.total = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(min(size, MAX_STREAM + 1) if size >= 0 else MAX_STREAM + 1)
        self.total += len(data)
        if self.total > MAX_STREAM:
            raise SnapshotError(f"{self.origin}: unpacks to more than {MAX_STREAM >> 20} MiB; not a machine tree")
        return data

    def close(self) -> None:
        self.stream.close()


def _decompressed(origin: str) -> io.BufferedIOBase:
    """The archive's tar stream, the compression told by its first bytes.

    The gzip, bz2 and lzma readers check that the compressed stream ends where it should, so a
    truncated download is an error, not a tree with files missing.
    """
    with open(origin, "rb") as probe:
        magic = probe.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(origin, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(origin, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(origin, "rb")
    return open(origin, "rb")


def _read_archive(origin: str) -> CapturedTree:
    tree = _Tree(origin)
    try:
        with _decompressed(origin) as raw:
            stream = _Counted(raw, origin)
            with tarfile.open(fileobj=stream, mode="r|", tarinfo=_Header) as tar:  # type: ignore[call-overload]
                _read_members(tar, tree)
            while stream.read(1 << 16):
                pass  # to the end of the compressed stream: a missing trailer is an error too
    except SnapshotError:
        raise
    except _Refused as err:
        raise SnapshotError(f"{origin}: {err}; not a machine tree") from None
    except _CORRUPT as err:
        raise SnapshotError(f"{origin}: not a readable tar archive (.tar.gz, .tar.bz2, .tar.xz): {err}") from err
    except OSError as err:
        raise SnapshotError(f"{origin}: cannot read it: {err.strerror or err}") from err
    return tree.tree(archive=True)


def _read_members(tar: tarfile.TarFile, tree: _Tree) -> None:
    origin = tree.origin
    while (member := tar.next()) is not None:
        tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every header read; none is needed
        tree.count()
        parts = _member_parts(member.name, origin)
        if not parts:
            continue
        if member.sparse is not None:
            raise _Refused("a sparse member (no kernel file is sparse)")
        if member.isreg():
            if member.size > MAX_FILE_BYTES:
                raise SnapshotError(
                    f"{origin}: member {member.name[:80]!r} is {member.size} bytes, over {MAX_FILE_BYTES >> 20} MiB"
                )
            tree.file(parts, _member_data(tar, member, origin), member.name)
        elif member.isdir():
            tree.folder(parts, member.name)
        elif member.issym():
            tree.link(parts, member.linkname, member.name)
        elif member.islnk():
            _hard_link(tree, parts, member)
        else:
            tree.skip("archive_special_file", member.name)


def _member_data(tar: tarfile.TarFile, member: tarfile.TarInfo, origin: str) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:
        return b""
    with handle:
        data = handle.read(member.size)
    if len(data) != member.size:
        raise SnapshotError(f"{origin}: member {member.name[:80]!r} is cut short: the archive is truncated")
    return data


def _hard_link(tree: _Tree, parts: tuple[str, ...], member: tarfile.TarInfo) -> None:
    """A hard link becomes a copy of a regular file read before it, as tar itself would link it."""
    source = "/".join(_member_parts(member.linkname, tree.origin))
    data = tree.files.get(source)
    if data is None:
        tree.skip("archive_hard_link_dangling", member.name)
        return
    tree.file(parts, data, member.name)


# -- folders --------------------------------------------------------------------------------------
def _read_folder(origin: str) -> CapturedTree:
    """A captured folder read as an archive is: links kept as links (never followed), special files left out."""
    tree = _Tree(origin)
    base = _top_folder(origin)
    prefix = (base,) if base else ()
    if base:
        tree.folders.add(base)
    try:
        _walk(tree, os.path.join(origin, base) if base else origin, prefix, 0)
    except OSError as err:
        raise SnapshotError(f"{origin}: cannot read it: {err.strerror or err}") from err
    return tree.tree(archive=False)


def _top_folder(origin: str) -> str:
    """"" when ``origin`` holds ``sys/`` itself, else its single top folder that does (links not followed)."""

    def real_folder(path: str) -> bool:
        try:
            return stat.S_ISDIR(os.lstat(path).st_mode)
        except OSError:
            return False

    if real_folder(os.path.join(origin, "sys")):
        return ""
    try:
        names = os.listdir(origin)
    except OSError as err:
        raise SnapshotError(f"{origin}: cannot read it: {err.strerror or err}") from err
    holding = {f"{name}/sys" for name in names if real_folder(os.path.join(origin, name, "sys"))}
    return _find_top(holding, origin)


def _walk(tree: _Tree, folder: str, parts: tuple[str, ...], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise SnapshotError(f"{tree.origin}: {'/'.join(parts)[:80]!r}... is nested deeper than {MAX_DEPTH} folders")
    with os.scandir(folder) as entries:
        listed = sorted(entries, key=lambda entry: entry.name)
    for entry in listed:
        tree.count()
        name = "/".join((*parts, entry.name))
        member = (*parts, entry.name)
        if entry.is_symlink():
            tree.link(member, os.readlink(entry.path), name)
        elif entry.is_dir(follow_symlinks=False):
            tree.folder(member, name)
            _walk(tree, entry.path, member, depth + 1)
        elif entry.is_file(follow_symlinks=False):
            tree.file(member, _file_data(entry.path, tree.origin, name), name)
        else:
            tree.skip("archive_special_file", name)


def _file_data(path: str, origin: str, name: str) -> bytes:
    """A regular file's bytes, bounded; opened without following a link swapped in since it was listed."""
    try:
        fd = os.open(path, _OPEN)
    except OSError as err:
        if err.errno == errno.ELOOP:  # a link swapped in: not followed, so no file of this name
            return b""
        raise SnapshotError(f"{origin}: {name[:80]!r}: cannot read it: {err.strerror or err}") from err
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""  # a FIFO or device swapped in: never read
        chunks = []
        total = 0
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_FILE_BYTES:
                raise SnapshotError(f"{origin}: {name[:80]!r} is over {MAX_FILE_BYTES >> 20} MiB; not a kernel file")
        return b"".join(chunks)
    finally:
        os.close(fd)
