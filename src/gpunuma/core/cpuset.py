"""An immutable set of CPU ids that reads and writes every form the kernel and NVML use.

Forms: the cpulist (``0-55,112-167``, also the kernel's node lists), the comma-separated 32-bit
hex mask of sysfs ``cpumap``/``local_cpus`` and procfs ``Cpus_allowed`` (most significant word
first), and arrays of unsigned 64-bit words (NVML's affinity arrays, the kernel's ``nodemask``
buffers: word 0 holds ids 0-63). This module is the one parser and formatter of those forms.

Ids are below :data:`LIMIT` (65536): no kernel configures more than 8192 CPUs (``NR_CPUS``) or
1024 nodes (``NODES_SHIFT`` 10), and the bound turns absurd text (``0-100000000``) into a
:class:`~gpunuma.errors.CpuSetParseError` at once instead of an exhausted memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from gpunuma.errors import CpuSetParseError, quoted

#: Every id is below this bound (see the module docstring).
LIMIT = 1 << 16
#: Every NUMA node id is below this bound: the kernel's MAX_NUMNODES (``NODES_SHIFT`` is at most 10).
NODE_LIMIT = 1 << 10
#: What kernel text may carry around its value: the trailing newline, padding, NUL bytes of a raw buffer.
BLANK = " \t\n\r\v\f\x00"
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
#: Decimal digits of the largest id below LIMIT: longer numbers are beyond it (and never reach int()).
_MAX_DIGITS = len(str(LIMIT - 1))
#: Text up to this long takes the one-pass path for lists of single ids.
_SHORT = 4096
#: An entry up to this long (``NNNNN-NNNNN``) is parsed inline; longer ones go through :func:`_entry`.
_SHORT_RANGE = 2 * _MAX_DIGITS + 1
#: Bound once: set algebra and parsing build many sets, and the attribute look-ups cost as much as the build.
_new = object.__new__
_setattr = object.__setattr__


def _set_bits(word: int, base: int, into: list[int]) -> None:
    """Append ``base + i`` for every set bit ``i`` of ``word``, visiting set bits only."""
    while word:
        low = word & -word
        into.append(base + low.bit_length() - 1)
        word ^= low


def parse_ids(text: str) -> frozenset[int]:
    """Parse a cpulist or node list such as ``0-55,112-167`` or ``0,2,4`` to its ids; blank text is empty.

    Surrounding whitespace and NUL bytes are ignored, as are blanks around each entry. An id at or
    above :data:`LIMIT`, or ranges that together span more than ``LIMIT`` ids (counting overlaps),
    raise :class:`CpuSetParseError`: the work is bounded by the text's length plus ``LIMIT``.
    """
    stripped = text.strip(BLANK)
    # Sysfs reads parse ~100 sibling lists per topology: keep the common forms on short paths.
    if len(stripped) <= _SHORT and stripped.isascii() and stripped.replace(",", "").isdigit():
        # Single ids only (SMT sibling lists, one-node lists): nothing to expand, one pass in C.
        # Short text keeps int() fast (quadratic before 3.11); "1,,2" fails int() and is named below.
        try:
            single = frozenset(map(int, stripped.split(",")))
        except ValueError:
            pass
        else:
            if max(single) < LIMIT:
                return single
    if not stripped:
        return frozenset()
    if not stripped.isascii():
        raise CpuSetParseError(text, "characters other than ASCII digits, '-' and ','")
    ids: set[int] = set()
    budget = LIMIT
    for part in stripped.split(","):
        first, dash, last = part.partition("-")
        if first.isdigit() and (last.isdigit() or not dash) and len(part) <= _SHORT_RANGE:
            low = int(first)
            high = int(last) if dash else low
        else:
            low, high = _entry(text, part)
        if not low <= high < LIMIT:
            shown = quoted(part)
            raise CpuSetParseError(
                text, f"range {shown} runs backwards" if high < low else f"{shown} names an id beyond {LIMIT - 1}"
            )
        budget -= high - low + 1
        if budget < 0:
            raise CpuSetParseError(text, f"ranges span more than {LIMIT} ids")
        ids.update(range(low, high + 1))
    return frozenset(ids)


def _entry(text: str, part: str) -> tuple[int, int]:
    """One cpulist entry that is not plain ``N``/``N-M``: blanks around it are fine, anything else is named."""
    first, dash, last = part.strip(BLANK).partition("-")
    if not (first.isdigit() and (last.isdigit() or not dash)):
        raise CpuSetParseError(text, f"{quoted(part)} is not N or N-M")
    if len(first) > _MAX_DIGITS or len(last) > _MAX_DIGITS:
        raise CpuSetParseError(text, f"{quoted(part)} names an id beyond {LIMIT - 1}")
    low = int(first)
    return low, int(last) if dash else low


@dataclass(frozen=True, slots=True)
class CpuSet:
    """A set of CPU ids. Construct with :meth:`of`, :meth:`parse_list`, :meth:`parse_mask`..."""

    ids: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        for cpu in self.ids:
            if not isinstance(cpu, int) or cpu < 0 or cpu >= LIMIT:
                raise CpuSetParseError(self.ids, f"CPU id {cpu!r} is not an int in 0..{LIMIT - 1}")

    # Set algebra compares sets often: by ids directly, not through a tuple of the fields.
    def __eq__(self, other: object) -> bool:
        return self.ids == other.ids if other.__class__ is CpuSet else NotImplemented

    def __hash__(self) -> int:
        return hash(self.ids)

    # -- construction ---------------------------------------------------------------
    @classmethod
    def _trusted(cls, ids: frozenset[int]) -> CpuSet:
        """A set from ids already known to be ints in range (parsed, or combined from valid sets).

        Package-internal: skips the per-id check of ``__post_init__``, which dominates set algebra.
        """
        result = _new(cls)
        # The frozen dataclass's own __init__ assigns its fields the same way.
        _setattr(result, "ids", ids)
        return result

    @classmethod
    def of(cls, cpus: Iterable[int] = ()) -> CpuSet:
        """A set from any iterable of CPU ids."""
        return cls(frozenset(cpus))

    @classmethod
    def range(cls, first: int, last: int) -> CpuSet:
        """CPUs ``first`` to ``last`` inclusive, as a cpulist range reads."""
        if first < 0 or last >= LIMIT:
            raise CpuSetParseError(f"{first}-{last}", f"ids must lie in 0..{LIMIT - 1}")
        return cls._trusted(frozenset(range(first, last + 1)))

    @classmethod
    def parse_list(cls, text: str) -> CpuSet:
        """Parse a cpulist such as ``0-55,112-167`` or ``0,2,4`` (see :func:`parse_ids`); blank text is empty."""
        return cls._trusted(parse_ids(text))

    @classmethod
    def parse_mask(cls, text: str) -> CpuSet:
        """Parse a kernel hex mask such as ``ffffffff,00000000`` (32-bit words, most significant first).

        The leading word may be shorter (``%*pb`` prints only the digits the bit count needs);
        surrounding whitespace and NUL bytes are ignored; more than ``LIMIT / 32`` words is refused.
        """
        stripped = text.strip(BLANK)
        if not stripped:
            raise CpuSetParseError(text, "an empty mask")
        words = stripped.split(",")
        if len(words) > LIMIT // 32:
            raise CpuSetParseError(text, f"{len(words)} words hold ids beyond {LIMIT - 1}")
        found: list[int] = []
        for position, word in enumerate(reversed(words)):
            if not 0 < len(word) <= 8 or not _HEX_DIGITS.issuperset(word):
                raise CpuSetParseError(text, f"{quoted(word)} is not a 32-bit hex word")
            _set_bits(int(word, 16), 32 * position, found)
        return cls._trusted(frozenset(found))

    @classmethod
    def from_words(cls, words: Sequence[int], width: int = 64) -> CpuSet:
        """Decode an array of unsigned ``width``-bit words: bit ``i`` of word ``w`` is id ``width*w + i``.

        NVML's affinity arrays and the kernel's ``nodemask`` buffers (``unsigned long[]``) use this form.
        """
        if len(words) * width > LIMIT:
            raise CpuSetParseError(list(words), f"{len(words)} words hold ids beyond {LIMIT - 1}")
        top = (1 << width) - 1
        found: list[int] = []
        for position, word in enumerate(words):
            if not isinstance(word, int) or word < 0 or word > top:
                raise CpuSetParseError(
                    list(words), f"word {position} ({quoted(word)}) is not an unsigned {width}-bit int"
                )
            _set_bits(word, width * position, found)
        return cls._trusted(frozenset(found))

    @classmethod
    def from_nvml_words(cls, words: Sequence[int]) -> CpuSet:
        """Decode NVML's affinity array: bit ``i`` of word ``w`` is CPU ``64*w + i``."""
        return cls.from_words(words, 64)

    # -- rendering ------------------------------------------------------------------
    def to_list(self) -> str:
        """The canonical cpulist, as the kernel prints it: ``0-3,8-11,14``; empty set is ``""``."""
        parts: list[str] = []
        for first, last in self.ranges():
            parts.append(str(first) if first == last else f"{first}-{last}")
        return ",".join(parts)

    def to_mask(self, words: int | None = None, *, nbits: int | None = None) -> str:
        """The kernel hex mask in 32-bit words, most significant first.

        ``words`` full words (default: as few as hold the set, at least one); or, as the kernel's
        ``%*pb`` prints a bitmap of ``nbits`` bits, a leading word only as wide as ``nbits`` needs.
        """
        lead = 8
        if nbits is not None:
            words = -(-nbits // 32)
            lead = ((nbits % 32 or 32) + 3) // 4
        needed = (max(self.ids) // 32 + 1) if self.ids else 1
        count = needed if words is None else words
        if count < needed:
            raise ValueError(f"{count} words cannot hold CPU {max(self.ids)}")
        value = self.bits()
        chunks = [f"{(value >> (32 * i)) & 0xFFFFFFFF:08x}" for i in reversed(range(count))]
        chunks[0] = chunks[0][8 - lead :]
        return ",".join(chunks)

    def to_words(self, words: int | None = None, width: int = 64) -> list[int]:
        """An array of unsigned ``width``-bit words, word 0 first (default: as few as hold the set, at least one)."""
        needed = (max(self.ids) // width + 1) if self.ids else 1
        count = needed if words is None else words
        if count < needed:
            raise ValueError(f"{count} words cannot hold CPU {max(self.ids)}")
        value = self.bits()
        top = (1 << width) - 1
        return [(value >> (width * i)) & top for i in range(count)]

    def to_nvml_words(self, words: int | None = None) -> list[int]:
        """NVML's array of unsigned 64-bit words (default: as few as hold the set, at least one)."""
        return self.to_words(words, 64)

    def bits(self) -> int:
        """The set as one integer bitmask (bit ``i`` is CPU ``i``)."""
        value = 0
        for cpu in self.ids:
            value |= 1 << cpu
        return value

    def ranges(self) -> list[tuple[int, int]]:
        """Maximal runs of consecutive ids, ascending."""
        runs: list[tuple[int, int]] = []
        for cpu in sorted(self.ids):
            if runs and runs[-1][1] == cpu - 1:
                runs[-1] = (runs[-1][0], cpu)
            else:
                runs.append((cpu, cpu))
        return runs

    # -- set algebra ------------------------------------------------------------------
    def __and__(self, other: CpuSet) -> CpuSet:
        return CpuSet._trusted(self.ids & other.ids)

    def __or__(self, other: CpuSet) -> CpuSet:
        return CpuSet._trusted(self.ids | other.ids)

    def __sub__(self, other: CpuSet) -> CpuSet:
        return CpuSet._trusted(self.ids - other.ids)

    def __le__(self, other: CpuSet) -> bool:
        return self.ids <= other.ids

    def __lt__(self, other: CpuSet) -> bool:
        return self.ids < other.ids

    def __contains__(self, cpu: object) -> bool:
        return cpu in self.ids

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self.ids))

    def __len__(self) -> int:
        return len(self.ids)

    def __bool__(self) -> bool:
        return bool(self.ids)

    def isdisjoint(self, other: CpuSet) -> bool:
        return self.ids.isdisjoint(other.ids)

    def __str__(self) -> str:
        return self.to_list()

    def __repr__(self) -> str:
        return f"CpuSet({self.to_list()!r})"


def node_list(ids: Iterable[int]) -> str:
    """Node ids as the kernel writes a node list (``0-1,4``): the one text for node sets in messages and argv."""
    return CpuSet.of(ids).to_list()
