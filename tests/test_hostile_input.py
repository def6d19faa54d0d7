"""Hostile input ends typed: a file that cannot be read, an absurd value, a strange string from the
environment or the caller is a typed gpunuma error (strict) or a "not bound" report with the reason
(best-effort); never a raw exception, never a MemoryError, never a wrong binding.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.api import bind_to_gpu, bind_to_node
from gpunuma.core.reasons import codes
from gpunuma.errors import GpunumaError, NotBoundError, TopologyError
from gpunuma_fakes import machine
from gpunuma_fakes.kernel import SimulatedKernel

DGX = machine("dgx-h100")
GPU5 = "sys/bus/pci/devices/0000:c3:00.0/"
GPU3 = "sys/bus/pci/devices/0000:61:00.0/"
HUGE = "9" * 5000  # int() refuses more than 4300 decimal digits with a bare ValueError
ARABIC_ONE = "\u0661"  # int() reads it as 1; the kernel and CUDA never write it
#: A file that exists and that even root may not read (procfs sysctl permissions apply to root).
UNREADABLE = "/proc/sys/vm/compact_memory"


def _eacces_available() -> bool:
    try:
        with open(UNREADABLE, "rb"):
            return False
    except PermissionError:
        return True
    except OSError:
        return False


def damage(root: Path, relative: str, how: str) -> None:
    path = root / relative
    if path.is_symlink() or path.is_file():
        path.unlink()
    if how == "directory":  # EISDIR
        path.mkdir()
    elif how == "loop":  # ELOOP
        path.symlink_to(path.name)
    elif how == "unreadable":  # EACCES
        path.symlink_to(UNREADABLE)
    elif how == "endless":  # a "file" that never ends: read no further than a kernel file could be
        path.symlink_to("/dev/zero")
    elif how == "fifo":  # a captured tree with a FIFO in a file's place: no reader may block on it
        os.mkfifo(path)
    elif how == "dangling":  # a link to nothing (a device removed while the tree was captured)
        path.symlink_to(path.parent / "gone")
    else:
        path.write_text(how)


FILE_DAMAGE = [
    pytest.param(GPU5 + "numa_node", "directory", id="EISDIR"),
    pytest.param(GPU5 + "class", "loop", id="ELOOP"),
    pytest.param(GPU5 + "vendor", "unreadable", id="EACCES",
                 marks=pytest.mark.skipif(not _eacces_available(), reason=f"{UNREADABLE} is readable here")),
    pytest.param(GPU5 + "local_cpulist", "endless", id="dev-zero"),
    pytest.param("sys/devices/system/node/node1/cpulist", "0-99999999\n", id="cpulist-100M-cpus"),
    pytest.param("sys/fs/cgroup/cpuset.cpus.effective", "0-99999999\n", id="cgroup-100M-cpus"),
    pytest.param(GPU5 + "numa_node", HUGE + "\n", id="numa_node-5000-digits"),
    pytest.param(GPU5 + "numa_node", ARABIC_ONE + "\n", id="numa_node-non-ascii-digit"),
    pytest.param(GPU5 + "numa_node", "99999999999999999999\n", id="numa_node-beyond-any-kernel"),
    pytest.param(GPU5 + "class", "fifo", id="class-fifo"),
    pytest.param("sys/class/infiniband/mlx5_0/device/numa_node", "4096\n", id="nic-numa_node-beyond-any-kernel"),
    # A GPU the NVIDIA driver lists that the PCI bus does not show: dropping it would renumber the GPUs after it.
    pytest.param(GPU5 + "vendor", "", id="vendor-blank-on-this-gpu"),
    pytest.param(GPU3 + "vendor", "", id="vendor-blank-on-an-earlier-gpu"),
    pytest.param(GPU3.rstrip("/"), "dangling", id="earlier-gpu-link-dangles"),
    # Node 1 claiming node 0's CPUs too: a CPU belongs to one node.
    pytest.param("sys/devices/system/node/node1/cpulist", "0-111,168-223\n", id="node-cpulists-overlap"),
    pytest.param("sys/devices/system/node/node0/meminfo", f"Node 0 MemTotal: {HUGE} kB\n", id="meminfo-5000-digits"),
    pytest.param("sys/devices/system/node/node0/distance", f"10 {HUGE}\n", id="distance-5000-digits"),
]


@pytest.mark.parametrize(("relative", "how"), FILE_DAMAGE)
def test_a_damaged_file_is_not_bound_with_the_reason_or_a_typed_error(render, relative, how):
    root = render(DGX)
    damage(root, relative, how)
    kernel = SimulatedKernel.for_machine(DGX)

    report = bind_to_gpu(5, source=SysfsTopology(root=root), binder=kernel, env={})
    with pytest.raises(NotBoundError) as caught:
        bind_to_gpu(5, source=SysfsTopology(root=root), binder=kernel, env={}, strict=True)

    assert not report.bound and codes(report.reasons) == ("plan_failed",)
    assert isinstance(caught.value.__cause__, TopologyError), "the typed error that stopped it is its cause"
    assert relative.rstrip("/").split("/")[-1] in str(caught.value)  # the file is named
    assert kernel.applied == []


@pytest.mark.parametrize("how", ["fifo", "devnull"])
def test_a_file_that_gives_nothing_is_no_value_and_never_blocks(render, how):
    # A FIFO (nothing writes it) or a file masked with /dev/null, as hardened containers mask paths: empty, read
    # at once, so the GPU's node is unknown (noted) rather than the read blocking forever or failing whole.
    root = render(DGX)
    path = root / GPU5 / "numa_node"
    path.unlink()
    if how == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/null")

    topology = SysfsTopology(root=root).read()

    gpu5 = topology.gpu(5)
    assert gpu5 is not None and gpu5.numa_node is None
    assert codes(gpu5.notes) == ("sysfs_gpu_node_unknown",)


def test_a_thread_status_whose_tgid_is_not_a_number_is_a_typed_error(render):
    from gpunuma.adapters.kernel_view import read_kernel_view

    root = render(DGX)
    status = root / "proc/4242/status"
    status.write_text(status.read_text().replace("Tgid:\t4242", f"Tgid:\t{HUGE}"))

    with pytest.raises(GpunumaError):
        read_kernel_view(4242, proc_root=root / "proc")


STRINGS = [
    pytest.param({"gpu": HUGE}, id="gpu-5000-digits"),
    pytest.param({"gpu": "-" + HUGE}, id="gpu-minus-5000-digits"),
    pytest.param({"gpu": "cuda:" + HUGE}, id="gpu-cuda-5000-digits"),
    pytest.param({"gpu": ARABIC_ONE}, id="gpu-non-ascii-digit"),
    pytest.param({"env": {"CUDA_VISIBLE_DEVICES": HUGE}}, id="CUDA_VISIBLE_DEVICES-5000-digits"),
    pytest.param({"env": {"CUDA_VISIBLE_DEVICES": ARABIC_ONE}}, id="CUDA_VISIBLE_DEVICES-non-ascii-digit"),
    pytest.param({"env": {"CUDA_VISIBLE_DEVICES": "GPU-" + "a" * 100_000}}, id="CUDA_VISIBLE_DEVICES-100k-uuid"),
    pytest.param({"env": {"CUDA_VISIBLE_DEVICES": "\x00"}}, id="CUDA_VISIBLE_DEVICES-NUL"),
    pytest.param({"env": {"LOCAL_RANK": HUGE}}, id="LOCAL_RANK-5000-digits"),
    pytest.param({"env": {"LOCAL_RANK": ARABIC_ONE}}, id="LOCAL_RANK-non-ascii-digit"),
    pytest.param({"env": {"ROCR_VISIBLE_DEVICES": HUGE}}, id="ROCR_VISIBLE_DEVICES-5000-digits"),
    pytest.param({"env": {"NVIDIA_VISIBLE_DEVICES": HUGE}}, id="NVIDIA_VISIBLE_DEVICES-5000-digits"),
]


@pytest.mark.parametrize("given", STRINGS)
def test_a_strange_string_from_the_caller_or_the_environment_never_binds_a_wrong_gpu(rendered, given):
    source = SysfsTopology(root=rendered("dgx-h100"))
    kernel = SimulatedKernel.for_machine(DGX)
    call = {"gpu": given.get("gpu"), "source": source, "binder": kernel, "env": given.get("env", {})}

    report = bind_to_gpu(**call)
    try:
        strict = bind_to_gpu(**call, strict=True)
    except GpunumaError as err:
        assert len(str(err)) < 1000  # a huge value is cut short, not echoed whole
    else:
        assert strict.plan.gpus == report.plan.gpus

    # Nothing names GPU 1 (what int() makes of U+0661) nor any one GPU: at most every GPU, as if unset.
    assert report.plan.gpus in ((), tuple(range(8)))
    assert all(len(reason) < 1000 for reason in report.reasons)


def test_an_absurd_node_number_is_a_typed_error(rendered):
    source = SysfsTopology(root=rendered("dgx-h100"))

    report = bind_to_node(10**100, source=source, binder=SimulatedKernel.for_machine(DGX), env={})

    assert not report.bound and codes(report.reasons) == ("plan_failed",)


def test_reading_stops_at_a_megabyte(tmp_path):
    from gpunuma.adapters.files import MAX_FILE_BYTES
    from gpunuma.adapters.procfs import read_text
    from gpunuma.errors import SysfsFormatError

    big = tmp_path / "big"
    big.write_bytes(b"0," * (MAX_FILE_BYTES // 2 + 1))

    with pytest.raises(SysfsFormatError, match="not a kernel file"):
        read_text(big)
    assert read_text(tmp_path / "missing") is None
    os.symlink(shutil.which("true") or "/bin/true", tmp_path / "program")
    assert isinstance(read_text(tmp_path / "program"), str)  # a small file of any content reads
