"""A simulated machine's kernel files live in memory: built once per process, on disk only when asked for."""

from __future__ import annotations

import os
import tempfile

import pytest

from gpunuma import bind_to_gpu
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.filetree import FileTree
from gpunuma.tools.cli import main
from gpunuma_fakes import build, machine, names
from gpunuma_fakes.render import machine_tree


def _on_disk(folder: str) -> dict[str, bytes | str | None]:
    """Every entry under ``folder`` as :meth:`FileTree.items` gives it: bytes, a link's target, a folder (None)."""
    found: dict[str, bytes | str | None] = {}
    for parent, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            path = os.path.join(parent, name)
            relative = os.path.relpath(path, folder)
            if os.path.islink(path):
                found[relative] = os.readlink(path)
            elif os.path.isdir(path):
                found[relative] = None
            else:
                with open(path, "rb") as handle:
                    found[relative] = handle.read()
    return found


@pytest.fixture
def written(monkeypatch, watch_creations):
    """Every file or folder this process creates while the test runs (``os.open`` with ``O_CREAT``, ``os.mkdir``)."""
    created = watch_creations()
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: created.append("mkdtemp") or tempfile.gettempdir())
    return created


def test_a_bind_on_a_simulated_machine_creates_no_file_or_folder(written):
    report = bind_to_gpu(5, env={"GPUNUMA_SIMULATE": "dgx-h100"})

    assert report.bound and report.plan.nodes == (1,)
    assert written == []


def test_a_machine_is_built_once_per_process_and_read_through_the_real_adapter():
    tree = machine_tree(machine("dgx-h100"))

    assert machine_tree(machine("dgx-h100")) is tree
    assert isinstance(tree, FileTree) and tree.root == "dgx-h100:"
    topology = SysfsTopology(root=tree).read()
    assert [gpu.numa_node for gpu in topology.gpus] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_a_machine_made_in_code_gets_its_own_tree():
    two = build(sockets=2, gpus_per_node=1, name="made")
    four = build(sockets=4, gpus_per_node=1, name="made")

    assert machine_tree(two) is machine_tree(build(sockets=2, gpus_per_node=1, name="made"))
    assert len(SysfsTopology(root=machine_tree(four)).read().nodes) == 4
    assert len(SysfsTopology(root=machine_tree(two)).read().nodes) == 2


#: Machines whose trees hold every kind of entry: bus and class links, RDMA devices, DRM nodes, a cgroup, a container.
RENDERED = ["dgx-h100", "mi300x", "docker-mi300x", "gb200"]


def test_every_machine_s_tree_holds_files_links_and_folders():
    for name in names():
        kinds = {type(content) for _, content in machine_tree(machine(name)).items()}
        assert kinds == {bytes, str, type(None)}, name


@pytest.mark.parametrize("name", RENDERED)
def test_render_writes_exactly_the_tree_held_in_memory(name, tmp_path, capsys):
    folder = tmp_path / name

    assert main(["machines", name, "--render", str(folder)]) == 0

    tree = machine_tree(machine(name))
    assert _on_disk(str(folder)) == dict(tree.items())
    assert capsys.readouterr().out.strip() == f"{name}: {len(tree)} files and links written to {folder}"


def test_render_reads_back_as_the_same_machine(tmp_path):
    main(["machines", "gb200", "--render", str(tmp_path / "gb200")])

    on_disk = SysfsTopology(root=tmp_path / "gb200")
    in_memory = SysfsTopology(root=machine_tree(machine("gb200")))
    assert on_disk.read().nodes == in_memory.read().nodes
    assert on_disk.read().gpus == in_memory.read().gpus
    assert on_disk.allowed() == in_memory.allowed()


@pytest.mark.parametrize(
    "argv",
    [["machines", "--render", "DIR"], ["machines", "dgx-h1000", "--render", "DIR"], ["machines", "dgx-h1000"]],
    ids=["no machine", "unknown machine", "unknown machine listed"],
)
def test_render_needs_a_known_machine(argv, tmp_path, capsys):
    argv = [str(tmp_path / "out") if word == "DIR" else word for word in argv]

    assert main(argv) == 2
    assert not (tmp_path / "out").exists()


def test_render_never_writes_into_a_folder_that_holds_something(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    os.symlink(tmp_path / "mine", tmp_path / "link")

    assert main(["machines", "dgx-h100", "--render", str(tmp_path / "mine")]) == 2
    assert main(["machines", "dgx-h100", "--render", str(tmp_path / "link")]) == 2
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    assert main(["machines", "dgx-h100", "--render", str(tmp_path / "empty")]) == 0
