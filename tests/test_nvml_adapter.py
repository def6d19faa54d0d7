"""NvmlTopology over the fake pynvml of each simulated machine, and the fake's fidelity to pynvml."""

from __future__ import annotations

import dataclasses
import pickle
import sys

import pytest

from gpunuma.adapters.nvml import NvmlTopology
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.model import MigDevice, Topology
from gpunuma.core.ports import TopologySource
from gpunuma.errors import NvmlError
from gpunuma_fakes import MACHINES, machine
from gpunuma_fakes.nvml import FakeNvml
from gpunuma_fakes.render import machine_tree
from gpunuma_fakes.spec import Machine

NVIDIA_MACHINES = [name for name, m in MACHINES.items() if any(g.vendor == "nvidia" for g in m.gpus)]

real_pynvml = pytest.importorskip("pynvml")


def kernel_source(m: Machine) -> TopologySource:
    """The real sysfs adapter over the machine's tree (held in memory)."""
    return SysfsTopology(root=machine_tree(m), pid="self")


def nvml_topology(m: Machine, **fake: object) -> tuple[Topology, FakeNvml]:
    nvml = FakeNvml(m, **fake)  # type: ignore[arg-type]
    return NvmlTopology(nvml=nvml, sysfs=kernel_source(m)).read(), nvml


def with_mig(m: Machine, gpu: int, uuids: tuple[str, ...]) -> Machine:
    gpus = list(m.sorted_gpus())
    gpus[gpu] = dataclasses.replace(gpus[gpu], mig_uuids=uuids)
    return dataclasses.replace(m, gpus=tuple(gpus))


MIG_UUIDS = (
    "MIG-4f1c2a6e-5d1b-5a7f-9b9e-1c0d3e2f4a51",
    "MIG-8a2b3c4d-1e2f-5a6b-8c9d-0e1f2a3b4c5d",
)


# -- agreement with the declared machine ----------------------------------------------
@pytest.mark.parametrize("name", NVIDIA_MACHINES)
def test_nvml_agrees_with_declared_topology_on_every_field_nvml_knows(name: str) -> None:
    m = machine(name)
    topo, _ = nvml_topology(m)
    declared = [g for g in m.topology(nvml=True).gpus if g.vendor == "nvidia"]
    assert [g.index for g in topo.gpus] == [g.index for g in declared]
    for got, want in zip(topo.gpus, declared, strict=True):
        assert got.pci_bus_id == want.pci_bus_id
        assert got.uuid == want.uuid
        assert got.name == want.name
        assert got.local_cpus == want.local_cpus
        if got.numa_node is not None:
            assert got.numa_node == want.numa_node
    assert topo.source == "nvml"
    assert topo.nodes == m.topology().nodes


def test_dgx_h100_nvml_and_sysfs_give_the_same_topology() -> None:
    m = machine("dgx-h100")
    kernel = kernel_source(m).read()
    nvml = NvmlTopology(nvml=FakeNvml(m), sysfs=kernel_source(m)).read()
    # Every Gpu field but the NVML-only ones (memory_node, affinity_nodes) and the notes.
    blank = {"memory_node": None, "affinity_nodes": (), "notes": ()}
    stripped = [dataclasses.replace(g, **blank) for g in nvml.gpus]
    assert stripped == [dataclasses.replace(g, **blank) for g in kernel.gpus]
    assert [g.uuid for g in kernel.gpus] == [g.uuid for g in machine("dgx-h100").sorted_gpus()]
    assert [g.numa_node for g in nvml.gpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [g.affinity_nodes for g in nvml.gpus] == [(0,)] * 4 + [(1,)] * 4
    assert nvml.nodes == kernel.nodes and nvml.cpus == kernel.cpus


def test_dgx_h100_gpu_5_is_local_to_node_1_cpus() -> None:
    topo, _ = nvml_topology(machine("dgx-h100"))
    gpu = topo.gpu(5)
    assert gpu is not None
    # Socket 1 holds cores 56-111; their SMT siblings are 112 CPUs higher.
    assert gpu.pci_bus_id == "0000:c3:00.0"
    assert gpu.local_cpus == CpuSet.parse_list("56-111,168-223")
    assert gpu.numa_node == 1
    assert gpu.memory_node is None
    assert "nvmlDeviceGetNumaNodeId: NotSupported" in gpu.notes


def test_gb200_reports_hbm_nodes_as_memory_nodes_and_grace_node_as_cpu_node() -> None:
    topo, _ = nvml_topology(machine("gb200"))
    assert [g.memory_node for g in topo.gpus] == [2, 10, 18, 26]
    assert [g.numa_node for g in topo.gpus] == [0, 0, 1, 1]


def test_gh200_memory_node_is_the_hbm_node() -> None:
    topo, _ = nvml_topology(machine("gh200"))
    assert topo.gpus[0].memory_node == 1
    assert topo.gpus[0].local_cpus == CpuSet.range(0, 71)


# -- documented outcomes for missing locality -------------------------------------------
def test_vm_gpu_without_numa_id_and_with_every_cpu_affinity_has_no_node_and_says_why() -> None:
    topo, _ = nvml_topology(machine("cloud-vm"))
    for gpu in topo.gpus:
        assert gpu.numa_node is None
        assert gpu.memory_node is None
        assert "nvmlDeviceGetNumaNodeId: NotSupported" in gpu.notes
        assert "CPU affinity is every CPU: no locality reported" in gpu.notes


def test_socket_wide_affinity_identifies_no_single_node() -> None:
    topo, _ = nvml_topology(machine("snc-socket-affinity"))
    assert [g.numa_node for g in topo.gpus] == [None] * 6
    assert "CPU affinity spans nodes 0-1" in topo.gpus[0].notes
    assert "CPU affinity spans nodes 2-3" in topo.gpus[5].notes


def test_no_numa_id_anywhere_leaves_memory_node_unknown_but_cpu_node_known() -> None:
    topo, nvml = nvml_topology(machine("gb200"), failure="no_numa_id")
    assert [g.memory_node for g in topo.gpus] == [None] * 4
    assert [g.numa_node for g in topo.gpus] == [0, 0, 1, 1]
    assert nvml.calls["nvmlDeviceGetNumaNodeId"] == 4


def test_missing_scoped_affinity_falls_back_to_the_unscoped_call() -> None:
    topo, nvml = nvml_topology(machine("dgx-a100"), failure="no_scope_affinity")
    assert [g.numa_node for g in topo.gpus] == [3, 3, 1, 1, 7, 7, 5, 5]
    assert nvml.calls["nvmlDeviceGetCpuAffinity"] == 8
    assert "nvmlDeviceGetCpuAffinityWithinScope: FunctionNotFound" in topo.gpus[0].notes


@pytest.mark.parametrize("code, name", [(3, "NotSupported"), (4, "NoPermission"), (13, "FunctionNotFound")])
def test_per_call_failure_leaves_the_field_unknown_with_a_note(code: int, name: str) -> None:
    topo, nvml = nvml_topology(machine("dgx-h100"), failures={"nvmlDeviceGetMemoryAffinity": code})
    assert all(g.affinity_nodes == () for g in topo.gpus)
    assert all(f"nvmlDeviceGetMemoryAffinity: {name}" in g.notes for g in topo.gpus)
    assert [g.numa_node for g in topo.gpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert nvml.refcount == 0


def test_no_affinity_at_all_leaves_locality_unknown() -> None:
    failures = {"nvmlDeviceGetCpuAffinityWithinScope": 13, "nvmlDeviceGetCpuAffinity": 3}
    topo, _ = nvml_topology(machine("smt-off"), failures=failures)
    assert [(g.numa_node, g.local_cpus) for g in topo.gpus] == [(None, None), (None, None)]
    assert "no CPU affinity: locality unknown" in topo.gpus[0].notes


def test_a_gpu_nvml_may_not_open_is_skipped_with_a_topology_note() -> None:
    topo, _ = nvml_topology(machine("smt-off"), failures={"nvmlDeviceGetHandleByIndex": 4})
    assert topo.gpus == ()
    assert "NVML GPU 0 skipped: nvmlDeviceGetHandleByIndex: NoPermission" in topo.notes


def test_older_pynvml_bytes_are_decoded() -> None:
    topo, _ = nvml_topology(machine("dgx-h100"), bytes_strings=True)
    assert topo.gpus[0].pci_bus_id == "0000:1b:00.0"
    assert topo.gpus[0].uuid == machine("dgx-h100").sorted_gpus()[0].uuid
    assert topo.gpus[0].name == "NVIDIA H100 80GB HBM3"


def test_mig_devices_are_listed_under_their_parent() -> None:
    m = with_mig(machine("dgx-h100"), 6, MIG_UUIDS)
    topo, _ = nvml_topology(m)
    assert topo.gpus[6].mig_devices == tuple(MigDevice(uuid=u, parent_index=6) for u in MIG_UUIDS)
    assert all(g.mig_devices == () for g in topo.gpus if g.index != 6)


# -- whole-NVML failures -------------------------------------------------------------------
@pytest.mark.parametrize(
    "fake, code, words",
    [
        ({"failure": "library_not_found"}, 12, "libnvidia-ml.so.1"),
        ({"failure": "driver_not_loaded"}, 9, "driver is not loaded"),
        ({"failures": {"nvmlInit": 4}}, 4, "NoPermission"),
    ],
)
def test_nvml_that_cannot_start_raises_nvml_error_with_code(fake: dict, code: int, words: str) -> None:
    m = machine("dgx-h100")
    nvml = FakeNvml(m, **fake)
    source = NvmlTopology(nvml=nvml, sysfs=kernel_source(m))
    with pytest.raises(NvmlError, match=words) as caught:
        source.read()
    assert caught.value.code == code
    assert isinstance(caught.value.__cause__, nvml.NVMLError)
    assert nvml.init_count == nvml.shutdown_count == 0


def test_machine_without_nvidia_gpus_has_no_nvml_library() -> None:
    m = machine("mi300x")
    with pytest.raises(NvmlError) as caught:
        NvmlTopology(nvml=FakeNvml(m), sysfs=kernel_source(m)).read()
    assert caught.value.code == 12


def test_fatal_device_error_is_translated_and_nvml_still_shut_down() -> None:
    m = machine("dgx-h100")
    nvml = FakeNvml(m, failures={"nvmlDeviceGetPciInfo": 15})  # GPU is lost
    with pytest.raises(NvmlError, match="nvmlDeviceGetPciInfo failed: GpuIsLost") as caught:
        NvmlTopology(nvml=nvml, sysfs=kernel_source(m)).read()
    assert caught.value.code == 15
    assert (nvml.init_count, nvml.shutdown_count, nvml.refcount) == (1, 1, 0)


@pytest.mark.parametrize("name", NVIDIA_MACHINES)
def test_every_read_inits_once_and_shuts_down_once(name: str) -> None:
    _, nvml = nvml_topology(machine(name))
    assert (nvml.init_count, nvml.shutdown_count, nvml.refcount) == (1, 1, 0)


def test_missing_pynvml_module_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    source = NvmlTopology(sysfs=kernel_source(machine("workstation")))
    with pytest.raises(NvmlError, match=r"pip install gpunuma\[nvml\]"):
        source.read()


def test_allowed_comes_from_the_kernel() -> None:
    m = machine("container-dgx-h100")
    source = NvmlTopology(nvml=FakeNvml(m), sysfs=kernel_source(m))
    assert source.allowed() == m.allowed()
    assert isinstance(source, TopologySource)


# -- the fake's fidelity to pynvml ------------------------------------------------------------
@pytest.mark.parametrize("code", [1, 2, 3, 4, 6, 9, 12, 13])
def test_fake_error_classes_match_pynvml(code: int) -> None:
    fake = FakeNvml(machine("workstation"))
    real = real_pynvml.NVMLError(code)
    mine = fake.NVMLError(code)
    assert type(mine).__name__ == type(real).__name__
    assert mine.value == real.value == code
    assert isinstance(mine, getattr(fake, type(real).__name__))
    assert getattr(fake, f"NVML_ERROR_{type(real).__name__.removeprefix('NVMLError_').upper()}", code) == code


def test_fake_exposes_every_name_it_shares_with_pynvml_with_the_same_constants() -> None:
    fake = FakeNvml(machine("workstation"))
    public = [a for a in dir(fake) if a.startswith(("nvml", "NVML"))]
    for attr in public:
        assert hasattr(real_pynvml, attr), attr
        if attr.startswith("NVML_") and isinstance(getattr(fake, attr), int):
            assert getattr(fake, attr) == getattr(real_pynvml, attr), attr


def test_fake_calls_before_init_raise_uninitialized_and_shutdown_is_refcounted() -> None:
    fake = FakeNvml(machine("workstation"))
    with pytest.raises(fake.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()
    fake.nvmlInit()
    fake.nvmlInit()
    fake.nvmlShutdown()
    assert fake.nvmlDeviceGetCount() == 1
    fake.nvmlShutdown()
    with pytest.raises(fake.NVMLError_Uninitialized):
        fake.nvmlShutdown()
    assert (fake.init_count, fake.shutdown_count) == (2, 2)


def test_fake_handle_lookup_needs_full_uuid_and_accepts_either_bus_id_form() -> None:
    m = with_mig(machine("dgx-h100"), 6, MIG_UUIDS)
    fake = FakeNvml(m)
    fake.nvmlInit()
    uuid = m.sorted_gpus()[6].uuid
    assert fake.nvmlDeviceGetUUID(fake.nvmlDeviceGetHandleByUUID(uuid)) == uuid
    with pytest.raises(fake.NVMLError_NotFound):
        fake.nvmlDeviceGetHandleByUUID(uuid[:12])
    mig = fake.nvmlDeviceGetHandleByUUID(MIG_UUIDS[1])
    assert fake.nvmlDeviceIsMigDeviceHandle(mig)
    parent = fake.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
    assert fake.nvmlDeviceGetPciInfo(parent).busId == "00000000:D1:00.0"
    with pytest.raises(fake.NVMLError_NotSupported):
        fake.nvmlDeviceGetPciInfo(mig)
    for form in ("00000000:D1:00.0", "0000:d1:00.0", "d1:00.0"):
        assert fake.nvmlDeviceGetHandleByPciBusId(form) == parent
    with pytest.raises(fake.NVMLError_NotFound):
        fake.nvmlDeviceGetHandleByPciBusId("0000:d2:00.0")


def test_fake_is_picklable_with_its_state_and_errors() -> None:
    fake = FakeNvml(machine("dgx-h100"), failure="no_numa_id")
    fake.nvmlInit()
    copy = pickle.loads(pickle.dumps(fake))
    assert copy.refcount == 1 and copy.failure == "no_numa_id"
    with pytest.raises(copy.NVMLError_NotSupported):
        copy.nvmlDeviceGetNumaNodeId(copy.nvmlDeviceGetHandleByIndex(0))
    error = pickle.loads(pickle.dumps(fake.NVMLError(9)))
    assert type(error).__name__ == "NVMLError_DriverNotLoaded" and error.value == 9


def test_fake_as_module_shares_state_with_the_instance() -> None:
    m = machine("workstation")
    fake = FakeNvml(m)
    module = fake.as_module()
    topo = NvmlTopology(nvml=module, sysfs=kernel_source(m)).read()
    assert topo.gpus[0].pci_bus_id == "0000:01:00.0"
    assert (fake.init_count, fake.shutdown_count) == (1, 1)


def test_fake_socket_scope_widens_to_the_package() -> None:
    m = machine("snc")
    fake = FakeNvml(m)
    fake.nvmlInit()
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    node = CpuSet.from_nvml_words(fake.nvmlDeviceGetCpuAffinityWithinScope(handle, 4, fake.NVML_AFFINITY_SCOPE_NODE))
    socket = CpuSet.from_nvml_words(
        fake.nvmlDeviceGetCpuAffinityWithinScope(handle, 4, fake.NVML_AFFINITY_SCOPE_SOCKET)
    )
    # SNC2: node 0 is half of socket 0 (cores 0-23 of 48, with SMT siblings 96 higher).
    assert node == CpuSet.parse_list("0-23,96-119")
    assert socket == CpuSet.parse_list("0-47,96-143")
