"""gpunuma's values are frozen dataclasses and its choices enums: immutable, compared by value, picklable."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.kernel_policy import Mempolicy, Mode
from gpunuma.core.model import Gpu, NumaNode, Topology
from gpunuma.core.policy import CpuScope, MemoryPolicy, Policy, Share
from gpunuma.core.report import ThreadState
from gpunuma_fakes import machine

DGX = machine("dgx-h100").topology()


def test_fields_cannot_be_assigned_or_deleted():
    node = NumaNode(0, CpuSet.parse_list("0-3"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.id = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del node.cpus  # type: ignore[misc]
    assert node.id == 0


def test_values_compare_and_hash_by_their_fields():
    first = ThreadState(7, "main", CpuSet.parse_list("0-3"))
    assert first == ThreadState(7, "main", CpuSet.of(range(4)))
    assert len({first, ThreadState(7, "main", CpuSet.parse_list("0-3")), ThreadState(8, "main", first.cpus)}) == 2
    assert first != (7, "main", first.cpus)
    # A node's distance row is a mapping: it hashes by its items.
    assert hash(NumaNode(0, CpuSet.of([0]), distances={0: 10})) == hash(NumaNode(0, CpuSet.of([0]), distances={0: 10}))


def test_post_init_coerces_names_to_choices_and_refuses_bad_values():
    policy = Policy(cpu_scope="socket", memory="bind", share="1/4")  # type: ignore[arg-type]
    assert (policy.cpu_scope, policy.memory, policy.share) == (CpuScope.SOCKET, MemoryPolicy.BIND, Share(1, 4))
    with pytest.raises(ValueError):
        CpuSet(frozenset({-1}))


def test_values_pickle_and_copy_to_equal_values_cached_lookups_included():
    topology = Topology(nodes=(NumaNode(0, CpuSet.parse_list("0-3"), distances={0: 10}),),
                        gpus=(Gpu(0, "0000:1b:00.0"),))
    assert topology.node(0) is not None and topology.gpus[0].label  # fills cached lookups
    for value in (topology, DGX, Policy(memory="bind"), CpuSet.parse_list("0-7"), Mempolicy(Mode.BIND, (0, 1))):
        assert pickle.loads(pickle.dumps(value)) == value
        assert copy.deepcopy(value) == value
    assert pickle.loads(pickle.dumps(DGX)).node(1) == DGX.node(1)


def test_replace_copies_with_changes_and_refuses_unknown_fields():
    cpus = CpuSet.parse_list("0-3")
    assert dataclasses.replace(cpus, ids=frozenset({7})) == CpuSet.of([7])
    assert dataclasses.replace(Policy(), memory="bind").memory is MemoryPolicy.BIND  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        dataclasses.replace(cpus, nodes=1)  # type: ignore[call-arg]


def test_a_cached_lookup_is_not_a_field():
    topology = Topology(nodes=(NumaNode(0, CpuSet.parse_list("0-3")),))
    assert topology.all_cpus == CpuSet.parse_list("0-3")
    assert topology == Topology(nodes=(NumaNode(0, CpuSet.parse_list("0-3")),))
    assert [field.name for field in dataclasses.fields(topology)] == [
        "nodes", "cpus", "gpus", "source", "notes", "caches", "nics"
    ]


def test_a_str_choice_reads_writes_and_compares_as_its_value():
    assert MemoryPolicy("bind") is MemoryPolicy.BIND and MemoryPolicy(MemoryPolicy.BIND) is MemoryPolicy.BIND
    assert MemoryPolicy.BIND == "bind" and MemoryPolicy.BIND.value == "bind" and MemoryPolicy.BIND.name == "BIND"
    assert pickle.loads(pickle.dumps(CpuScope.SOCKET)) is CpuScope.SOCKET
    assert copy.deepcopy(CpuScope.SOCKET) is CpuScope.SOCKET
    with pytest.raises(ValueError, match="'green' is not a valid MemoryPolicy"):
        MemoryPolicy("green")


def test_an_int_choice_prints_and_computes_as_an_int():
    assert Mode(2) is Mode.BIND and Mode.BIND.word == "bind"
    assert (str(Mode.BIND), f"{Mode.BIND}", Mode.BIND | 0x8000) == ("2", "2", 0x8002)
    with pytest.raises(ValueError):
        Mode(99)


def test_members_cannot_be_reassigned():
    with pytest.raises(AttributeError):
        MemoryPolicy.BIND = "x"  # type: ignore[misc]
    assert MemoryPolicy("bind") is MemoryPolicy.BIND
