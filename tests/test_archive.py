"""Captured trees open from a folder or an archive into memory: nothing written, nothing read from outside them,
every size bounded before memory is spent on it."""

from __future__ import annotations

import bz2
import gzip
import io
import os
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.reasons import with_code
from gpunuma.errors import SnapshotError
from gpunuma.tools import archive
from gpunuma.tools.archive import open_tree
from gpunuma.tools.cli import main
from gpunuma_fakes import machine, render_sysfs


def _file(name: str, data: bytes = b"x\n") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, b""


def _special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, b""


def _archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _tree_members(tree: Path, top: str) -> list[tuple[tarfile.TarInfo, bytes]]:
    """A rendered tree as archive members under ``top/``, links kept as links (as hwloc-gather keeps them)."""
    members = []
    for path in sorted(tree.rglob("*")):
        name = f"{top}/{path.relative_to(tree)}"
        if path.is_symlink():
            members.append(_link(name, str(path.readlink())))
        elif path.is_file():
            members.append(_file(name, path.read_bytes()))
    return members


def _skipped(tree: archive.CapturedTree) -> dict[str, tuple[int, str]]:
    """Why members were left out, by code: how many, and the first one's name."""
    return {
        note.values["why"].code: (note.values["count"], note.values["example"])
        for note in with_code(tree.notes, "archive_members_skipped")
    }


def _read(tree: archive.CapturedTree, relative: str) -> str | None:
    return tree.tree.read(f"{tree.tree.root}/{relative}")


def _open(path: Path) -> archive.CapturedTree:
    return open_tree(path)


@pytest.fixture
def workstation(tmp_path: Path) -> Path:
    return render_sysfs(machine("workstation"), tmp_path / "rendered")


@pytest.fixture
def nothing_written(tmp_path, monkeypatch, watch_creations):
    """``$TMPDIR`` is an empty folder of its own; the test's end checks that nothing was left or written there."""
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", None)
    yield watch_creations
    assert os.listdir(scratch) == []


# -- layouts -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w:"])
def test_an_hwloc_gather_archive_opens_to_its_single_top_folder(workstation, tmp_path, mode, nothing_written):
    path = _archive(tmp_path / "host.tar", _tree_members(workstation, "host"), mode)
    created = nothing_written()

    tree = open_tree(path)

    assert tree.archive and tree.tree.root == f"{path}:/host"
    assert SysfsTopology(root=tree.tree).read() == SysfsTopology(root=workstation).read()
    assert SysfsTopology(root=tree.tree).allowed() == SysfsTopology(root=workstation).allowed()
    assert created == []


def test_an_archive_with_sys_at_its_top_opens_there(workstation, tmp_path):
    path = _archive(tmp_path / "flat.tar.gz", _tree_members(workstation, "."))

    tree = open_tree(path)

    assert tree.tree.root == f"{path}:" and tree.tree.is_dir(f"{path}:/sys")


def test_a_folder_is_read_like_an_archive_and_a_single_top_folder_is_found(workstation, tmp_path, nothing_written):
    created = nothing_written()

    tree = open_tree(workstation)

    assert tree.tree.root == str(workstation) and not tree.archive
    assert SysfsTopology(root=tree.tree).read() == SysfsTopology(root=workstation).read()
    assert open_tree(tmp_path).tree.root == str(tmp_path / "rendered")  # tmp_path holds only "rendered/"
    assert created == []


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ([_file("host/proc/meminfo")], "no sys/ folder"),
        ([_file("a/sys/x"), _file("b/sys/x")], "several machine trees (a, b)"),
    ],
)
def test_an_archive_without_one_tree_is_a_clear_error(tmp_path, members, words):
    path = _archive(tmp_path / "odd.tar.gz", members)

    with pytest.raises(SnapshotError, match=words.replace("(", r"\(").replace(")", r"\)")):
        open_tree(path)


def test_a_file_that_is_no_archive_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.tar.gz"
    path.write_bytes(b"this is not a tar archive\n" * 40)

    with pytest.raises(SnapshotError, match="not a readable tar archive"):
        open_tree(path)


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz"])
@pytest.mark.parametrize("kept", [0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_a_truncated_archive_is_a_clear_error_wherever_it_is_cut(workstation, tmp_path, mode, kept):
    whole = _archive(tmp_path / "host.tar", _tree_members(workstation, "host"), mode).read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole[: int(len(whole) * kept)])

    with pytest.raises(SnapshotError, match="not a readable tar archive|truncated"):
        open_tree(cut)


def test_a_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(SnapshotError, match="no such directory or archive"):
        open_tree(tmp_path / "nowhere.tar.gz")


# -- safety ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["host/../../escaped", "../escaped", "/tmp/escaped", "host/sys/../../../escaped"])
def test_a_member_that_names_a_path_outside_refuses_the_archive(tmp_path, name, nothing_written):
    path = _archive(tmp_path / "evil.tar.gz", [_file("host/sys/x"), _file(name)])
    created = nothing_written()

    with pytest.raises(SnapshotError, match="refusing the archive"):
        open_tree(path)

    assert created == []


@pytest.mark.parametrize("target", ["../../../../etc", "/etc", "../../.."])
def test_a_link_whose_target_leaves_the_tree_is_skipped_and_noted(tmp_path, target):
    path = _archive(tmp_path / "evil.tar.gz", [_file("host/sys/x"), _link("host/sys/escape", target)])

    tree = open_tree(path)

    assert tree.tree.readlink(f"{tree.tree.root}/sys/escape") is None
    assert _skipped(tree) == {"archive_link_leaves": (1, "host/sys/escape")}


def test_nothing_is_kept_through_a_link_even_one_that_points_inside(tmp_path):
    # Checked by name alone, host/l/l2 -> ../../.. stays inside (host/l/..); kept through host/l,
    # which points at host/sys/d, it would resolve above the tree.
    members = [
        _file("host/sys/d/x"),
        _link("host/l", "sys/d"),
        _link("host/l/l2", "../../.."),
        _file("host/l/written-through", b"outside\n"),
    ]
    tree = open_tree(_archive(tmp_path / "evil.tar.gz", members))

    assert tree.tree.readlink(f"{tree.tree.root}/l") == "sys/d"
    assert _read(tree, "sys/d/written-through") is None and _read(tree, "l/written-through") is None
    assert _skipped(tree)["archive_path_through_link"] == (1, "host/l/written-through")


def test_a_link_to_an_ancestor_folder_is_skipped(tmp_path):
    tree = open_tree(_archive(tmp_path / "loop.tar.gz", [_file("host/sys/x"), _link("host/sys/up", "..")]))

    assert tree.tree.readlink(f"{tree.tree.root}/sys/up") is None
    assert _skipped(tree) == {"archive_link_leaves": (1, "host/sys/up")}


def test_a_sysfs_style_link_inside_the_tree_is_kept_and_followed(tmp_path):
    members = [
        _file("host/sys/devices/pci0000:00/0000:00:06.0/class", b"0x030200\n"),
        _link("host/sys/bus/pci/devices/0000:00:06.0", "../../../devices/pci0000:00/0000:00:06.0"),
    ]
    tree = open_tree(_archive(tmp_path / "host.tar.gz", members))

    assert _read(tree, "sys/bus/pci/devices/0000:00:06.0/class") == "0x030200\n"


def test_a_later_member_replaces_a_link_instead_of_writing_through_it(tmp_path):
    members = [_file("host/sys/real", b"kept\n"), _link("host/sys/name", "real"), _file("host/sys/name", b"new\n")]
    tree = open_tree(_archive(tmp_path / "host.tar.gz", members))

    assert tree.tree.readlink(f"{tree.tree.root}/sys/name") is None
    assert _read(tree, "sys/name") == "new\n"
    assert _read(tree, "sys/real") == "kept\n"


def test_a_hard_link_copies_a_file_read_before_it_and_is_skipped_otherwise(tmp_path):
    members = [
        _file("host/sys/a", b"10 21\n"),
        _link("host/sys/b", "host/sys/a", tarfile.LNKTYPE),
        _link("host/sys/c", "host/sys/missing", tarfile.LNKTYPE),
    ]
    tree = open_tree(_archive(tmp_path / "host.tar.gz", members))

    assert _read(tree, "sys/b") == "10 21\n"
    assert _read(tree, "sys/c") is None
    assert _skipped(tree) == {"archive_hard_link_dangling": (1, "host/sys/c")}


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_device_files_and_fifos_are_skipped(tmp_path, kind):
    members = [_file("host/sys/x"), _special("host/sys/dev", kind)]
    tree = open_tree(_archive(tmp_path / "host.tar.gz", members))

    assert not tree.tree.exists(f"{tree.tree.root}/sys/dev")
    assert _skipped(tree) == {"archive_special_file": (1, "host/sys/dev")}


def test_a_member_below_a_file_is_skipped(tmp_path):
    members = [_file("host/sys/x", b"kept\n"), _file("host/sys/x/below")]
    tree = open_tree(_archive(tmp_path / "host.tar.gz", members))

    assert _read(tree, "sys/x") == "kept\n"
    assert _skipped(tree) == {"archive_path_through_file": (1, "host/sys/x/below")}


def test_a_file_or_link_named_like_a_folder_already_read_is_skipped(tmp_path):
    members = [_file("host/sys/d/x"), _file("host/sys/d"), _link("host/sys/d", "x")]
    tree = open_tree(_archive(tmp_path / "host.tar.gz", members))

    assert tree.tree.is_dir(f"{tree.tree.root}/sys/d") and tree.tree.readlink(f"{tree.tree.root}/sys/d") is None
    assert _skipped(tree) == {"archive_folder_in_the_way": (2, "host/sys/d")}


def test_a_folder_named_like_a_file_already_read_is_skipped(tmp_path):
    members = [_file("host/sys/f", b"kept\n"), _special("host/sys/f", tarfile.DIRTYPE)]
    tree = open_tree(_archive(tmp_path / "host.tar.gz", members))

    assert _read(tree, "sys/f") == "kept\n"
    assert _skipped(tree) == {"archive_folder_over_member": (1, "host/sys/f")}


def test_each_reason_is_one_note_counting_its_members_and_naming_the_first(tmp_path):
    members = [_file("host/sys/x"), _special("host/sys/fifo", tarfile.FIFOTYPE), _link("host/sys/up", "..")]
    members += [_special(f"host/sys/dev{i}", tarfile.CHRTYPE) for i in range(3)]
    tree = open_tree(_archive(tmp_path / "host.tar.gz", members))

    assert tuple(note.code for note in tree.notes) == ("archive_members_skipped",) * 2
    assert _skipped(tree) == {"archive_special_file": (4, "host/sys/fifo"), "archive_link_leaves": (1, "host/sys/up")}


@pytest.mark.parametrize(
    ("limit", "value", "words"),
    [
        ("MAX_MEMBERS", 3, "more than 3 members"),
        ("MAX_FILE_BYTES", 4, "over 0 MiB"),
        ("MAX_BYTES", 8, "more than 0 MiB of files"),
        ("MAX_STREAM", 4096, "unpacks to more than 0 MiB"),
    ],
)
def test_archives_beyond_the_bounds_are_refused(tmp_path, mocker, limit, value, words):
    mocker.patch.object(archive, limit, value)
    members = [_file(f"host/sys/f{i}", b"0123456\n") for i in range(5)]

    with pytest.raises(SnapshotError, match=words):
        open_tree(_archive(tmp_path / "big.tar.gz", members))


def test_hard_links_count_against_the_size_bound(tmp_path, mocker):
    mocker.patch.object(archive, "MAX_BYTES", 20)
    members = [_file("host/sys/a", b"0123456789\n")]
    members += [_link(f"host/sys/copy{i}", "host/sys/a", tarfile.LNKTYPE) for i in range(3)]

    with pytest.raises(SnapshotError, match="MiB"):
        open_tree(_archive(tmp_path / "links.tar.gz", members))


# -- hostile headers: each bounded before memory is spent on it ---------------------------------
_GiB = 1 << 30
_ZEROS = 16 << 20


def _header(name: str, kind: bytes, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    return info.tobuf(format=tarfile.GNU_FORMAT)


def _hostile(path: Path, kind: bytes, size: int) -> Path:
    """A small .tar.bz2 whose one extended header announces ``size`` bytes, and holds them (zeros).

    The zeros are one compressed 16 MiB block repeated (bz2 reads concatenated streams), so the file is
    ~1 MiB for 1 GiB of header content, as an attacker would send it.
    """
    block = bz2.compress(b"\0" * _ZEROS)
    with open(path, "wb") as handle:
        handle.write(bz2.compress(_header("././@LongLink" if kind != tarfile.XHDTYPE else "pax", kind, size)))
        for _ in range(size // _ZEROS + 1):
            handle.write(block)
    return path


@pytest.mark.parametrize(
    "kind", [tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE], ids=["long-name", "long-link", "pax"]
)
def test_a_gigabyte_extended_header_is_refused_before_it_is_read(tmp_path, kind):
    path = _hostile(tmp_path / "hostile.tar.bz2", kind, _GiB)
    assert path.stat().st_size < 2 << 20

    tracemalloc.start()
    try:
        with pytest.raises(SnapshotError, match="header of 1073741824 bytes"):
            open_tree(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20


def test_a_chain_of_extended_headers_is_refused(tmp_path):
    headers = b"".join(
        _header("././@LongLink", tarfile.GNUTYPE_LONGNAME, 512) + b"n" * 511 + b"\0" for _ in range(50)
    )
    path = tmp_path / "chain.tar.gz"
    path.write_bytes(gzip.compress(headers + b"\0" * 1024))

    with pytest.raises(SnapshotError, match=f"more than {archive.MAX_CHAIN} extended headers"):
        open_tree(path)


def test_a_sparse_member_is_refused(tmp_path):
    info = tarfile.TarInfo("host/sys/sparse")
    info.type = tarfile.GNUTYPE_SPARSE
    path = tmp_path / "sparse.tar.gz"
    path.write_bytes(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 1024))

    with pytest.raises(SnapshotError, match="sparse"):
        open_tree(path)


# -- folders: read as archives are -----------------------------------------------------------------
SECRET = "SECRET-CONTENT-OF-ANOTHER-FILE"


@pytest.fixture
def folder_with_escapes(tmp_path: Path) -> Path:
    """A captured folder whose node cpulist is a link to a file outside it (an attacker's tree)."""
    root = render_sysfs(machine("workstation"), tmp_path / "captured")
    outside = tmp_path / "private.txt"
    outside.write_text(SECRET + "\n")
    cpulist = root / "sys/devices/system/node/node0/cpulist"
    cpulist.unlink()
    cpulist.symlink_to(outside)
    (root / "sys/devices/system/node/node0/distance").unlink()
    (root / "sys/devices/system/node/node0/distance").symlink_to("../../../../../../private.txt")
    (root / "sys/devices/system/node/has_cpu").unlink()
    os.mkfifo(root / "sys/devices/system/node/has_cpu")
    return root


def test_a_folder_never_follows_a_link_out_of_itself(folder_with_escapes):
    tree = open_tree(folder_with_escapes)

    assert _read(tree, "sys/devices/system/node/node0/cpulist") is None
    assert _read(tree, "sys/devices/system/node/node0/distance") is None
    assert _skipped(tree) == {
        "archive_link_leaves": (2, "sys/devices/system/node/node0/cpulist"),
        "archive_special_file": (1, "sys/devices/system/node/has_cpu"),
    }


@pytest.mark.parametrize("command", ["topo", "plan"])
def test_root_quotes_nothing_from_outside_the_tree(folder_with_escapes, capsys, command):
    argv = [command, "--root", str(folder_with_escapes), "--json"]
    if command == "plan":
        argv += ["--node", "0"]

    main(argv)

    out = capsys.readouterr()
    assert SECRET not in out.out + out.err


def test_root_reads_an_archive_and_writes_nothing(workstation, tmp_path, capsys, nothing_written):
    path = _archive(tmp_path / "host.tar.xz", _tree_members(workstation, "host"), "w:xz")
    created = nothing_written()

    assert main(["topo", "--root", str(path), "--json"]) == 0

    assert '"nodes"' in capsys.readouterr().out
    assert created == []
