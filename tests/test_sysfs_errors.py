"""Malformed kernel files raise typed errors that name the file and quote its text;
a missing sysfs raises TopologyUnavailableError."""

from __future__ import annotations

import dataclasses
import errno
import os

import pytest

import gpunuma
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.reasons import with_code
from gpunuma.errors import CpuSetParseError, SysfsFormatError, SysfsReadError, TopologyError, TopologyUnavailableError
from gpunuma.tools.cli import ExitCode, main
from gpunuma_fakes import machine
from gpunuma_fakes.render import PID


@pytest.fixture
def cloud(render):
    """A private cloud-vm tree (2 nodes, 16 CPUs, 4 GPUs) to damage."""
    return render(machine("cloud-vm"))


def _damage(root, relative, text):
    (root / relative).write_text(text)


@pytest.mark.parametrize(
    ("relative", "text"),
    [
        ("sys/devices/system/node/node1/cpulist", "4-7,x\n"),
        ("sys/devices/system/node/node0/cpulist", "7-4\n"),
        ("sys/devices/system/cpu/online", "0-15,\n"),
        ("sys/devices/system/cpu/cpu3/topology/core_cpus_list", "3;11\n"),
        ("sys/devices/system/cpu/cpu0/topology/physical_package_id", "zero\n"),
        ("sys/devices/system/node/node0/distance", "10 twenty\n"),
        ("sys/devices/system/node/node0/distance", "10 -20\n"),
        ("sys/devices/system/node/node1/meminfo", "Node 1 MemTotal: lots\n"),
        ("sys/bus/pci/devices/0000:00:07.0/numa_node", "banana\n"),
        ("sys/bus/pci/devices/0000:00:07.0/numa_node", "-7\n"),
        ("sys/bus/pci/devices/0000:00:07.0/local_cpulist", "0-15 all\n"),
        ("sys/bus/pci/devices/0000:00:07.0/class", "0xVGA\n"),
    ],
)
def test_malformed_sysfs_content_names_the_file_and_the_text(cloud, relative, text):
    _damage(cloud, relative, text)

    with pytest.raises(SysfsFormatError) as caught:
        SysfsTopology(root=cloud).read()

    error = caught.value
    assert str(error.path).endswith(relative)
    assert error.text.strip() in text
    assert relative in str(error) and repr(error.text) in str(error)
    assert isinstance(error, ValueError) and isinstance(error, TopologyError)


def test_a_malformed_local_cpus_mask_is_reported_when_it_is_the_fallback(cloud):
    device = cloud / "sys/bus/pci/devices/0000:00:06.0"
    (device / "local_cpulist").unlink()
    _damage(cloud, "sys/bus/pci/devices/0000:00:06.0/local_cpus", "fffg\n")

    with pytest.raises(SysfsFormatError, match="local_cpus"):
        SysfsTopology(root=cloud).read()


@pytest.mark.parametrize(
    ("relative", "text"),
    [
        (f"proc/{PID}/status", "Name:\tpython3\nCpus_allowed_list:\tzero\nMems_allowed_list:\t0-1\n"),
        (f"proc/{PID}/status", "Name python3 without a colon\n"),
        (f"proc/{PID}/cgroup", "0:/no-controllers-field\n"),
        ("sys/fs/cgroup/cpuset.cpus.effective", "0-15\x00junk\n"),
    ],
)
def test_malformed_procfs_or_cgroup_content_names_the_file(cloud, relative, text):
    _damage(cloud, relative, text)

    with pytest.raises(SysfsFormatError) as caught:
        SysfsTopology(root=cloud).allowed()

    assert str(caught.value.path).endswith(relative.split("/")[-1])


def test_a_status_without_cpus_allowed_list_is_a_format_error(cloud):
    _damage(cloud, f"proc/{PID}/status", "Name:\tpython3\nMems_allowed_list:\t0-1\n")

    with pytest.raises(SysfsFormatError, match="Cpus_allowed_list"):
        SysfsTopology(root=cloud).allowed()


def test_a_missing_root_is_unavailable_not_a_crash(tmp_path):
    with pytest.raises(TopologyUnavailableError, match="sys/devices/system/cpu"):
        SysfsTopology(root=tmp_path / "nowhere").read()


def test_a_root_without_sysfs_is_unavailable(tmp_path):
    (tmp_path / "proc").mkdir()

    with pytest.raises(TopologyUnavailableError):
        SysfsTopology(root=tmp_path).read()


def test_a_vanished_process_is_unavailable(rendered):
    with pytest.raises(TopologyUnavailableError, match="proc/999999/status"):
        SysfsTopology(root=rendered("workstation"), pid=999999).allowed()


def test_a_distance_row_that_fits_no_node_order_leaves_distances_unknown_and_says_so(render):
    spec = dataclasses.replace(machine("workstation"), name="ws-bad-row")
    root = render(spec)
    _damage(root, "sys/devices/system/node/node0/distance", "10 21\n")  # two entries, one node possible

    topology = SysfsTopology(root=root).read()

    assert topology.nodes[0].distances == {0: 10}
    assert [(n.values["count"], n.values["online"]) for n in with_code(topology.notes, "sysfs_distance_unordered")] == [
        (2, 1)]


# -- a file that exists but cannot be read ---------------------------------------------------------------
def _directory(path):
    path.unlink()
    path.mkdir()


def _symlink_loop(path):
    path.unlink()
    path.symlink_to(path.name)


def _unreadable(path):
    path.chmod(0)


_UNREADABLE = [
    pytest.param(_directory, id="a directory"),
    pytest.param(_symlink_loop, id="a symlink loop"),
]
_GPU_FILES = ["sys/bus/pci/devices/0000:00:07.0/numa_node", "sys/bus/pci/devices/0000:00:07.0/local_cpulist",
              "sys/devices/system/node/node1/cpulist", "proc/self/status"]


@pytest.mark.parametrize("spoil", _UNREADABLE)
@pytest.mark.parametrize("relative", _GPU_FILES)
def test_a_file_that_cannot_be_read_is_a_read_error_naming_it(cloud, relative, spoil):
    spoil(cloud / relative)

    with pytest.raises(SysfsReadError) as caught:
        source = SysfsTopology(root=cloud)
        source.read()
        source.allowed()

    error = caught.value
    assert str(error.path).endswith(relative) and relative in str(error)
    assert isinstance(error, TopologyError) and isinstance(error, OSError)
    assert error.errno in (errno.EISDIR, errno.ELOOP) and isinstance(error.__cause__, OSError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-0 file")
def test_a_file_without_read_permission_is_a_read_error(cloud):
    _unreadable(cloud / "sys/bus/pci/devices/0000:00:07.0/numa_node")

    with pytest.raises(SysfsReadError) as caught:
        SysfsTopology(root=cloud).read()
    assert caught.value.errno == errno.EACCES


@pytest.mark.parametrize("spoil", _UNREADABLE)
def test_best_effort_binding_over_an_unreadable_file_is_not_bound(cloud, spoil):
    spoil(cloud / "sys/bus/pci/devices/0000:00:07.0/numa_node")
    kernel = machine("cloud-vm").kernel()

    report = gpunuma.bind_to_gpu(1, source=SysfsTopology(root=cloud), binder=kernel, env={})

    assert not report.bound and kernel.applied == []
    with pytest.raises(gpunuma.NotBoundError) as caught:
        gpunuma.bind_to_gpu(1, source=SysfsTopology(root=cloud), binder=kernel, env={}, strict=True)
    assert isinstance(caught.value.__cause__, SysfsReadError)


@pytest.mark.parametrize("spoil", _UNREADABLE)
def test_the_cli_reports_an_unreadable_file_in_one_line(cloud, capsys, spoil):
    spoil(cloud / "sys/bus/pci/devices/0000:00:07.0/numa_node")

    assert main(["plan", "--root", str(cloud), "--gpu", "1"]) == ExitCode.ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "numa_node" in err and "Traceback" not in err


# -- bad content is quoted, not dumped --------------------------------------------------------------------
def test_a_huge_malformed_file_is_quoted_cut_short(cloud):
    device = cloud / "sys/bus/pci/devices/0000:00:06.0"
    (device / "local_cpulist").unlink()
    _damage(cloud, "sys/bus/pci/devices/0000:00:06.0/local_cpus", ",".join(["ffffffff"] * 5000) + "\n")

    with pytest.raises(SysfsFormatError) as caught:
        SysfsTopology(root=cloud).read()

    assert len(caught.value.text) >= 45_000  # the whole text stays on the error for a debugger
    assert len(str(caught.value)) < 300 and "..." in str(caught.value)


def test_a_huge_cpulist_is_quoted_cut_short():
    with pytest.raises(CpuSetParseError) as caught:
        CpuSet.parse_list("x" * 10_000)
    assert len(str(caught.value)) < 300
