"""Containers and vendors: the GPUs a process can use come from what its container exposes, never from
the host's PCI list, and CUDA/ROCm number only their own vendor's GPUs."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from gpunuma import compose
from gpunuma.adapters.auto import AutoTopology
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.api import bind_to_gpu
from gpunuma.core.exposure import DeviceAccess, DeviceIds, usable_gpus
from gpunuma.core.filetree import FileTree
from gpunuma.core.identity import GpuEnvironment
from gpunuma.core.model import Gpu
from gpunuma.core.reasons import with_code
from gpunuma.settings import CapturedTree, Options
from gpunuma_fakes import Machine, machine
from gpunuma_fakes.kernel import SimulatedKernel
from gpunuma_fakes.nvml import FakeNvml

DOCKER = machine("docker-dgx-h100")
C3 = "0000:c3:00.0"  # host GPU 5, node 1: the one GPU the runtime gave the container


class FakeRay:
    def __init__(self, ids: Sequence[int | str]) -> None:
        self.ids = list(ids)

    def get_gpu_ids(self) -> list[int | str]:
        return self.ids


def _bind(spec: Machine, source: object, env: dict[str, str] | None = None, ray: FakeRay | None = None):
    kernel = SimulatedKernel.for_machine(spec)
    env = spec.environment() if env is None else env
    return bind_to_gpu(source=source, binder=kernel, env=env, ray=ray)  # type: ignore[arg-type]


# -- NVIDIA containers ---------------------------------------------------------------------------
@pytest.mark.parametrize("nvml", ["none", "failing", "working"])
def test_a_container_given_gpu_5_binds_to_its_node_whatever_nvml_does(rendered, nvml):
    root = str(rendered("docker-dgx-h100"))
    source = {
        "none": SysfsTopology(root=root),
        "failing": AutoTopology(nvml=FakeNvml(DOCKER, failure="driver_not_loaded"), sysfs=SysfsTopology(root=root)),
        "working": AutoTopology(nvml=FakeNvml(DOCKER), sysfs=SysfsTopology(root=root)),
    }[nvml]

    report = _bind(DOCKER, source)

    # CUDA_VISIBLE_DEVICES is unset: the process owns every GPU it can see, and it sees one.
    assert [g.pci_bus_id for g in source.read().gpus] == [C3]
    assert report.bound and report.plan.gpus == (0,) and report.plan.nodes == (1,)


def test_the_host_pci_list_still_shows_all_eight(rendered):
    pci = Path(rendered("docker-dgx-h100")) / "sys/bus/pci/devices"
    nvidia_gpus = [d for d in os.listdir(pci) if (pci / d / "class").read_text().startswith("0x0302")]

    assert len(nvidia_gpus) == 8  # sysfs is not namespaced: the filter is what makes the answer right


def test_cdi_narrows_only_the_device_nodes_and_that_is_enough(render):
    spec = dataclasses.replace(DOCKER, cdi=True)
    root = render(spec)

    assert len(os.listdir(root / "proc/driver/nvidia/gpus")) == 8  # CDI leaves the driver's listing alone
    assert spec.environment() == {"NVIDIA_VISIBLE_DEVICES": "void"}
    source = SysfsTopology(root=root)
    assert [g.pci_bus_id for g in source.read().gpus] == [C3]
    assert _bind(spec, source).plan.nodes == (1,)


def test_a_container_without_the_nvidia_runtime_can_open_no_gpu(render):
    root = render(machine("dgx-h100"))
    for name in os.listdir(root / "dev"):
        if name.startswith("nvidia"):
            os.remove(root / "dev" / name)

    topology = SysfsTopology(root=root).read()
    report = _bind(machine("dgx-h100"), SysfsTopology(root=root), env={})

    assert topology.gpus == ()
    refused = with_code(topology.notes, "gpus_not_openable")
    assert [(n.values["why"].code, n.values["buses"].count(":00.0")) for n in refused] == [("nvidiactl_missing", 8)]
    assert not report.bound


@pytest.fixture
def bare_docker(edit) -> FileTree:
    """The container's tree with neither /proc/driver/nvidia nor /dev: only the variable is left to read."""
    tree = edit(DOCKER)
    tree.delete("proc/driver")
    tree.delete("dev")
    return tree.tree


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", [C3]),
        ("5:0", [C3]),  # a MIG index pair names its GPU before the colon
        ("none", []),
        ("all", "every"),
        ("void", "every"),
        (None, "every"),
        ("MIG-8a2b3c4d-1e2f-5a6b-8c9d-0e1f2a3b4c5d", "every"),  # cannot be matched here: narrows nothing
        ("GPU-0ea40d17", "every"),  # no UUIDs without the driver's files: narrows nothing
        ("9" * 5000, []),  # a huge index names no GPU; no ValueError from int()
        ("\u0665", "every"),  # ARABIC-INDIC DIGIT FIVE is not an index: narrows nothing
    ],
)
def test_nvidia_visible_devices_decides_only_when_the_files_say_nothing(bare_docker, value, expected):
    gpus = SysfsTopology(root=bare_docker, nvidia_visible_devices=value).read().gpus

    buses = [g.pci_bus_id for g in gpus]
    assert buses == (sorted(g.bus_id for g in DOCKER.gpus) if expected == "every" else expected)
    assert [g.index for g in gpus] == list(range(len(gpus)))


@pytest.mark.parametrize("source", ["sysfs", "auto"])
def test_the_composition_root_hands_the_variable_to_the_sysfs_reader(bare_docker, source):
    options = Options(source=source, machine=CapturedTree(bare_docker))
    environment = GpuEnvironment.from_mapping({"NVIDIA_VISIBLE_DEVICES": "5"})

    planned = compose.plan(options, environment=environment)

    assert planned.gpu_labels == ("GPU 0 (0000:c3:00.0)",) and planned.nodes == (1,)


def test_the_files_win_over_the_variable(rendered):
    source = SysfsTopology(root=rendered("docker-dgx-h100"), nvidia_visible_devices="0,1")

    assert [g.pci_bus_id for g in source.read().gpus] == [C3]


@pytest.mark.parametrize("damage", ["file", "loop"])
def test_an_unreadable_dev_is_no_evidence_not_an_error(render, damage):
    root = render(machine("dgx-h100"))
    path = root / "dev"
    shutil.rmtree(path)
    if damage == "file":
        path.write_text("not a directory\n")  # ENOTDIR
    else:
        path.symlink_to(path.name)  # ELOOP

    gpus = SysfsTopology(root=root).read().gpus

    assert len(gpus) == 8


# -- AMD containers ------------------------------------------------------------------------------
def test_an_amd_container_given_one_render_node_binds_to_that_gpus_node(rendered):
    spec = machine("docker-mi300x")
    source = SysfsTopology(root=rendered("docker-mi300x"))

    gpus = source.read().gpus
    report = _bind(spec, source)

    assert [(g.index, g.pci_bus_id, g.vendor) for g in gpus] == [(0, "0000:c6:00.0", "amd")]
    assert report.bound and report.plan.nodes == (1,)


def test_without_dev_kfd_rocm_can_open_no_amd_gpu(render):
    root = render(machine("mi300x"))
    os.remove(root / "dev/kfd")

    topology = SysfsTopology(root=root).read()

    assert topology.gpus == ()
    refused = with_code(topology.notes, "gpus_not_openable")
    assert [(n.values["why"].code, n.values["buses"].count(":00.0")) for n in refused] == [("kfd_missing", 8)]


# -- one vendor's numbering ----------------------------------------------------------------------
SERVER = machine("server-amd-vga")


@pytest.mark.parametrize("with_nvml", [False, True])
def test_ray_gpu_1_is_the_second_nvidia_gpu_whatever_sits_between(rendered, with_nvml):
    root = str(rendered("server-amd-vga"))
    sysfs = SysfsTopology(root=root)
    source = AutoTopology(nvml=FakeNvml(SERVER), sysfs=sysfs) if with_nvml else sysfs

    report = _bind(SERVER, source, env={}, ray=FakeRay([1]))

    assert report.plan.gpu_labels == ("GPU 1 (0000:84:00.0)",)
    assert report.plan.nodes == (1,)


def test_cuda_visible_devices_1_is_the_second_nvidia_gpu_too(rendered):
    source = SysfsTopology(root=rendered("server-amd-vga"))

    report = _bind(SERVER, source, env={"CUDA_VISIBLE_DEVICES": "1"})

    assert report.plan.nodes == (1,)


def _gpu(bus: str, vendor: str, index: int) -> Gpu:
    return Gpu(index=index, pci_bus_id=bus, vendor=vendor)


def test_usable_gpus_numbers_nvidia_first_then_amd_each_in_bus_order() -> None:
    found = [_gpu("0000:04:00.0", "nvidia", 0), _gpu("0000:08:00.0", "amd", 1), _gpu("0000:84:00.0", "nvidia", 2)]

    gpus, notes = usable_gpus(found, DeviceAccess())

    assert [(g.index, g.pci_bus_id) for g in gpus] == [(0, "0000:04:00.0"), (1, "0000:84:00.0"), (2, "0000:08:00.0")]
    assert notes == ()


def test_a_minor_without_its_device_node_is_left_out() -> None:
    found = [_gpu("0000:1b:00.0", "nvidia", 0), _gpu("0000:43:00.0", "nvidia", 1)]
    access = DeviceAccess(nvidia_listed=frozenset({"0000:1b:00.0", "0000:43:00.0"}),
                          dev_nodes=frozenset({"nvidiactl", "nvidia1"}))  # fmt: skip
    ids = {"0000:1b:00.0": DeviceIds(minor=0), "0000:43:00.0": DeviceIds(minor=1)}

    gpus, notes = usable_gpus(found, access, ids)

    assert [(g.index, g.pci_bus_id) for g in gpus] == [(0, "0000:43:00.0")]
    assert [(n.code, n.values["vendor"], n.values["buses"]) for n in notes] == [
        ("gpus_not_openable", "NVIDIA", "0000:1b:00.0")]
    assert [(n.values["why"].code, n.values["why"].values) for n in notes] == [
        ("nvidia_device_node_missing", {"minor": 0})]


def test_an_eight_digit_domain_in_the_driver_listing_matches_the_sysfs_bus_id() -> None:
    # libnvidia-container tries both forms of the domain when it binds the listing in.
    found = [_gpu("0000:1b:00.0", "nvidia", 0)]

    gpus, _ = usable_gpus(found, DeviceAccess(nvidia_listed=frozenset({"00000000:1B:00.0"})))

    assert len(gpus) == 1



# -- Kubernetes: a Guaranteed pod under the static CPU manager -------------------------------------------------
K8S = machine("k8s-dgx-h100")
POD_PART = {0: "8-15,120-127", 1: "64-71,176-183"}  # the pod's cores on node 0 (GPU 1) and node 1 (GPU 5)


@pytest.mark.parametrize("local", [0, 1])
def test_each_worker_of_a_static_cpu_manager_pod_binds_to_its_gpus_part_of_the_pods_cpus(local):
    # The device plugin gave the pod GPUs 1 and 5; in the pod they are cuda:0 and cuda:1.
    env = {**K8S.environment(), "CUDA_VISIBLE_DEVICES": str(local)}

    report = _bind(K8S, K8S.source(), env=env)

    assert report.bound and report.plan.nodes == (K8S.expected_nodes[local],)
    assert report.cpus.to_list() == POD_PART[local] and report.mismatches == ()


def test_the_device_plugin_names_the_pods_gpus_by_uuid_and_the_pod_sees_only_those():
    gpus = K8S.source().read().gpus

    assert [g.pci_bus_id for g in gpus] == ["0000:43:00.0", "0000:c3:00.0"]
    assert K8S.environment() == {"NVIDIA_VISIBLE_DEVICES": ",".join(g.uuid or "" for g in gpus)}
