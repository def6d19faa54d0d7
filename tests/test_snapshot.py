"""``gpunuma snapshot`` keeps what the adapters read, and NVML's answers, and nothing else; it replays exactly."""

from __future__ import annotations

import dataclasses
import json
import re
import tarfile
from pathlib import Path

import pytest

from gpunuma.adapters.auto import AutoTopology
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.model import Topology
from gpunuma.core.reasons import with_code
from gpunuma.errors import SnapshotError
from gpunuma.tools.archive import open_tree
from gpunuma.tools.snapshot import record_nvml, write_snapshot
from gpunuma_fakes import MACHINES, machine
from gpunuma_fakes.nvml import NVML_ERROR_NO_PERMISSION, FakeNvml
from gpunuma_fakes.snapshot import load_snapshot

#: Every member a snapshot may hold, below its top folder.
ALLOWED = re.compile(
    r"^[^/]+/("
    r"gpunuma\.json|nvml\.json|proc/meminfo|proc/driver/nvidia/version"
    r"|proc/self/(status|cgroup|task/\d+/status)"
    r"|proc/driver/nvidia/gpus/[^/]+/(information|numa_status)"
    r"|sys/devices/system/node/[^/]+|sys/devices/system/node/node\d+/(cpulist|cpumap|distance|meminfo)"
    r"|sys/devices/system/cpu/[^/]+|sys/devices/system/cpu/cpu\d+/(online|topology/[^/]+|cache/index\d+/[^/]+)"
    r"|sys/bus/pci/devices/[^/]+/[^/]+|sys/bus/pci/devices/[^/]+/drm/(card|renderD)\d+/dev"
    r"|dev/(nvidiactl|nvidia\d+|kfd|dri/(card|renderD)\d+)"
    r"|sys/devices/pci[^/]+(/[^/]+)*/(class|vendor|device|numa_node|local_cpulist|local_cpus|product_name)"
    r"|sys/devices/pci[^/]+(/[^/]+)*/drm/(card|renderD)\d+/dev"
    r"|sys/devices/pci[^/]+(/[^/]+)*/infiniband/[^/]+/ports/\d+/(link_layer|state)"
    r"|sys/devices/pci[^/]+(/[^/]+)*/net/[^/]+/type"
    r"|sys/fs/cgroup(/[^/]+)*/cpuset\.[a-z_.]+"
    r")$"
)


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()}  # type: ignore[union-attr]


def _relative(topology: Topology, root: Path | str) -> Topology:
    """The topology with its notes naming files relative to ``root``, so two copies of a tree compare."""
    notes = tuple(note.replace(f"{root}/", "") for note in topology.notes)
    gpus = tuple(dataclasses.replace(g, notes=tuple(n.replace(f"{root}/", "") for n in g.notes)) for g in topology.gpus)
    return dataclasses.replace(topology, notes=notes, gpus=gpus)


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_a_snapshot_replays_the_machine_and_its_nvml_as_they_were(name, rendered, tmp_path):
    spec = machine(name)
    root = rendered(name)

    write_snapshot(tmp_path / "host.tar.gz", root=root, nvml=FakeNvml(spec))
    host = load_snapshot(tmp_path / "host.tar.gz")

    assert _relative(host.topology(), host.tree.root) == _relative(SysfsTopology(root=root).read(), root)
    assert host.allowed() == SysfsTopology(root=root).allowed()
    replayed = host.source(kind="auto").read()
    expected = AutoTopology(nvml=FakeNvml(spec), sysfs=SysfsTopology(root=str(root))).read()
    assert _relative(replayed, host.tree.root) == _relative(expected, root)


def test_a_dgx_snapshot_is_small(rendered, tmp_path):
    summary = write_snapshot(tmp_path / "dgx.tar.gz", root=rendered("dgx-h100"), nvml=FakeNvml(machine("dgx-h100")))

    assert summary.size < 100_000  # 224 CPUs, 8 GPUs, ~1,900 files
    assert summary.gpus == 8 and summary.nvml_error is None


@pytest.mark.parametrize("name", ["dgx-h100", "container-dgx-h100", "gb200"])
def test_a_snapshot_holds_only_the_listed_files(name, rendered, tmp_path):
    write_snapshot(tmp_path / "s.tar.gz", root=rendered(name), nvml=FakeNvml(machine(name)))

    names = set(_members(tmp_path / "s.tar.gz"))

    assert {n for n in names if not ALLOWED.match(n)} == set()
    assert {n.split("/")[0] for n in names} == {"s"}


def test_a_snapshot_of_this_host_holds_no_environment_and_no_other_process(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUNUMA_TEST_SECRET", "s3cr3t-token-4242")
    (tmp_path / "argv-s3cr3t").touch()

    summary = write_snapshot(tmp_path / "live.tar.gz", nvml=FakeNvml(machine("workstation")))

    members = _members(summary.path)
    assert {n for n in members if not ALLOWED.match(n)} == set()
    assert not any(b"s3cr3t" in data for data in members.values())
    assert not any(re.search(r"/proc/\d+/", n) for n in members)
    meta = json.loads(members["live/gpunuma.json"])
    assert meta["format"] == 1 and meta["kernel"]


def test_nvml_answers_are_recorded_per_gpu():
    record = record_nvml(FakeNvml(machine("gb200")), cpu_words=3, node_words=1)

    gpus = record["gpus"]
    assert [g["index"] for g in gpus] == [0, 1, 2, 3]
    assert [g["numa_node_id"] for g in gpus] == [2, 10, 18, 26]  # the HBM nodes
    assert gpus[0]["bus_id"].endswith(":01:00.0") and gpus[0]["uuid"].startswith("GPU-")
    assert set(gpus[0]) >= {"cpu_affinity", "cpu_affinity_socket", "memory_affinity_node", "mig_mode"}


def test_an_unsupported_answer_is_recorded_as_its_error():
    record = record_nvml(FakeNvml(machine("cloud-vm")), cpu_words=1, node_words=1)

    assert {g["numa_node_id_error"] for g in record["gpus"]} == {"NVMLError_NotSupported: Not Supported"}
    assert not any("numa_node_id" in g for g in record["gpus"])


def test_mig_devices_are_recorded():
    spec = machine("gh200")
    migs = ("MIG-11111111-2222-3333-4444-555555555555", "MIG-66666666-7777-8888-9999-000000000000")
    spec = dataclasses.replace(spec, gpus=(dataclasses.replace(spec.gpus[0], mig_uuids=migs),))

    record = record_nvml(FakeNvml(spec), cpu_words=2, node_words=1)

    assert record["gpus"][0]["mig_devices"] == list(migs)
    assert record["gpus"][0]["mig_mode"] == [1, 1]


@pytest.mark.parametrize(("failure", "error"), [("driver_not_loaded", "DriverNotLoaded"),
                                                 ("library_not_found", "LibraryNotFound")])
def test_nvml_that_does_not_start_is_recorded_and_replayed(failure, error, rendered, tmp_path):
    spec = machine("dgx-h100")
    summary = write_snapshot(tmp_path / "s.tar.gz", root=rendered("dgx-h100"), nvml=FakeNvml(spec, failure=failure))

    host = load_snapshot(summary.path)

    assert summary.nvml_error == f"NVMLError_{error}: " + summary.nvml_error.split(": ", 1)[1]
    topology = host.source(kind="auto").read()
    assert topology.source == "auto(sysfs)"
    assert [error in note.values["error"] for note in with_code(topology.notes, "nvml_not_used")] == [True]


def test_a_refused_answer_replays_as_the_same_error(rendered, tmp_path):
    spec = machine("dgx-h100")
    nvml = FakeNvml(spec, failures={"nvmlDeviceGetMemoryAffinity": NVML_ERROR_NO_PERMISSION})
    write_snapshot(tmp_path / "s.tar.gz", root=rendered("dgx-h100"), nvml=nvml)

    replayed = load_snapshot(tmp_path / "s.tar.gz").source(kind="nvml").read()
    sysfs = SysfsTopology(root=str(rendered("dgx-h100")))
    original = AutoTopology(nvml=FakeNvml(spec, failures=nvml.failures), sysfs=sysfs).read()

    assert [g.notes for g in replayed.gpus] == [g.notes for g in original.gpus]
    assert all("nvmlDeviceGetMemoryAffinity: NoPermission" in g.notes for g in replayed.gpus)


@pytest.mark.parametrize("name", ["host.zip", "host.tar.lz4", "host"])
def test_an_unknown_archive_suffix_is_refused_before_anything_is_read(name, tmp_path):
    with pytest.raises(SnapshotError, match=r"\.tar\.gz, \.tar\.bz2 or \.tar\.xz"):
        write_snapshot(tmp_path / name, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_root_without_sysfs_is_refused(tmp_path):
    with pytest.raises(SnapshotError, match="no sysfs CPU directory"):
        write_snapshot(tmp_path / "s.tar.gz", root=tmp_path / "empty")
    assert not (tmp_path / "s.tar.gz").exists()


@pytest.mark.parametrize("suffix", [".tar.bz2", ".tar.xz"])
def test_other_compressions_are_written_and_read(suffix, rendered, tmp_path):
    nvml = FakeNvml(machine("workstation"))
    summary = write_snapshot(tmp_path / f"ws{suffix}", root=rendered("workstation"), nvml=nvml)

    tree = open_tree(summary.path).tree
    assert SysfsTopology(root=tree).read() == SysfsTopology(root=rendered("workstation")).read()
