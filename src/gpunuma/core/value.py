"""Frozen values at the import cost of a plain class: ``class X(Value)`` with annotated fields.

Every process that binds (each Ray actor, each ``gpunuma exec``) creates ~25 value types.
``@dataclass(frozen=True)`` imports ``inspect`` (~15 ms of CPU on a small VM) and compiles six methods
per class (~0.6 ms each): most of a cold bind. A :class:`Value` subclass declares its fields exactly as
a frozen dataclass does (annotations, defaults, :func:`field` with ``default_factory``) and behaves as
one: positional or keyword construction with defaults, ``__post_init__``, assignment refused
(``dataclasses.FrozenInstanceError``), ``==``, ``hash`` and ``repr`` over the fields in order, pickling.
Its methods are shared by every value type instead of compiled per class, and the class turns into a
real frozen dataclass the first time anything asks for its dataclass fields (``dataclasses.replace``,
``fields``, ``asdict``, ``is_dataclass``). Type checkers see a frozen dataclass (PEP 681).

:class:`Choice` does the same for the string and integer enumerations (``enum`` costs ~4 ms to import).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from enum import Enum as Choice
    from functools import cached_property as cached
    from typing import Any, ClassVar, TypeVar

    from typing_extensions import dataclass_transform

    _T = TypeVar("_T")
    _V = TypeVar("_V", bound="Value")
else:

    def dataclass_transform(**_options):
        """Marks :class:`Value` for type checkers; nothing to do at run time."""
        return lambda cls: cls


_MISSING = object()
_CLASS_VAR = ("ClassVar", "typing.ClassVar")

if not TYPE_CHECKING:

    class cached:  # lower case, like the functools.cached_property it stands for
        """A value derived from a frozen value's fields, computed on first use and kept in its ``__dict__``.

        ``functools.cached_property`` without importing ``functools`` (and its lock, which 3.12 dropped).
        """

        def __init__(self, compute: Callable[[Any], object]) -> None:
            self.compute = compute
            self.name = compute.__name__
            self.__doc__ = compute.__doc__

        def __set_name__(self, owner: type, name: str) -> None:
            self.name = name

        def __get__(self, instance: object, owner: type | None = None) -> object:
            if instance is None:
                return self
            result = instance.__dict__[self.name] = self.compute(instance)
            return result


class _Factory:
    """A field default built per instance (what :func:`field` returns)."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], object]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], _T]) -> _T:
    """A field whose default is ``default_factory()``, called for each instance (as ``dataclasses.field``)."""
    return _Factory(default_factory)  # type: ignore[return-value]


class _DataclassFields:
    """``__dataclass_fields__`` of a value type: makes the type a real dataclass on first access."""

    def __get__(self, instance: object, owner: type) -> Any:
        if owner is Value:
            raise AttributeError("__dataclass_fields__")  # the base itself is not a dataclass
        return _to_dataclass(owner).__dict__["__dataclass_fields__"]


def _to_dataclass(cls: type) -> type:
    import dataclasses

    for name, make in cls._factories.items():  # type: ignore[attr-defined]
        setattr(cls, name, dataclasses.field(default_factory=make))
    return dataclasses.dataclass(frozen=True)(cls)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
class Value:
    """Base of gpunuma's immutable values (see the module docstring); fields are the class's annotations."""

    _fields: ClassVar[tuple[str, ...]] = ()
    _field_set: ClassVar[frozenset[str]] = frozenset()
    _defaults: ClassVar[dict[str, object]] = {}
    _factories: ClassVar[dict[str, Callable[[], object]]] = {}
    _post_init: ClassVar[Callable[[Any], None] | None] = None
    #: Positional-only calls by argument count -> the defaults of the fields after them (no factory among them).
    _tails: ClassVar[dict[int, dict[str, object]]] = {}
    __dataclass_fields__ = _DataclassFields()

    def __init_subclass__(cls, **kwargs: object) -> None:
        # Runs once per value type at import: kept lean, as every worker that binds creates ~25 of them.
        super().__init_subclass__(**kwargs)
        namespace = cls.__dict__
        names = list(cls._fields)
        defaults = dict(cls._defaults)
        factories = dict(cls._factories)
        for name, annotation in namespace.get("__annotations__", {}).items():
            if (annotation if isinstance(annotation, str) else repr(annotation)).startswith(_CLASS_VAR):
                continue
            if name not in names:
                names.append(name)
            default = namespace.get(name, _MISSING)
            if default is _MISSING:
                if name in defaults or name in factories:
                    raise TypeError(f"{cls.__qualname__}: field {name!r} redeclared without its default")
            elif default.__class__ is _Factory:
                factories[name] = default.make
                delattr(cls, name)  # as dataclasses does: the class has no attribute for it
            else:
                defaults[name] = default
        # Positional calls by argument count -> the plain defaults of the fields after them.
        tails: dict[int, dict[str, object]] = {len(names): {}}
        tail: dict[str, object] | None = {}
        required_after: str | None = None
        for count in range(len(names) - 1, -1, -1):
            name = names[count]
            if name not in defaults and name not in factories:
                required_after = name
                tail = None
                continue
            if required_after is not None:
                raise TypeError(f"non-default argument {required_after!r} follows default argument")
            if tail is not None and name in defaults:
                tail = {name: defaults[name], **tail}
                tails[count] = tail
            else:
                tail = None
        cls._fields = fields = tuple(names)
        cls._field_set = frozenset(names)
        cls._defaults = defaults
        cls._factories = factories
        cls._tails = tails
        cls._post_init = getattr(cls, "__post_init__", None)
        setattr(cls, "__match_args__", fields)  # noqa: B010 - a name mypy types as final

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        if not kwargs:
            # The common call (sysfs builds hundreds of CPUs so): positional, the rest plain defaults.
            tail = cls._tails.get(len(args))
            if tail is not None:
                state = self.__dict__
                state.update(zip(cls._fields, args, strict=False))
                state.update(tail)
                if cls._post_init is not None:
                    cls._post_init(self)
                return
        names = cls._fields
        if len(args) > len(names):
            raise TypeError(f"{cls.__qualname__}() takes {len(names)} arguments but {len(args)} were given")
        state = self.__dict__
        if args:
            state.update(zip(names, args, strict=False))
        if kwargs:
            if not cls._field_set.issuperset(kwargs):
                unknown = next(name for name in kwargs if name not in cls._field_set)
                raise TypeError(f"{cls.__qualname__}() got an unexpected keyword argument {unknown!r}")
            if args and not state.keys().isdisjoint(kwargs):
                twice = next(name for name in kwargs if name in state)
                raise TypeError(f"{cls.__qualname__}() got multiple values for argument {twice!r}")
            state.update(kwargs)
        if len(state) < len(names):
            for name in names:
                if name not in state:
                    if name in cls._defaults:
                        state[name] = cls._defaults[name]
                    elif name in cls._factories:
                        state[name] = cls._factories[name]()
                    else:
                        raise TypeError(f"{cls.__qualname__}() missing required argument: {name!r}")
        if cls._post_init is not None:
            cls._post_init(self)

    def _values(self) -> tuple[object, ...]:
        state = self.__dict__
        return tuple([state[name] for name in self._fields])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        state = self.__dict__
        inner = ", ".join(f"{name}={state[name]!r}" for name in self._fields)
        return f"{type(self).__qualname__}({inner})"

    def __setattr__(self, name: str, value: object) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot delete field {name!r}")


#: What a member of a :class:`Choice` does as a member rather than as its ``str``/``int`` value.
_MEMBER_METHODS = ("__repr__", "__str__", "__format__", "__reduce_ex__", "__copy__", "__deepcopy__")


class _ChoiceType(type):
    """The metaclass of :class:`Choice`: members from the upper-case class attributes, looked up by value."""

    _members: dict[str, Any]
    _by_value: dict[object, Any]

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> _ChoiceType:
        subclass = any(isinstance(base, _ChoiceType) for base in bases)
        if subclass:
            # The mixin comes first in the bases (str, Choice): take the member behaviour from Choice, as enum does.
            # In the namespace, not set afterwards: assigning a dunder to a built class costs ~5 us of slot updates.
            for method in _MEMBER_METHODS:
                namespace.setdefault(method, getattr(Choice, method))
        cls = super().__new__(mcs, name, bases, namespace)
        members: dict[str, Any] = {}
        if subclass:
            mixin = next((base for base in cls.__mro__ if base in (str, int)), object)
            for key, raw in namespace.items():
                if key.isupper() and not key.startswith("_"):
                    new: Any = mixin.__new__
                    member: Any = new(cls, raw) if mixin is not object else new(cls)
                    member._name_ = key
                    member._value_ = raw
                    members[key] = member
                    type.__setattr__(cls, key, member)
        cls._members = members
        cls._by_value = {member._value_: member for member in members.values()}
        return cls

    def __call__(cls, value: object) -> Any:
        if isinstance(value, cls):
            return value
        try:
            return cls._by_value[value]
        except (KeyError, TypeError):
            raise ValueError(f"{value!r} is not a valid {cls.__qualname__}") from None

    def __iter__(cls) -> Iterator[Any]:
        return iter(cls._members.values())

    def __len__(cls) -> int:
        return len(cls._members)

    def __contains__(cls, member: object) -> bool:
        return isinstance(member, cls) and member in cls._members.values()

    def __setattr__(cls, name: str, value: object) -> None:
        if name in cls.__dict__.get("_members", {}):
            raise AttributeError(f"cannot reassign member {name!r}")
        super().__setattr__(name, value)

    @property
    def __members__(cls) -> dict[str, Any]:
        return dict(cls._members)


if not TYPE_CHECKING:

    class Choice(metaclass=_ChoiceType):
        """Base of gpunuma's enumerations, with ``str`` or ``int`` mixed in as with ``enum``.

        Members are the upper-case class attributes; ``Kind("value")`` finds a member by value (``ValueError``
        when none); members have ``name`` and ``value``, compare and hash as their value, iterate in order,
        pickle and copy as themselves. Type checkers see ``enum.Enum``.
        """

        __slots__ = ()
        _name_: str
        _value_: object

        @property
        def name(self) -> str:
            return self._name_

        @property
        def value(self) -> object:
            return self._value_

        def __repr__(self) -> str:
            return f"<{type(self).__qualname__}.{self._name_}: {self._value_!r}>"

        def __str__(self) -> str:
            # As enum: an int-valued member prints as its number (IntEnum), others as Kind.NAME.
            if isinstance(self, int):
                return int.__repr__(self)
            return f"{type(self).__qualname__}.{self._name_}"

        def __format__(self, spec: str) -> str:
            return format(str(self), spec)

        def __reduce_ex__(self, protocol: object) -> tuple[object, ...]:
            return type(self), (self._value_,)

        def __copy__(self) -> Choice:
            return self

        def __deepcopy__(self, memo: object) -> Choice:
            return self


def unchecked(cls: type[_V], fields: dict[str, Any]) -> _V:
    """A ``cls`` value holding ``fields`` (every field, by name) as given: no defaults, no ``__post_init__``.

    For adapters that build values by the hundred from data they checked already (a 1024-CPU machine's CPUs):
    a call through ``__init__`` costs ~6x more. ``fields`` becomes the value's own state, not a copy.
    """
    if len(fields) != len(cls._fields):
        raise TypeError(f"{cls.__qualname__}: every field is needed ({', '.join(cls._fields)})")
    value = object.__new__(cls)
    object.__setattr__(value, "__dict__", fields)
    return value


def replace(obj: _V, **changes: Any) -> _V:
    """A copy of value ``obj`` with ``changes`` (``dataclasses.replace`` without importing ``dataclasses``)."""
    state = obj.__dict__
    return type(obj)(**{name: changes.pop(name) if name in changes else state[name] for name in obj._fields}, **changes)
