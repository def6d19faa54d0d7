"""The one mapping from a plan's memory policy to the kernel's MPOL_* mode, shared by every binder."""

from __future__ import annotations

import pytest

from gpunuma.core.kernel_policy import NUMA_MAPS_MODES, Mempolicy, Mode, kernel_policy, modes_for
from gpunuma.core.policy import MemoryPolicy


@pytest.mark.parametrize(
    ("memory", "nodes", "expected"),
    [
        (MemoryPolicy.BIND, (1,), Mempolicy(Mode.BIND, (1,))),
        (MemoryPolicy.BIND, (3, 2), Mempolicy(Mode.BIND, (2, 3))),
        (MemoryPolicy.PREFERRED, (1,), Mempolicy(Mode.PREFERRED, (1,))),
        (MemoryPolicy.PREFERRED, (1, 0), Mempolicy(Mode.PREFERRED_MANY, (0, 1))),
        (MemoryPolicy.NONE, (0,), None),
        (MemoryPolicy.PREFERRED, (), None),
        (MemoryPolicy.BIND, (), None),
    ],
)
def test_each_memory_policy_maps_to_one_kernel_mode(
    memory: MemoryPolicy, nodes: tuple[int, ...], expected: Mempolicy | None
) -> None:
    assert kernel_policy(memory, nodes) == expected


def test_without_preferred_many_several_nodes_prefer_the_first_planned_node() -> None:
    """Linux before 5.15: MPOL_PREFERRED on the planned order's first node, not the lowest id."""
    assert kernel_policy(MemoryPolicy.PREFERRED, (1, 0), preferred_many=False) == Mempolicy(Mode.PREFERRED, (1,))
    assert kernel_policy(MemoryPolicy.BIND, (1, 0), preferred_many=False) == Mempolicy(Mode.BIND, (0, 1))


@pytest.mark.parametrize("memory", list(MemoryPolicy))
def test_a_read_back_accepts_exactly_the_modes_the_mapping_can_choose(memory: MemoryPolicy) -> None:
    chosen = {
        policy.mode
        for nodes in ((0,), (0, 1))
        for many in (True, False)
        if (policy := kernel_policy(memory, nodes, preferred_many=many)) is not None
    }
    assert modes_for(memory) == chosen


def test_numa_maps_names_every_mode_and_reports_use_the_uapi_name() -> None:
    assert set(NUMA_MAPS_MODES.values()) == set(Mode)
    assert NUMA_MAPS_MODES["prefer (many)"].word == "preferred_many"
    assert str(Mempolicy(Mode.BIND, (0, 1, 3))) == "bind 0-1,3"
    assert str(Mempolicy(Mode.LOCAL)) == "local"
