"""The sysfs adapter's cache domains, PCIe ancestry, RDMA NICs and Intel GPUs, read from rendered trees."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from gpunuma.adapters.auto import AutoTopology
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.reasons import with_code
from gpunuma.errors import SysfsFormatError
from gpunuma_fakes import machine
from gpunuma_fakes.nvml import FakeNvml


def test_an_epyc_9654_has_twelve_l3_domains_of_eight_cores_per_socket(rendered):
    caches = SysfsTopology(root=rendered("mi300x")).read().caches

    # 2 sockets x 12 CCDs; CCD k of socket 0 = cores 8k..8k+7 and their siblings (+192).
    assert len(caches) == 24 and {cache.level for cache in caches} == {3}
    assert caches[0].cpus.to_list() == "0-7,192-199"
    assert caches[13].cpus.to_list() == "104-111,296-303"  # socket 1, CCD 1
    assert all(len(cache.cpus) == 16 for cache in caches)


@pytest.mark.parametrize(("name", "domains", "size"), [("dgx-h100", 2, 112), ("dgx-a100", 32, 8), ("snc", 4, 48)])
def test_intel_has_one_l3_per_socket_or_snc_domain_and_rome_one_per_ccx(rendered, name, domains, size):
    caches = SysfsTopology(root=rendered(name)).read().caches

    assert (len(caches), {len(cache.cpus) for cache in caches}) == (domains, {size})


def test_offline_cpus_are_left_out_of_cache_domains(rendered):
    caches = SysfsTopology(root=rendered("smt-off")).read().caches

    assert [cache.cpus.to_list() for cache in caches] == ["0-15", "16-31"]


def test_without_cache_files_the_domains_are_unknown_and_a_note_says_so(render):
    root = render(machine("workstation"))
    shutil.rmtree(root / "sys/devices/system/cpu/cpu0/cache")

    topology = SysfsTopology(root=root).read()

    assert topology.caches == ()
    assert with_code(topology.notes, "sysfs_no_cache_levels")


def test_a_cpu_without_its_last_level_files_is_left_out_with_a_note(render):
    root = render(machine("workstation"))
    for cpu in (3, 11):  # one core: both threads
        shutil.rmtree(root / f"sys/devices/system/cpu/cpu{cpu}/cache/index3")
    (root / "sys/devices/system/cpu/cpu0/cache/index3/shared_cpu_list").write_text("0-2,4-10,12-15\n")

    topology = SysfsTopology(root=root).read()

    assert [cache.cpus for cache in topology.caches] == [CpuSet.parse_list("0-2,4-10,12-15")]
    assert [note.values["cpus"] for note in with_code(topology.notes, "sysfs_cache_files_missing")] == ["3,11"]


def test_a_cache_level_the_kernel_never_writes_is_a_format_error(render):
    root = render(machine("workstation"))
    (root / "sys/devices/system/cpu/cpu0/cache/index3/level").write_text("L3\n")

    with pytest.raises(SysfsFormatError):
        SysfsTopology(root=root).read()


def test_gpus_and_nics_carry_their_pcie_ancestry_from_the_resolved_sysfs_path(rendered):
    root = rendered("dgx-h100")
    topology = SysfsTopology(root=root).read()
    gpu0 = topology.gpu(0)
    nic = next(nic for nic in topology.nics if nic.name == "mlx5_0")

    assert (root / "sys/bus/pci/devices/0000:1b:00.0").is_symlink()
    assert gpu0.pci_path[0].startswith("pci0000:") and gpu0.pci_path[-1] == "0000:1b:00.0"
    assert nic.pci_path[:-2] == gpu0.pci_path[:-2]  # one root port and switch upstream port above both
    assert (nic.pci_bus_id, nic.numa_node, nic.ports, nic.netdevs, nic.link_layer) == (
        "0000:18:00.0", 0, (1,), ("ibp24s0",), "InfiniBand"
    )


def test_the_dgx_h100_has_eight_compute_and_four_storage_rdma_devices(rendered):
    nics = SysfsTopology(root=rendered("dgx-h100")).read().nics

    assert len(nics) == 12
    assert sorted(nic.name for nic in nics if nic.link_layer == "Ethernet") == ["mlx5_2", "mlx5_8"]
    assert [nic.pci_bus_id for nic in nics][:3] == ["0000:18:00.0", "0000:29:00.0", "0000:29:00.1"]


def test_a_software_rdma_device_without_a_pci_function_is_left_out_with_a_note(render):
    # Soft-RoCE (rxe) lives under /sys/devices/virtual and has no PCI function to rank.
    root = render(machine("gb200"))
    virtual = root / "sys/devices/virtual/infiniband/rxe0"
    (virtual / "ports/1").mkdir(parents=True)
    (virtual / "ports/1/link_layer").write_text("Ethernet\n")
    (root / "sys/class/infiniband/rxe0").symlink_to("../../devices/virtual/infiniband/rxe0")

    topology = SysfsTopology(root=root).read()

    assert "rxe0" not in {nic.name for nic in topology.nics} and len(topology.nics) == 8
    assert [note.values["name"] for note in with_code(topology.notes, "sysfs_rdma_without_pci")] == ["rxe0"]


def test_a_class_link_the_kernel_would_not_write_is_resolved_through_the_device_link(render):
    root = render(machine("gb200"))
    link = root / "sys/class/infiniband/mlx5_4"
    real = link.resolve()
    link.unlink()
    (root / "elsewhere").symlink_to(real)
    link.symlink_to(root / "elsewhere")  # absolute, through another link

    nic = next(nic for nic in SysfsTopology(root=root).read().nics if nic.name == "mlx5_4")

    assert nic.pci_path == ("pci0010:02", "0010:02:01.0", "0010:03:00.0")


def test_machines_without_rdma_devices_have_no_nics_and_no_notes(rendered):
    topology = SysfsTopology(root=rendered("mi300x")).read()

    assert (topology.nics, topology.notes) == ((), ())


def test_nvml_and_auto_keep_the_kernels_pcie_view_caches_and_nics(rendered):
    spec = machine("dgx-h100")
    declared = spec.topology()

    merged = AutoTopology(nvml=FakeNvml(spec), sysfs=SysfsTopology(root=str(rendered("dgx-h100")))).read()

    assert merged.source == "auto(nvml+sysfs)"
    assert (merged.caches, merged.nics) == (declared.caches, declared.nics)
    assert [gpu.pci_path for gpu in merged.gpus] == [gpu.pci_path for gpu in declared.gpus]


def test_intel_data_center_gpus_are_read_from_sysfs(rendered):
    gpus = SysfsTopology(root=rendered("intel-max")).read().gpus

    assert [(gpu.vendor, gpu.numa_node) for gpu in gpus] == [("intel", 0)] * 3 + [("intel", 1)] * 3
    assert {gpu.uuid for gpu in gpus} == {None}


def test_intel_integrated_graphics_on_the_root_bus_is_not_a_gpu(rendered):
    root = rendered("workstation")
    igpu = root / "sys/bus/pci/devices/0000:00:02.0"
    assert ((igpu / "vendor").read_text().strip(), (igpu / "class").read_text().strip()) == ("0x8086", "0x030000")

    gpus = SysfsTopology(root=root).read().gpus

    assert [gpu.pci_bus_id for gpu in gpus] == ["0000:01:00.0"]


def test_a_flat_tree_without_device_links_reads_gpus_without_ancestry(render):
    root = render(machine("smt-off"))
    for link in (root / "sys/bus/pci/devices").iterdir():  # replace each link by a copy of its target
        target = link.resolve()
        link.unlink()
        shutil.copytree(target, link, symlinks=True)

    topology = SysfsTopology(root=root).read()

    assert [gpu.pci_path for gpu in topology.gpus] == [(), ()]
    assert dataclasses.replace(topology, gpus=(), notes=()) == dataclasses.replace(
        machine("smt-off").topology(), gpus=()
    )
