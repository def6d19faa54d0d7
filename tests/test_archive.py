"""Captured trees open from a folder or an archive; unpacking never writes outside its own folder."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.reasons import with_code
from gpunuma.errors import SnapshotError
from gpunuma.tools import archive
from gpunuma.tools.archive import open_tree, unpack
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


def _outside(scratch: Path) -> set[Path]:
    return set(scratch.parent.iterdir())


def _skipped(tree: archive.CapturedTree) -> dict[str, tuple[int, str]]:
    """Why members were left out, by code: how many, and the first one's name."""
    return {
        note.values["why"].code: (note.values["count"], note.values["example"])
        for note in with_code(tree.notes, "archive_members_skipped")
    }


@pytest.fixture
def workstation(tmp_path: Path) -> Path:
    return render_sysfs(machine("workstation"), tmp_path / "rendered")


# -- layouts -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w:"])
def test_an_hwloc_gather_archive_opens_to_its_single_top_folder(workstation, tmp_path, mode):
    path = _archive(tmp_path / "host.tar", _tree_members(workstation, "host"), mode)

    with open_tree(path) as tree:
        assert tree.archive and tree.root.name == "host"
        assert SysfsTopology(root=tree.root).read() == SysfsTopology(root=workstation).read()
        assert SysfsTopology(root=tree.root).allowed() == SysfsTopology(root=workstation).allowed()


def test_an_archive_with_sys_at_its_top_opens_there(workstation, tmp_path):
    members = [(info, data) for info, data in _tree_members(workstation, ".")]
    path = _archive(tmp_path / "flat.tar.gz", members)

    with open_tree(path) as tree:
        assert (tree.root / "sys").is_dir() and tree.root.name.startswith("gpunuma-tree-")


def test_a_folder_is_read_in_place_and_a_single_top_folder_is_found(workstation, tmp_path):
    with open_tree(workstation) as tree:
        assert tree.root == workstation and not tree.archive
    with open_tree(tmp_path) as tree:  # tmp_path holds only "rendered/"
        assert tree.root == workstation


def test_the_unpacked_folder_is_removed_afterwards(workstation, tmp_path):
    path = _archive(tmp_path / "host.tar.gz", _tree_members(workstation, "host"))

    with open_tree(path) as tree:
        scratch = tree.root.parent
        assert scratch.is_dir()
    assert not scratch.exists()


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
        unpack(path, tmp_path / "out")


def test_a_file_that_is_no_archive_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.tar.gz"
    path.write_bytes(b"this is not a tar archive\n" * 40)

    with pytest.raises(SnapshotError, match="not a readable tar archive"):
        unpack(path, tmp_path / "out")


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz"])
@pytest.mark.parametrize("kept", [0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_a_truncated_archive_is_a_clear_error_wherever_it_is_cut(workstation, tmp_path, mode, kept):
    whole = _archive(tmp_path / "host.tar", _tree_members(workstation, "host"), mode).read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole[: int(len(whole) * kept)])

    with pytest.raises(SnapshotError, match="not a readable tar archive|truncated"):
        unpack(cut, tmp_path / "out")


def test_a_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(SnapshotError, match="no such directory or archive"):
        with open_tree(tmp_path / "nowhere.tar.gz"):
            pass


# -- safety ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["host/../../escaped", "../escaped", "/tmp/escaped", "host/sys/../../../escaped"])
def test_a_member_that_names_a_path_outside_refuses_the_archive(tmp_path, name):
    path = _archive(tmp_path / "evil.tar.gz", [_file("host/sys/x"), _file(name)])
    scratch = tmp_path / "deep" / "out"
    scratch.mkdir(parents=True)
    before = _outside(scratch)

    with pytest.raises(SnapshotError, match="refusing the archive"):
        unpack(path, scratch)

    assert _outside(scratch) == before
    assert not any(p.name == "escaped" for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("target", ["../../../../etc", "/etc", "../../.."])
def test_a_link_whose_target_leaves_the_folder_is_skipped_and_noted(tmp_path, target):
    path = _archive(tmp_path / "evil.tar.gz", [_file("host/sys/x"), _link("host/sys/escape", target)])

    tree = unpack(path, tmp_path / "out")

    assert not (tree.root / "sys/escape").is_symlink()
    assert _skipped(tree) == {"archive_link_leaves": (1, "host/sys/escape")}


def test_nothing_is_written_through_a_link_even_one_that_points_inside(tmp_path):
    # Checked by name alone, host/l/l2 -> ../../.. stays inside (host/l/..); written through host/l,
    # which points at host/sys/d, it would resolve above the unpacked folder.
    members = [
        _file("host/sys/d/x"),
        _link("host/l", "sys/d"),
        _link("host/l/l2", "../../.."),
        _file("host/l/written-through", b"outside\n"),
    ]
    path = _archive(tmp_path / "evil.tar.gz", members)
    scratch = tmp_path / "deep" / "out"
    scratch.mkdir(parents=True)

    tree = unpack(path, scratch)

    assert (tree.root / "l").is_symlink()
    assert not any(p.name in ("l2", "written-through") for p in tmp_path.rglob("*"))
    assert _skipped(tree)["archive_path_through_link"] == (1, "host/l/written-through")


def test_a_link_to_an_ancestor_folder_is_skipped(tmp_path):
    path = _archive(tmp_path / "loop.tar.gz", [_file("host/sys/x"), _link("host/sys/up", "..")])

    tree = unpack(path, tmp_path / "out")

    assert not (tree.root / "sys/up").is_symlink()
    assert _skipped(tree) == {"archive_link_leaves": (1, "host/sys/up")}


def test_a_sysfs_style_link_inside_the_tree_is_kept_and_followed(tmp_path):
    members = [
        _file("host/sys/devices/pci0000:00/0000:00:06.0/class", b"0x030200\n"),
        _link("host/sys/bus/pci/devices/0000:00:06.0", "../../../devices/pci0000:00/0000:00:06.0"),
    ]
    tree = unpack(_archive(tmp_path / "host.tar.gz", members), tmp_path / "out")

    assert (tree.root / "sys/bus/pci/devices/0000:00:06.0/class").read_text() == "0x030200\n"


def test_a_later_member_replaces_a_link_instead_of_writing_through_it(tmp_path):
    members = [_file("host/sys/real", b"kept\n"), _link("host/sys/name", "real"), _file("host/sys/name", b"new\n")]
    tree = unpack(_archive(tmp_path / "host.tar.gz", members), tmp_path / "out")

    assert not (tree.root / "sys/name").is_symlink()
    assert (tree.root / "sys/name").read_text() == "new\n"
    assert (tree.root / "sys/real").read_text() == "kept\n"


def test_a_hard_link_copies_an_unpacked_file_and_is_skipped_otherwise(tmp_path):
    members = [
        _file("host/sys/a", b"10 21\n"),
        _link("host/sys/b", "host/sys/a", tarfile.LNKTYPE),
        _link("host/sys/c", "host/sys/missing", tarfile.LNKTYPE),
    ]
    tree = unpack(_archive(tmp_path / "host.tar.gz", members), tmp_path / "out")

    assert (tree.root / "sys/b").read_text() == "10 21\n"
    assert not (tree.root / "sys/c").exists()
    assert _skipped(tree) == {"archive_hard_link_dangling": (1, "host/sys/c")}


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_device_files_and_fifos_are_skipped(tmp_path, kind):
    members = [_file("host/sys/x"), _special("host/sys/dev", kind)]
    tree = unpack(_archive(tmp_path / "host.tar.gz", members), tmp_path / "out")

    assert not (tree.root / "sys/dev").exists()
    assert _skipped(tree) == {"archive_special_file": (1, "host/sys/dev")}


def test_a_member_below_a_file_is_skipped(tmp_path):
    members = [_file("host/sys/x", b"kept\n"), _file("host/sys/x/below")]
    tree = unpack(_archive(tmp_path / "host.tar.gz", members), tmp_path / "out")

    assert (tree.root / "sys/x").read_text() == "kept\n"
    assert _skipped(tree) == {"archive_path_through_file": (1, "host/sys/x/below")}


def test_a_file_or_link_named_like_a_folder_already_unpacked_is_skipped(tmp_path):
    members = [_file("host/sys/d/x"), _file("host/sys/d"), _link("host/sys/d", "x")]
    tree = unpack(_archive(tmp_path / "host.tar.gz", members), tmp_path / "out")

    assert (tree.root / "sys/d").is_dir() and not (tree.root / "sys/d").is_symlink()
    assert _skipped(tree) == {"archive_folder_in_the_way": (2, "host/sys/d")}


def test_a_folder_named_like_a_file_already_unpacked_is_skipped(tmp_path):
    members = [_file("host/sys/f", b"kept\n"), _special("host/sys/f", tarfile.DIRTYPE)]
    tree = unpack(_archive(tmp_path / "host.tar.gz", members), tmp_path / "out")

    assert (tree.root / "sys/f").read_text() == "kept\n"
    assert _skipped(tree) == {"archive_folder_over_member": (1, "host/sys/f")}


def test_each_reason_is_one_note_counting_its_members_and_naming_the_first(tmp_path):
    members = [_file("host/sys/x"), _special("host/sys/fifo", tarfile.FIFOTYPE), _link("host/sys/up", "..")]
    members += [_special(f"host/sys/dev{i}", tarfile.CHRTYPE) for i in range(3)]
    tree = unpack(_archive(tmp_path / "host.tar.gz", members), tmp_path / "out")

    assert tuple(note.code for note in tree.notes) == ("archive_members_skipped",) * 2
    assert _skipped(tree) == {"archive_special_file": (4, "host/sys/fifo"), "archive_link_leaves": (1, "host/sys/up")}


@pytest.mark.parametrize(
    ("limit", "value", "words"),
    [
        ("MAX_MEMBERS", 3, "more than 3 members"),
        ("MAX_FILE_BYTES", 4, "over 0 MiB"),
        ("MAX_BYTES", 8, "more than 0 MiB"),
    ],
)
def test_archives_beyond_the_bounds_are_refused(tmp_path, mocker, limit, value, words):
    mocker.patch.object(archive, limit, value)
    members = [_file(f"host/sys/f{i}", b"0123456\n") for i in range(5)]

    with pytest.raises(SnapshotError, match=words):
        unpack(_archive(tmp_path / "big.tar.gz", members), tmp_path / "out")


def test_hard_links_count_against_the_size_bound(tmp_path, mocker):
    mocker.patch.object(archive, "MAX_BYTES", 20)
    members = [_file("host/sys/a", b"0123456789\n")]
    members += [_link(f"host/sys/copy{i}", "host/sys/a", tarfile.LNKTYPE) for i in range(3)]

    with pytest.raises(SnapshotError, match="MiB"):
        unpack(_archive(tmp_path / "links.tar.gz", members), tmp_path / "out")
