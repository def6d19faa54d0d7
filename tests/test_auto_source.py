"""AutoTopology: sysfs alone when NVML cannot start, sysfs + NVML combined when it can."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from gpunuma.adapters.auto import AutoTopology
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.filetree import FileTree
from gpunuma.core.model import Gpu, MigDevice
from gpunuma.core.reasons import TEMPLATES, codes, with_code
from gpunuma.settings import Options
from gpunuma_fakes import MACHINES, machine, render_sysfs
from gpunuma_fakes.nvml import FAILURES, FakeNvml
from gpunuma_fakes.render import machine_tree
from gpunuma_fakes.spec import Machine


def auto(m: Machine, **fake: object) -> tuple[AutoTopology, FakeNvml]:
    nvml = FakeNvml(m, **fake)  # type: ignore[arg-type]
    return AutoTopology(nvml=nvml, sysfs=SysfsTopology(root=machine_tree(m))), nvml


def without_notes(gpu: Gpu) -> Gpu:
    return dataclasses.replace(gpu, notes=())


def replace_gpu(m: Machine, index: int, **fields: object) -> Machine:
    gpus = list(m.sorted_gpus())
    gpus[index] = dataclasses.replace(gpus[index], **fields)  # type: ignore[arg-type]
    return dataclasses.replace(m, gpus=tuple(gpus))


@pytest.mark.parametrize("name", list(MACHINES))
def test_auto_agrees_with_the_declared_topology_plus_nvml_fields(name: str) -> None:
    m = machine(name)
    source, nvml = auto(m)
    topo = source.read()
    declared = m.topology()
    assert topo.nodes == declared.nodes
    assert topo.cpus == declared.cpus
    if any(g.vendor == "nvidia" for g in m.gpus):
        assert topo.source == "auto(nvml+sysfs)"
        assert (nvml.init_count, nvml.shutdown_count) == (1, 1)
    else:
        assert topo.source == "auto(sysfs)"
    assert tuple(map(without_notes, topo.gpus)) == m.topology(nvml=True).gpus


def test_without_nvml_library_auto_is_sysfs_and_says_why() -> None:
    m = machine("dgx-h100")
    source, nvml = auto(m, failure="library_not_found")
    topo = source.read()
    assert topo.source == "auto(sysfs)"
    assert topo.gpus == SysfsTopology(root=machine_tree(m)).read().gpus
    [why] = with_code(topo.notes, "nvml_not_used")
    assert why.values["error"].startswith("nvmlInit failed: LibraryNotFound (code 12)")
    assert nvml.refcount == 0


def test_driver_not_loaded_falls_back_to_sysfs() -> None:
    source, _ = auto(machine("smt-off"), failure="driver_not_loaded")
    topo = source.read()
    assert topo.source == "auto(sysfs)"
    assert [g.numa_node for g in topo.gpus] == [0, 1]
    assert ["DriverNotLoaded" in n.values["error"] for n in with_code(topo.notes, "nvml_not_used")] == [True]


def test_kernel_node_wins_a_disagreement_with_a_warning_and_a_note(caplog: pytest.LogCaptureFixture
) -> None:
    # NVML claims GPU 1 (sysfs node 0) is near node 1's CPUs.
    m = replace_gpu(machine("dgx-h100"), 1, nvml_cpu_affinity="56-111,168-223")
    source, _ = auto(m)
    with caplog.at_level(logging.WARNING, logger="gpunuma"):
        topo = source.read()
    gpu = topo.gpu(1)
    assert gpu is not None
    assert gpu.numa_node == 0
    assert gpu.local_cpus == CpuSet.parse_list("0-55,112-167")
    note = "GPU 1 (0000:43:00.0): sysfs numa_node 0 but NVML CPU affinity says node 1; using the kernel's 0"
    assert note in topo.notes and note in gpu.notes
    assert [r.getMessage() for r in caplog.records if r.name.startswith("gpunuma.")] == [note]


def test_nvml_fills_in_where_the_kernel_says_minus_one() -> None:
    # A VM whose hypervisor gave no proximity data, but whose NVML affinity names node 1's CPUs.
    m = replace_gpu(machine("cloud-vm"), 2, nvml_cpu_affinity=machine("cloud-vm").nodes[1].cpus)
    source, _ = auto(m)
    topo = source.read()
    assert [g.numa_node for g in topo.gpus] == [None, None, 1, None]
    assert topo.gpus[2].local_cpus == CpuSet.parse_list(m.nodes[1].cpus)
    assert topo.gpus[0].local_cpus == m.all_cpus()
    assert tuple(map(without_notes, topo.gpus)) == m.topology(nvml=True).gpus


def test_mig_devices_and_uuids_come_from_nvml() -> None:
    migs = ("MIG-11111111-2222-5333-8444-555555555555",)
    m = replace_gpu(machine("gh200"), 0, mig_uuids=migs)
    source, _ = auto(m)
    topo = source.read()
    assert topo.gpus[0].mig_devices == (MigDevice(uuid=migs[0], parent_index=0),)
    assert topo.gpus[0].memory_node == 1
    assert topo.gpus[0].numa_node == 0


def test_nvidia_gpus_nvml_cannot_see_are_left_out_with_a_note() -> None:
    source, _ = auto(machine("smt-off"), failures={"nvmlDeviceGetHandleByIndex": 4})
    topo = source.read()
    assert topo.gpus == ()
    assert {"gpu": "GPU 0 (0000:3b:00.0)"} in [n.values for n in with_code(topo.notes, "gpu_not_seen_by_nvml")]


def test_allowed_is_the_kernel_view() -> None:
    m = machine("container-dgx-h100")
    source, _ = auto(m)
    assert source.allowed() == m.allowed()
    assert source.name == "auto"


def needed(m: Machine, root: FileTree | None = None, **fake: object) -> tuple[AutoTopology, FakeNvml]:
    """The auto source as the composition root builds it for a plan: NVML only where sysfs cannot answer."""
    nvml = FakeNvml(m, **fake)  # type: ignore[arg-type]
    sysfs = SysfsTopology(root=root if root is not None else machine_tree(m))
    return AutoTopology(nvml=nvml, sysfs=sysfs, nvml_when="needed"), nvml


@pytest.mark.parametrize("name", ["dgx-h100", "gh200", "mi300x", "snc"])
def test_a_machine_sysfs_fully_describes_is_read_without_asking_nvml(name: str) -> None:
    source, nvml = needed(machine(name))
    topo = source.read()
    assert nvml.calls["nvmlInit"] == 0
    assert topo.source == "auto(sysfs)"
    assert topo.gpus == SysfsTopology(root=machine_tree(machine(name))).read().gpus


def test_numa_node_minus_one_asks_nvml_which_may_know_better() -> None:
    m = replace_gpu(machine("cloud-vm"), 2, nvml_cpu_affinity=machine("cloud-vm").nodes[1].cpus)
    source, nvml = needed(m)
    topo = source.read()
    assert nvml.calls["nvmlInit"] == 1
    assert [g.numa_node for g in topo.gpus] == [None, None, 1, None]


def test_without_the_drivers_proc_listing_nvml_maps_uuids_to_bus_ids(edit) -> None:
    dgx = edit(machine("dgx-h100"))
    dgx.delete("proc/driver/nvidia/gpus/0000:1b:00.0/information")
    source, nvml = needed(machine("dgx-h100"), dgx.tree)
    topo = source.read()
    assert nvml.calls["nvmlInit"] == 1 and topo.source == "auto(nvml+sysfs)"
    assert all(gpu.uuid is not None for gpu in topo.gpus)


def test_a_plan_naming_a_mig_instance_asks_nvml_and_others_do_not(mocker) -> None:
    from gpunuma import compose
    from gpunuma.core.identity import GpuEnvironment

    spy = mocker.spy(compose, "make_source")
    mocker.patch.object(AutoTopology, "read", side_effect=RuntimeError("stop after building the source"))
    mig = "MIG-11111111-2222-5333-8444-555555555555"
    for gpus, env in [([0], {}), ([mig], {}), (None, {"CUDA_VISIBLE_DEVICES": mig}), (None, {})]:
        with pytest.raises(RuntimeError, match="stop after"):
            compose.plan(Options(), gpus=gpus, environment=GpuEnvironment.from_mapping(env))
    assert [call.kwargs["nvml_when"] for call in spy.call_args_list] == ["needed", "always", "always", "needed"]


_PROBE = """
import sys
sys.path[:0] = {paths!r}
from gpunuma.adapters.auto import AutoTopology
from gpunuma.adapters.sysfs import SysfsTopology
topology = AutoTopology(sysfs=SysfsTopology(root={root!r}, layout=False), nvml_when="needed").read()
assert len(topology.gpus) == 8 and topology.source == "auto(sysfs)", topology
print(sorted(m for m in ("pynvml",) if m in sys.modules))
"""


def test_a_worker_whose_gpus_sysfs_fully_describes_never_imports_pynvml(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    import gpunuma

    render_sysfs(machine("dgx-h100"), tmp_path)
    paths = [os.path.dirname(os.path.dirname(gpunuma.__file__))]
    out = subprocess.run([sys.executable, "-S", "-c", _PROBE.format(paths=paths, root=str(tmp_path))],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("failure", FAILURES)
def test_every_note_nvml_and_auto_give_under_each_failure_has_its_own_code(failure: str) -> None:
    source, _ = auto(machine("dgx-h100"), failure=failure)
    topo = source.read()
    every = [*topo.notes, *(note for gpu in topo.gpus for note in gpu.notes)]
    assert every and {code for code in codes(every) if code == "note" or code not in TEMPLATES} == set()
