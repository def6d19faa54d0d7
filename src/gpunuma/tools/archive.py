"""Open a captured machine tree (``--root PATH``): a directory, or a tar archive unpacked safely.

A tree is a folder holding ``sys/`` (and usually ``proc/``) as the kernel showed them: a gpunuma
snapshot (``gpunuma snapshot -o FILE.tar.gz``), an ``hwloc-gather-topology`` archive (one top folder
holding ``sys/`` and ``proc/``) or any copy made by hand. Archives (``.tar.gz``, ``.tar.bz2``,
``.tar.xz``, plain ``.tar``; the compression is read from the content) are unpacked into a private
folder: no member may name a path outside it, links whose target leaves it are skipped, nothing is
written through a link, and the member count and sizes are bounded.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import tarfile
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gpunuma.core.reasons import Reason
from gpunuma.errors import SnapshotError

#: Bounds on what one archive may unpack: a DGX snapshot is ~5,000 members and a few MB; an
#: ``hwloc-gather-topology --io`` archive of a large host ~100,000 members. Each member costs ~0.2 ms
#: and ~0.8 kB of memory to unpack, so the member cap bounds a hostile archive to ~30 s.
MAX_MEMBERS = 150_000
MAX_BYTES = 512 << 20
MAX_FILE_BYTES = 16 << 20
#: Deeper than any sysfs path (~20 components under /sys/devices).
MAX_DEPTH = 64
#: The file a snapshot keeps NVML's answers in, beside ``sys/`` and ``proc/``.
NVML_RECORD = "nvml.json"

_DIR_MODE = 0o755
_FILE_MODE = 0o644
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
_CORRUPT = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)


@dataclass(frozen=True)
class CapturedTree:
    """A machine tree ready to read: ``root`` holds ``sys/`` (and ``proc/``) as the kernel showed them."""

    root: Path
    #: The path the user gave (a directory or an archive).
    origin: str
    archive: bool
    #: What unpacking left out and why (links leaving the tree, device files...): reasons of code
    #: ``archive_members_skipped`` (values ``count``, ``why``: the ``archive_*`` reason, ``example``).
    notes: tuple[str, ...] = ()

    @property
    def nvml_record(self) -> Path | None:
        """The snapshot's record of NVML's answers, when it has one."""
        path = self.root / NVML_RECORD
        return path if path.is_file() else None


@contextlib.contextmanager
def open_tree(path: str | os.PathLike[str]) -> Iterator[CapturedTree]:
    """The tree at ``path``: a directory is read in place, an archive is unpacked into a temporary folder."""
    location = Path(path)
    if location.is_dir():
        yield CapturedTree(root=find_root(location, str(path)), origin=str(path), archive=False)
        return
    with tempfile.TemporaryDirectory(prefix="gpunuma-tree-") as scratch:
        yield unpack(location, Path(scratch))


def unpack(archive: str | os.PathLike[str], into: str | os.PathLike[str]) -> CapturedTree:
    """Unpack ``archive`` into ``into`` (a new or empty folder, which the caller owns) and find its tree."""
    source = Path(archive)
    if not source.is_file():
        raise SnapshotError(f"{source}: no such directory or archive")
    target = Path(into)
    target.mkdir(parents=True, exist_ok=True)
    notes = _extract(source, target)
    return CapturedTree(root=find_root(target, str(source)), origin=str(source), archive=True, notes=notes)


def find_root(folder: Path, origin: str) -> Path:
    """The folder holding ``sys/``: ``folder`` itself or its single top folder (the hwloc-gather layout)."""
    if (folder / "sys").is_dir():
        return folder
    candidates = sorted(
        child for child in folder.iterdir() if child.is_dir() and not child.is_symlink() and (child / "sys").is_dir()
    )
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        names = ", ".join(child.name for child in candidates)
        raise SnapshotError(f"{origin}: holds several machine trees ({names}); give one of them")
    raise SnapshotError(f"{origin}: no sys/ folder at its top or in a single top folder")


# -- unpacking -------------------------------------------------------------------------------
def _member_parts(name: str, origin: Path) -> tuple[str, ...]:
    """A member's path as parts below the archive's root; a path that could leave it refuses the archive."""
    if name.startswith("/") or "\x00" in name:
        raise SnapshotError(f"{origin}: member {name!r} has an absolute path; refusing the archive")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise SnapshotError(f"{origin}: member {name!r} climbs out of the archive with '..'; refusing the archive")
    if len(parts) > MAX_DEPTH:
        raise SnapshotError(f"{origin}: member {name[:80]!r}... is nested deeper than {MAX_DEPTH} folders")
    return parts


def _link_target(parts: tuple[str, ...], target: str) -> str | None:
    """The link target when it stays inside the archive, in the ``../../name/name`` form sysfs uses, else None.

    Only leading ``..`` steps are allowed, so resolving the link climbs through real folders (nothing is
    ever written through a link) and then only descends: it cannot leave the unpacked folder.
    """
    if not target or target.startswith("/") or "\x00" in target:
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


class _Extractor:
    """Writes members below ``into``, never through a link, counting what it leaves out."""

    def __init__(self, origin: Path, into: Path) -> None:
        self.origin = origin
        self.into = into
        self.links: set[tuple[str, ...]] = set()
        self.files: set[tuple[str, ...]] = set()
        self.skipped: Counter[Reason] = Counter()
        self.example: dict[Reason, str] = {}
        #: Bytes written, hard-link copies included (their headers say 0).
        self.written = 0

    def skip(self, code: str, name: str) -> None:
        """Leave member ``name`` out for the reason ``code`` (an ``archive_*`` code of the reasons table)."""
        why = Reason.of(code)
        self.skipped[why] += 1
        self.example.setdefault(why, name)

    def notes(self) -> tuple[Reason, ...]:
        """One note per reason members were left out, with how many and the first one's name."""
        return tuple(
            Reason.of("archive_members_skipped", count=count, why=why, example=self.example[why])
            for why, count in sorted(self.skipped.items())
        )

    def _folder(self, parts: tuple[str, ...], name: str) -> Path | None:
        """Create the folders ``parts`` as real directories; None when a link or file is in the way."""
        path = self.into
        for depth in range(1, len(parts) + 1):
            prefix = parts[:depth]
            path = path / prefix[-1]
            if prefix in self.links:
                self.skip("archive_path_through_link", name)
                return None
            if prefix in self.files:
                self.skip("archive_path_through_file", name)
                return None
            if not os.path.lexists(path):
                os.mkdir(path, _DIR_MODE)
        return path

    def _clear(self, parts: tuple[str, ...], path: Path, name: str) -> bool:
        """Make room for a file or link at ``path`` (a later member wins); False when a folder is there."""
        if parts in self.links or parts in self.files:
            os.unlink(path)
            self.links.discard(parts)
            self.files.discard(parts)
        elif os.path.lexists(path):
            self.skip("archive_folder_in_the_way", name)
            return False
        return True

    def _place(self, parts: tuple[str, ...], name: str) -> Path | None:
        """Where member ``parts`` goes, its folder made and an earlier member of that name removed; None: skipped."""
        folder = self._folder(parts[:-1], name)
        if folder is None:
            return None
        path = folder / parts[-1]
        return path if self._clear(parts, path, name) else None

    def file(self, parts: tuple[str, ...], data: bytes, name: str) -> None:
        path = self._place(parts, name)
        if path is None:
            return
        self.written += len(data)
        if self.written > MAX_BYTES:
            raise SnapshotError(f"{self.origin}: unpacks to more than {MAX_BYTES >> 20} MiB; not a machine tree")
        fd = os.open(path, _CREATE, _FILE_MODE)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        self.files.add(parts)

    def link(self, parts: tuple[str, ...], target: str, name: str) -> None:
        checked = _link_target(parts, target)
        if checked is None:
            self.skip("archive_link_leaves", name)
            return
        path = self._place(parts, name)
        if path is None:
            return
        os.symlink(checked, path)
        self.links.add(parts)

    def folder(self, parts: tuple[str, ...], name: str) -> None:
        if parts in self.links or parts in self.files:
            self.skip("archive_folder_over_member", name)
            return
        self._folder(parts, name)


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, origin: Path) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:
        return b""
    with handle:
        data = handle.read(member.size)
    if len(data) != member.size:
        raise SnapshotError(f"{origin}: member {member.name!r} is cut short: the archive is truncated")
    return data


def _drain(stream: io.BufferedIOBase, total: int, origin: Path) -> None:
    """Read past the end-of-archive blocks to the end of the compressed stream, so a missing trailer
    (a download cut in its last bytes) is an error too; bounded like the members."""
    while chunk := stream.read(1 << 16):
        total += len(chunk)
        if total > MAX_BYTES:
            raise SnapshotError(f"{origin}: unpacks to more than {MAX_BYTES >> 20} MiB; not a machine tree")


def _decompressed(origin: Path) -> io.BufferedIOBase:
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


def _extract(origin: Path, into: Path) -> tuple[Reason, ...]:
    extractor = _Extractor(origin, into)
    members = 0
    total = 0
    try:
        with _decompressed(origin) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                members += 1
                total += max(member.size, 0)
                if members > MAX_MEMBERS:
                    raise SnapshotError(f"{origin}: more than {MAX_MEMBERS} members; not a machine tree")
                if total > MAX_BYTES:
                    raise SnapshotError(f"{origin}: unpacks to more than {MAX_BYTES >> 20} MiB; not a machine tree")
                parts = _member_parts(member.name, origin)
                if not parts:
                    continue
                if member.isreg():
                    if member.size > MAX_FILE_BYTES:
                        raise SnapshotError(
                            f"{origin}: member {member.name!r} is {member.size} bytes, over {MAX_FILE_BYTES >> 20} MiB"
                        )
                    extractor.file(parts, _read_member(tar, member, origin), member.name)
                elif member.isdir():
                    extractor.folder(parts, member.name)
                elif member.issym():
                    extractor.link(parts, member.linkname, member.name)
                elif member.islnk():
                    _hard_link(extractor, parts, member, origin)
                else:
                    extractor.skip("archive_special_file", member.name)
            _drain(stream, total, origin)
    except SnapshotError:
        raise
    except _CORRUPT as err:
        raise SnapshotError(f"{origin}: not a readable tar archive (.tar.gz, .tar.bz2, .tar.xz): {err}") from err
    except OSError as err:
        raise SnapshotError(f"{origin}: cannot unpack: {err}") from err
    return extractor.notes()


def _hard_link(extractor: _Extractor, parts: tuple[str, ...], member: tarfile.TarInfo, origin: Path) -> None:
    """A hard link becomes a copy of a regular file unpacked before it, as tar itself would link it."""
    source = _member_parts(member.linkname, origin)
    if source not in extractor.files:
        extractor.skip("archive_hard_link_dangling", member.name)
        return
    data = (extractor.into.joinpath(*source)).read_bytes()
    extractor.file(parts, data, member.name)
