"""Property: every catalogue machine, perturbed the ways real kernels and gathering tools write their
files, reads as the same nodes, CPUs and GPUs, or as the same with unknowns that a note names, or as
a typed error; never another exception, never a silently different topology.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.filetree import FileTree
from gpunuma.core.model import Topology
from gpunuma.core.reasons import TEMPLATES, Reason, codes
from gpunuma.errors import GpunumaError, SysfsFormatError, TopologyUnavailableError
from gpunuma_fakes import MACHINES, machine
from gpunuma_fakes.render import machine_tree

NODE = "sys/devices/system/node"
CPU = "sys/devices/system/cpu"
LISTS = [f"{NODE}/{name}" for name in ("possible", "online", "has_cpu", "has_memory", "has_normal_memory")]
LISTS += [f"{CPU}/{name}" for name in ("online", "present", "possible", "offline")]
CPU_FILES = ("core_cpus_list", "thread_siblings_list", "package_cpus_list", "core_siblings_list",
             "physical_package_id", "core_id", "die_id")
TAILS = ["\x00", "\x00" * 40, " \n", "\n\n", "\r\n", "\t\n", "   "]
GARBAGE = ["x", "1-", "0x", "-", "1\x00junk", "#"]


class Case:
    """One machine's pristine tree (held in memory) and what the adapter reads from it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pristine = machine_tree(machine(name))
        entries = dict(self.pristine.items())
        self.contents = {path: data for path, data in entries.items() if isinstance(data, bytes)}
        self.links = {path: target for path, target in entries.items() if isinstance(target, str)}
        self.folders = [path for path, data in entries.items() if data is None]
        self.files = sorted(path for path in self.contents if not path.startswith("proc/self"))
        self.truth = SysfsTopology(root=self.pristine).read()
        self.allowed = SysfsTopology(root=self.pristine).allowed()


class Journal:
    """One example's edits of a case's tree: files written or deleted, over the pristine tree (never changed)."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.changed: dict[str, bytes | None] = {}

    def write(self, relative: str, data: str) -> None:
        self.changed[relative] = data.encode()

    def delete(self, relative: str) -> None:
        self.changed[relative] = None

    def read(self, relative: str) -> str:
        data = self.changed.get(relative, self.case.contents.get(relative))
        assert data is not None, f"{relative} is not in the tree"
        return data.decode()

    def is_file(self, relative: str) -> bool:
        return self.changed.get(relative, self.case.contents.get(relative)) is not None

    def is_dir(self, relative: str) -> bool:
        return any(folder == relative or folder.startswith(relative + "/") for folder in self.case.folders)

    def existing(self, relatives: list[str]) -> list[str]:
        return [r for r in relatives if self.is_file(r)]

    def tree(self) -> FileTree:
        """The tree as this example left it."""
        files = {**self.case.contents, **{path: data for path, data in self.changed.items() if data is not None}}
        for path, data in self.changed.items():
            if data is None:
                files.pop(path, None)
        return FileTree(self.case.pristine.root, files, self.case.links, self.case.folders)


# -- perturbations: each edits the tree through the journal and returns the files it garbled ------
Perturb = Callable[[Case, Journal, st.DataObject], set[str]]


def pad(case: Case, journal: Journal, data: st.DataObject) -> set[str]:
    """Trailing blanks, NUL padding, CRLF on any files."""
    present = journal.existing(case.files)
    for relative in data.draw(st.lists(st.sampled_from(present), min_size=1, max_size=40, unique=True)):
        tail = data.draw(st.sampled_from(TAILS))
        text = journal.read(relative)
        journal.write(relative, text.replace("\n", "\r\n") if tail == "\r\n" else text.rstrip("\n") + tail)
    return set()


def cpumap_only(case: Case, journal: Journal, data: st.DataObject) -> set[str]:
    """Nodes with ``cpumap`` but no ``cpulist`` (kernels before the list files)."""
    lists = journal.existing([f"{NODE}/node{n.id}/cpulist" for n in case.truth.nodes])
    for relative in data.draw(st.lists(st.sampled_from(lists), unique=True)) if lists else []:
        journal.delete(relative)
    return set()


def merged(case: Case) -> bool:
    """The machine's kernel lists some nodes twice, which the truth reads as one node."""
    return "sysfs_nodes_merged" in codes(case.truth.notes)


def no_node_cpu_files(case: Case, journal: Journal, data: st.DataObject) -> set[str]:
    """Nodes with neither ``cpulist`` nor ``cpumap`` (left to has_cpu and elimination).

    Not on a machine whose nodes were merged: the duplicate listing is the only sign of the merge.
    """
    if merged(case):
        return set()
    ids = [n.id for n in case.truth.nodes if journal.is_dir(f"{NODE}/node{n.id}")]
    for node in data.draw(st.lists(st.sampled_from(ids), max_size=2, unique=True)) if ids else []:
        journal.delete(f"{NODE}/node{node}/cpulist")
        journal.delete(f"{NODE}/node{node}/cpumap")
    return set()


def possible_rows(case: Case, journal: Journal, data: st.DataObject) -> set[str]:
    """Distance rows printed for every possible node: one more, offline, node after the online ones."""
    if not journal.is_file(f"{NODE}/possible") or merged(case):  # merged: the tree has more nodes than the truth
        return set()
    extra = max(n.id for n in case.truth.nodes) + 1
    journal.write(f"{NODE}/possible", CpuSet.of([*(n.id for n in case.truth.nodes), extra]).to_list() + "\n")
    far = data.draw(st.integers(min_value=11, max_value=254))
    for node in case.truth.nodes:
        relative = f"{NODE}/node{node.id}/distance"
        journal.write(relative, journal.read(relative).strip() + f" {far}\n")
    return set()


def spaced_rows(case: Case, journal: Journal, data: st.DataObject) -> set[str]:
    """Distance rows with a leading space (the kernel's own when node 0 is offline), tabs, double spaces."""
    for relative in journal.existing([f"{NODE}/node{n.id}/distance" for n in case.truth.nodes]):
        separator = data.draw(st.sampled_from(["  ", "\t", " "]))
        journal.write(relative, " " + separator.join(journal.read(relative).split()) + "\n")
    return set()


def drop_lists(case: Case, journal: Journal, data: st.DataObject) -> set[str]:
    """Absent ``has_memory``/``has_cpu``/``online``/``possible``... (old kernels, partial copies)."""
    for relative in data.draw(st.lists(st.sampled_from(journal.existing(LISTS)), unique=True)) if journal.existing(
        LISTS
    ) else []:
        if data.draw(st.booleans()):
            journal.delete(relative)
        else:
            journal.write(relative, "")  # what `cat f > copy` leaves when it cannot read f
    return set()


def drop_cpu_files(case: Case, journal: Journal, data: st.DataObject) -> set[str]:
    """Missing optional per-CPU topology files (old kernels, partial copies)."""
    cpus = [c.id for c in case.truth.cpus]
    for cpu in data.draw(st.lists(st.sampled_from(cpus), max_size=8, unique=True)):
        for name in data.draw(st.lists(st.sampled_from(CPU_FILES), min_size=1, unique=True)):
            journal.delete(f"{CPU}/cpu{cpu}/topology/{name}")
    return set()


def stale_offline_cpus(case: Case, journal: Journal, data: st.DataObject) -> set[str]:
    """Node lists that still name offline CPUs, as old kernels' ``cpumap`` did."""
    offline = sorted(set(range(machine(case.name).cpu_count)) - case.truth.all_cpus.ids)
    if not offline or not journal.is_dir(NODE):
        return set()
    node = case.truth.cpu_nodes[0]
    journal.write(f"{NODE}/node{node.id}/cpulist", (node.cpus | type(node.cpus).of(offline)).to_list() + "\n")
    return set()


def upper_hex(case: Case, journal: Journal, data: st.DataObject) -> set[str]:
    """Hex in capitals (masks, PCI ids), as some tools rewrite it."""
    # Only files still there: an earlier perturbation of the same example may have deleted some.
    suffixes = ("cpumap", "local_cpus", "/class", "/vendor", "/device")
    hexes = journal.existing([f for f in case.files if f.endswith(suffixes)])
    for relative in data.draw(st.lists(st.sampled_from(hexes), max_size=20, unique=True)) if hexes else []:
        journal.write(relative, journal.read(relative).upper())
    return set()


def no_driver_info(case: Case, journal: Journal, data: st.DataObject) -> set[str]:
    """NVIDIA's ``information`` files missing (driver not loaded when the tree was copied)."""
    for relative in [f for f in case.files if f.endswith("/information")]:
        journal.delete(relative)
    return set()


def garbage(case: Case, journal: Journal, data: st.DataObject) -> set[str]:
    """A truly malformed value in a file the adapter parses."""
    parsed = [f for f in case.files if f.startswith(("sys/devices/system", "sys/bus/pci")) and not f.endswith(
        ("/information", "product_name", "/device", "die_id", "core_id", "offline")
    )]
    relative = data.draw(st.sampled_from(parsed))
    journal.write(relative, data.draw(st.sampled_from(GARBAGE)) + "\n")
    return {relative}


PERTURBATIONS: list[Perturb] = [
    pad, cpumap_only, no_node_cpu_files, possible_rows, spaced_rows, drop_lists, drop_cpu_files,
    stale_offline_cpus, upper_hex, no_driver_info, garbage,
]
#: Perturbations that lose nothing a reader needs: the topology must read exactly the same.
EXACT = {pad, cpumap_only, no_node_cpu_files, possible_rows, spaced_rows, drop_lists, stale_offline_cpus, upper_hex}


# -- what "the same, or unknown and said so" means -----------------------------------------------
def without_notes(topology: Topology) -> Topology:
    gpus = tuple(dataclasses.replace(gpu, notes=()) for gpu in topology.gpus)
    return dataclasses.replace(topology, notes=(), gpus=gpus)


def assert_same_or_noted(got: Topology, truth: Topology) -> None:
    noted = bool(got.notes)
    every = [*got.notes, *(note for gpu in got.gpus for note in gpu.notes)]
    assert {code for code in codes(every) if code == "note" or code not in TEMPLATES} == set()
    assert [n.id for n in got.nodes] == [n.id for n in truth.nodes]
    assert got.all_cpus == truth.all_cpus
    for mine, real in zip(got.nodes, truth.nodes, strict=True):
        assert mine.cpus == real.cpus, f"node {real.id}"
        if mine.has_memory != real.has_memory:
            assumed = ("sysfs_node_memory_assumed", "sysfs_node_no_memory_assumed")
            assert any(n.code in assumed and n.values["node"] == real.id for n in map(Reason.coerce, got.notes))
        assert mine.memory_mb in (real.memory_mb, None)
        assert set(mine.distances.items()) <= set(real.distances.items()), f"node {real.id} distances"
        assert mine.distances == real.distances or noted
    real_cpus = {cpu.id: cpu for cpu in truth.cpus}
    for cpu in got.cpus:
        assert cpu.siblings == real_cpus[cpu.id].siblings
    for a in got.cpus:
        for b in got.cpus:
            assert (a.package == b.package) == (real_cpus[a.id].package == real_cpus[b.id].package)
    assert len(got.cpus) == len(truth.cpus) or noted
    assert [g.pci_bus_id for g in got.gpus] == [g.pci_bus_id for g in truth.gpus]
    for mine_gpu, real_gpu in zip(got.gpus, truth.gpus, strict=True):
        assert (mine_gpu.numa_node, mine_gpu.local_cpus, mine_gpu.vendor) == (
            real_gpu.numa_node, real_gpu.local_cpus, real_gpu.vendor
        )
        assert mine_gpu.uuid == real_gpu.uuid or (mine_gpu.uuid is None and mine_gpu.notes)


@pytest.fixture(scope="module")
def cases() -> dict[str, Case]:
    return {name: Case(name) for name in MACHINES}


@pytest.mark.parametrize("name", sorted(MACHINES))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_a_perturbed_machine_reads_the_same_or_noted_or_as_a_typed_error(cases, name, data):
    case = cases[name]
    journal = Journal(case)
    chosen = data.draw(st.lists(st.sampled_from(PERTURBATIONS), min_size=1, max_size=3, unique=True))
    garbled: set[str] = set()
    for perturb in chosen:
        garbled |= perturb(case, journal, data)
    tree = journal.tree()
    try:
        got = SysfsTopology(root=tree).read()
        allowed = SysfsTopology(root=tree).allowed()
    except SysfsFormatError as err:
        assert any(str(err.path).endswith(relative) for relative in garbled), err
        return
    except TopologyUnavailableError as err:
        assert no_node_cpu_files in chosen or garbled, err
        return
    except GpunumaError as err:  # pragma: no cover - any other typed error is a finding
        raise AssertionError(f"unexpected typed error {err!r}") from err
    assert_same_or_noted(got, case.truth)
    # Rows printed for possible nodes cannot be placed once the possible list is gone too.
    if set(chosen) <= EXACT and not {possible_rows, drop_lists} <= set(chosen):
        assert without_notes(got) == without_notes(case.truth)
    assert allowed == case.allowed or garbled


def test_an_example_edits_its_own_tree_and_never_the_machine_s():
    case = Case("workstation")
    journal = Journal(case)
    journal.write(f"{NODE}/online", "junk")
    journal.delete(f"{NODE}/node0/cpulist")

    tree = journal.tree()

    assert tree.read(f"{tree.root}/{NODE}/online") == "junk"
    assert tree.read(f"{tree.root}/{NODE}/node0/cpulist") is None
    assert case.pristine.read(f"{tree.root}/{NODE}/online") == "0\n"
    assert SysfsTopology(root=case.pristine).read() == case.truth
