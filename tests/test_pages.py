"""Where a process's memory is: ``numa_maps`` read into pages per node, counted in base pages."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from gpunuma.adapters.files import HOST
from gpunuma.adapters.kernel_view import read_pages
from gpunuma.core.pages import Pages, parse_numa_maps

#: A serving worker on a two-node x86 host, as ``/proc/<pid>/numa_maps`` prints it: the interpreter's file
#: pages, a heap with transparent huge pages (counted in 4 KiB pages: 512 per 2 MiB), a hugetlbfs KV cache of
#: 2 MiB pages on node 1, one 1 GiB page, a stack, and mappings with no resident page at all.
X86_WORKER = """\
55d0c8a00000 default file=/usr/bin/python3.12 mapped=812 mapmax=3 N0=812 kernelpagesize_kB=4
55d0c8d2c000 default file=/usr/bin/python3.12 anon=14 dirty=14 mapped=120 N0=120 kernelpagesize_kB=4
55d0ca1f3000 default heap anon=123 dirty=123 active=0 N0=100 N1=23 kernelpagesize_kB=4
7f2e00000000 prefer:1 anon=1536 dirty=1536 active=512 N0=512 N1=1024 kernelpagesize_kB=4
7f2c00000000 bind:1 file=/dev/hugepages/kv\\040cache huge dirty=45 N1=45 kernelpagesize_kB=2048
7f2b00000000 bind:0 file=/dev/hugepages1G/x huge dirty=1 N0=1 kernelpagesize_kB=1048576
7f3a1c000000 default file=/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15
7ffd1f3c0000 default stack anon=33 dirty=33 N0=33 kernelpagesize_kB=4
"""

#: A Grace (aarch64) kernel with 64 KiB base pages and a 512 MiB huge page; policies whose names hold a space.
GRACE_WORKER = """\
400000 prefer (many):0-1 file=/usr/bin/python3.12 mapped=20 N0=20 kernelpagesize_kB=64
ffff80000000 weighted interleave:0-1 anon=300 dirty=300 N0=100 N1=200 kernelpagesize_kB=64
ffff00000000 default file=/dev/hugepages/w huge dirty=2 N1=2 kernelpagesize_kB=524288
"""


def test_a_two_node_worker_counts_every_mapping_in_4_kib_pages() -> None:
    pages = parse_numa_maps(X86_WORKER)

    node0 = 812 + 120 + 100 + 512 + 262_144 + 33  # the 1 GiB page is 262,144 pages of 4 KiB
    node1 = 23 + 1024 + 45 * 512  # 45 huge pages of 2 MiB: 512 pages each
    assert pages.pages_by_node == {0: node0, 1: node1}
    assert (pages.page_size, pages.mappings, pages.truncated) == (4096, 8, False)
    assert pages.total == node0 + node1
    assert pages.local_fraction([1]) == pytest.approx(node1 / (node0 + node1))


def test_a_grace_kernel_counts_in_its_64_kib_base_pages_and_reads_policies_with_spaces() -> None:
    pages = parse_numa_maps(GRACE_WORKER)

    assert pages.page_size == 64 * 1024
    assert pages.pages_by_node == {0: 20 + 100, 1: 200 + 2 * 8192}  # 512 MiB / 64 KiB = 8,192 pages


def test_a_line_cut_short_by_a_bounded_read_is_left_out_and_said() -> None:
    cut = X86_WORKER[: X86_WORKER.index("N1=23")]  # the heap's line ends mid-way

    pages = parse_numa_maps(cut)

    assert pages.truncated and pages.mappings == 2
    assert pages.pages_by_node == {0: 812 + 120}


@pytest.mark.parametrize("field", ["N1=１２", "N1=+12", "N1=1_2", "Nx=12", "N=12", "N1=", "kernelpagesize_kB=４"])
def test_a_count_that_is_not_ascii_digits_is_not_counted(field: str) -> None:
    pages = parse_numa_maps(f"7f2e00000000 default anon=12 N0=3 {field} kernelpagesize_kB=4\n")

    assert pages.pages_by_node == {0: 3}


def test_the_summary_line_gives_the_local_share_the_count_and_the_split() -> None:
    pages = Pages(by_node=((0, 382), (1, 11_963)), page_size=4096)

    assert pages.describe([1]) == "97% on node 1 (12,345 pages; node 0: 382, node 1: 11,963)"
    assert pages.describe() == "12,345 pages (node 0: 382, node 1: 11,963)"
    assert Pages(((1, 50),), 4096).describe([1]) == "100% on node 1 (50 pages)"


@pytest.mark.parametrize(("by_node", "shown"), [(((0, 1), (1, 999)), "99%"), (((0, 999), (1, 1)), "1%")])
def test_a_share_is_never_rounded_to_all_or_nothing(by_node: tuple[tuple[int, int], ...], shown: str) -> None:
    assert Pages(by_node, 4096).describe([1]).startswith(f"{shown} on node 1")


def test_no_page_counted_has_no_local_share() -> None:
    pages = parse_numa_maps("7f3a1c000000 default file=/usr/lib/libc.so.6\n")

    assert pages.total == 0 and pages.local_fraction([0]) is None
    assert pages.to_dict([0]) == {
        "pages_by_node": {}, "page_size": 4096, "total_pages": 0, "local_fraction": None, "truncated": False,
    }


# -- the real kernel -----------------------------------------------------------------------------------------
#: A process that maps many libraries (its numa_maps spans several kernel reads), touches ``MiB`` of memory
#: and waits on stdin, so its mappings hold still while it is read.
HOLDER = """
import ctypes.util, decimal, json, sqlite3, ssl, sys, uuid, zlib
data = b"\\x01" * (int(sys.argv[1]) << 20)
print("ready", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def holder() -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, "64"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        yield process
    finally:
        process.communicate("done\n", timeout=60)


def test_a_numa_maps_longer_than_one_kernel_read_is_read_whole(holder: subprocess.Popen[str]) -> None:
    path = f"/proc/{holder.pid}/numa_maps"
    with open(path, "rb") as handle:
        whole = handle.read().decode()

    assert len(whole) > 4096, "the kernel hands out a seq_file about a page per read: this file needs several"
    assert HOST.read(path, 16 << 20, cut=True) == whole


def test_the_pages_a_process_touched_are_read_back_on_this_hosts_node(holder: subprocess.Popen[str]) -> None:
    pages = read_pages(holder.pid)

    assert pages is not None and not pages.truncated
    assert pages.page_size == os.sysconf("SC_PAGE_SIZE")
    touched = (64 << 20) // pages.page_size
    assert pages.total >= touched
    nodes = {int(name[4:]) for name in os.listdir("/sys/devices/system/node") if name[4:].isdigit()}
    if len(nodes) == 1:
        assert set(pages.pages_by_node) == nodes


def test_a_process_that_is_gone_has_no_pages() -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)

    assert read_pages(int(done.stdout)) is None
