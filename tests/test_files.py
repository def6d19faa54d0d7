"""The file-reading port: this host's files and a tree held in memory answer every call alike."""

from __future__ import annotations

import os

import pytest

from gpunuma.adapters.files import HOST, MAX_FILE_BYTES, files_of
from gpunuma.core.filetree import FileTree
from gpunuma.core.ports import KernelFiles
from gpunuma.errors import SysfsFormatError, SysfsReadError
from gpunuma_fakes.render import write_tree

#: A small sysfs-shaped tree: the bus's links into the device folders, as the kernel writes them.
FILES = {
    "sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/class": b"0x030200\n",
    "sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/numa_node": b"1\n",
    "sys/devices/system/node/online": b"0-1\n",
    "proc/4242/status": b"Name:\tpython3\n",
}
LINKS = {
    "sys/bus/pci/devices/0000:01:00.0": "../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0",
    "proc/self": "4242",
    "loop/a": "b",
    "loop/b": "a",
    "dangling": "nowhere/at/all",
}
FOLDERS = ("sys/devices/system/cpu/cpu0",)

#: Paths every reader answers the same (the tree's own, and its links that stay in it).
PATHS = [
    "sys/devices/system/node/online",
    "sys/bus/pci/devices/0000:01:00.0/class",
    "sys/bus/pci/devices/0000:01:00.0/numa_node",
    "sys/bus/pci/devices/0000:01:00.0",
    "sys/bus/pci/devices",
    "sys/bus/pci/devices/0000:01:00.0/missing",
    "sys/bus/pci/devices/0000:01:00.0/../0000:01:00.0/class",
    "proc/self/status",
    "proc/self",
    "proc/4242/status/more",
    "sys/devices/system/cpu/cpu0",
    "sys/devices/system/cpu",
    "dangling",
    "nothing",
    "",
]


@pytest.fixture
def tree() -> FileTree:
    return FileTree("host:", FILES, LINKS, FOLDERS)


@pytest.fixture
def on_disk(tree, tmp_path) -> str:
    write_tree(tree, tmp_path / "tree")
    return str(tmp_path / "tree")


def _answers(files: KernelFiles, root: str, relative: str) -> tuple[object, ...]:
    path = os.path.join(root, relative)
    try:
        text: object = files.read(path)
    except SysfsReadError as err:
        text = ("error", err.errno)
    listed = files.listdir(path)
    resolved = files.resolve(path)
    return (
        text,
        sorted(listed) if listed is not None else None,
        files.readlink(path),
        files.exists(path),
        files.is_dir(path),
        os.path.relpath(resolved, root) if resolved is not None and files is HOST else resolved,
    )


@pytest.mark.parametrize("relative", PATHS)
def test_a_tree_in_memory_answers_as_the_same_files_on_disk(tree, on_disk, relative):
    host = _answers(HOST, os.path.realpath(on_disk), relative)
    memory = _answers(tree, tree.root, relative)

    resolved = memory[-1]
    if isinstance(resolved, str):  # the tree names its paths under its own root label
        memory = (*memory[:-1], os.path.relpath(resolved.removeprefix("host:") or "/", "/"))
    if host[-1] is None:  # the kernel cannot name a missing path; the tree keeps its tail, as realpath does
        memory = (*memory[:-1], None)
    assert memory == host


def test_both_readers_are_the_port(tree):
    assert isinstance(HOST, KernelFiles) and isinstance(tree, KernelFiles)


def test_a_link_loop_is_a_read_error_in_both(tree, on_disk):
    for files, root in ((HOST, on_disk), (tree, tree.root)):
        with pytest.raises(SysfsReadError) as caught:
            files.read(f"{root}/loop/a")
        assert caught.value.errno == 40  # ELOOP
        assert files.resolve(f"{root}/loop/a") is None or files is HOST


def test_a_folder_read_as_a_file_is_a_read_error_in_both(tree, on_disk):
    for files, root in ((HOST, on_disk), (tree, tree.root)):
        with pytest.raises(SysfsReadError) as caught:
            files.read(f"{root}/sys/devices")
        assert caught.value.errno == 21  # EISDIR


def test_reads_are_bounded_in_both(tmp_path):
    big = b"0," * (MAX_FILE_BYTES // 2 + 1)
    tree = FileTree("big:", {"f": big})
    write_tree(tree, tmp_path)
    for files, path in ((HOST, str(tmp_path / "f")), (tree, "big:/f")):
        with pytest.raises(SysfsFormatError, match="not a kernel file"):
            files.read(path)
        assert files.read(path, 8, cut=True) == "0,0,0,0,"


@pytest.mark.parametrize(
    "target",
    ["/etc/passwd", "../../etc/passwd", "../../../../../../../../etc/passwd", "/proc/self/environ"],
)
def test_a_tree_never_follows_a_link_out_of_itself(target):
    tree = FileTree("captured:", {"sys/x": b"1\n"}, {"sys/escape": target, "sys/dir/escape": target})

    for link in ("captured:/sys/escape", "captured:/sys/dir/escape"):
        assert tree.read(link) is None and tree.listdir(link) is None
        assert not tree.exists(link) and not tree.is_dir(link)
        assert tree.readlink(link) == target  # the link itself is there
        assert tree.resolve(link).startswith("captured:")


def test_a_path_outside_the_tree_is_missing(tree):
    assert tree.read("/sys/devices/system/node/online") is None
    assert tree.read("hosts:/sys/devices/system/node/online") is None
    assert tree.read("host:/sys/devices/system/node/online") == "0-1\n"


def test_a_root_is_a_folder_of_this_host_or_a_tree(tree, tmp_path):
    assert files_of(tmp_path) == (str(tmp_path), HOST)
    assert files_of(tree) == ("host:", tree)
