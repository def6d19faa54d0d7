"""gpunuma's values behave as frozen dataclasses and its choices as enums, without importing either module."""

from __future__ import annotations

import copy
import dataclasses
import enum
import pickle
import subprocess
import sys

import pytest

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.kernel_policy import Mode
from gpunuma.core.model import Gpu, NumaNode, Topology
from gpunuma.core.policy import CpuScope, MemoryPolicy, Policy
from gpunuma.core.value import Choice, Value, cached, field, replace


class Point(Value):
    """A value made for these tests."""

    x: int
    y: int = 0
    tags: tuple[str, ...] = ()
    seen: dict[str, int] = field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RealPoint:
    """The same fields as a stdlib frozen dataclass: the behaviour Point must match."""

    x: int
    y: int = 0
    tags: tuple[str, ...] = ()
    seen: dict[str, int] = dataclasses.field(default_factory=dict)


class Colour(str, Choice):
    RED = "red"
    BLUE = "blue"


class RealColour(str, enum.Enum):
    RED = "red"
    BLUE = "blue"


def test_construction_matches_a_frozen_dataclass_positional_keyword_defaults_and_factories():
    for cls in (Point, RealPoint):
        a, b = cls(1, 2, ("t",)), cls(x=1, tags=("t",), y=2)
        assert (a.x, a.y, a.tags, a.seen) == (1, 2, ("t",), {})
        assert a == b
        assert cls(3).seen is not cls(3).seen, "a factory default is built per instance"
    assert repr(Point(1, 2)) == repr(RealPoint(1, 2)).replace("RealPoint", "Point")
    assert Point.__match_args__ == RealPoint.__match_args__ == ("x", "y", "tags", "seen")


def test_hash_is_the_hash_of_the_fields_in_order_as_a_frozen_dataclass_has():
    class Pair(Value):
        a: int
        b: tuple[int, ...] = ()

    @dataclasses.dataclass(frozen=True)
    class RealPair:
        a: int
        b: tuple[int, ...] = ()

    assert hash(Pair(1, (2,))) == hash(RealPair(1, (2,))) == hash((1, (2,)))
    assert len({Pair(1), Pair(1), Pair(2)}) == 2
    with pytest.raises(TypeError, match="unhashable"):
        hash(Point(1))  # a dict field, as with dataclasses


@pytest.mark.parametrize(
    "args, kwargs", [((), {}), ((1, 2, (), {}, 5), {}), ((1,), {"x": 2}), ((1,), {"colour": "red"})]
)
def test_wrong_arguments_raise_type_error_like_a_dataclass(args, kwargs):
    with pytest.raises(TypeError):
        RealPoint(*args, **kwargs)
    with pytest.raises(TypeError):
        Point(*args, **kwargs)


def test_fields_cannot_be_assigned_or_deleted():
    point = Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del point.y  # type: ignore[misc]
    assert point.x == 1


def test_values_of_other_types_are_never_equal():
    assert Point(1) != RealPoint(1)
    assert Point(1) != (1, 0, (), {})
    assert Point(1) != Point(2)


def test_post_init_runs_and_defaults_must_not_precede_required_fields():
    assert Policy(cpu_scope="socket").cpu_scope is CpuScope.SOCKET  # __post_init__ coerces to the choice
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):

        class Broken(Value):
            a: int = 0
            b: int


def test_values_pickle_and_copy_to_equal_values():
    topology = Topology(nodes=(NumaNode(0, CpuSet.parse_list("0-3"), distances={0: 10}),),
                        gpus=(Gpu(0, "0000:1b:00.0"),))
    topology.node(0)  # fills a cached index
    for value in (Point(1, 2, ("a",), {"k": 1}), topology, Policy(memory="bind")):
        assert pickle.loads(pickle.dumps(value)) == value
        assert copy.deepcopy(value) == value


def test_dataclass_tools_turn_a_value_into_a_real_dataclass_that_behaves_the_same():
    class Late(Value):
        a: int
        b: list[int] = field(default_factory=list)

    before = Late(1)
    assert "__dataclass_fields__" not in Late.__dict__
    assert dataclasses.is_dataclass(before) and not dataclasses.is_dataclass(Value)
    assert [f.name for f in dataclasses.fields(Late)] == ["a", "b"]
    assert dataclasses.replace(before, a=2) == Late(2)
    assert dataclasses.asdict(Late(3, [4])) == {"a": 3, "b": [4]}
    assert Late(5).b is not Late(5).b and before == Late(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.a = 9  # type: ignore[misc]


def test_replace_copies_with_changes_and_refuses_unknown_fields():
    point = Point(1, 2, ("t",))
    assert replace(point, y=5) == Point(1, 5, ("t",))
    assert replace(CpuSet.parse_list("0-3"), ids=frozenset({7})) == CpuSet.of([7])
    with pytest.raises(TypeError):
        replace(point, z=1)


def test_cached_computes_once_and_keeps_the_result_on_the_value():
    calls = []

    class Squares(Value):
        n: int

        @cached
        def total(self) -> int:
            calls.append(self.n)
            return sum(i * i for i in range(self.n))

    squares = Squares(4)
    assert squares.total == squares.total == 14
    assert calls == [4]
    assert squares == Squares(4), "a cached result is not a field"


def test_a_choice_reads_writes_and_compares_like_a_str_enum():
    for cls in (Colour, RealColour):
        assert cls("red") is cls.RED and cls(cls.BLUE) is cls.BLUE
        assert cls.RED == "red" and cls.RED.value == "red" and cls.RED.name == "RED"
        assert [m.value for m in cls] == ["red", "blue"] and len(cls) == 2
        assert pickle.loads(pickle.dumps(cls.BLUE)) is cls.BLUE and copy.deepcopy(cls.RED) is cls.RED
        with pytest.raises(ValueError, match="'green' is not a valid"):
            cls("green")
    assert (repr(Colour.RED), str(Colour.RED), f"{Colour.RED}") == ("<Colour.RED: 'red'>", "Colour.RED", "Colour.RED")
    assert (repr(RealColour.RED), str(RealColour.RED)) == ("<RealColour.RED: 'red'>", "RealColour.RED")


def test_an_int_choice_prints_and_computes_like_an_int_enum():
    assert Mode(2) is Mode.BIND and Mode.BIND.word == "bind"
    assert (str(Mode.BIND), f"{Mode.BIND}", Mode.BIND | 0x8000) == ("2", "2", 0x8002)
    assert repr(Mode.PREFERRED) == "<Mode.PREFERRED: 1>"
    with pytest.raises(ValueError):
        Mode(99)


def test_members_cannot_be_reassigned():
    with pytest.raises(AttributeError):
        MemoryPolicy.BIND = "x"  # type: ignore[misc]
    assert MemoryPolicy("bind") is MemoryPolicy.BIND


_PROBE = """
import sys
sys.path[:0] = {paths!r}
import gpunuma
report = gpunuma.bind_to_node(0)
assert report.bound or report.reasons, report
print(",".join(sorted(m for m in {heavy!r} if m in sys.modules)))
"""

#: Modules a cold bind must not import (each costs milliseconds of CPU in every worker).
HEAVY = (
    "dataclasses", "typing", "inspect", "logging", "platform", "ast", "tokenize", "pathlib", "re", "enum",
    "functools", "collections", "importlib", "warnings", "json", "argparse", "ray", "pynvml",
)


def test_a_cold_bind_imports_no_dataclasses_typing_enum_re_pathlib_logging_or_functools():
    import gpunuma

    paths = [str(__import__("pathlib").Path(gpunuma.__file__).parent.parent)]
    # -S: no site, so nothing but gpunuma's own imports can load these modules.
    out = subprocess.run(
        [sys.executable, "-S", "-c", _PROBE.format(paths=paths, heavy=HEAVY)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert out == ""
