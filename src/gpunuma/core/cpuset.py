"""An immutable set of CPU ids that reads and writes every form the kernel and NVML use.

Forms: the cpulist (``0-55,112-167``), the comma-separated 32-bit hex mask of sysfs
``local_cpus`` / procfs ``Cpus_allowed`` (most significant word first), and NVML's
array of unsigned 64-bit words (word 0 holds CPUs 0-63).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from gpunuma.errors import CpuSetParseError

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")
_HEX_WORD = re.compile(r"^[0-9a-fA-F]{1,8}$")
_U64 = (1 << 64) - 1


@dataclass(frozen=True, order=False)
class CpuSet:
    """A set of CPU ids. Construct with :meth:`of`, :meth:`parse_list`, :meth:`parse_mask`..."""

    ids: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        for cpu in self.ids:
            if not isinstance(cpu, int) or cpu < 0:
                raise CpuSetParseError(sorted(self.ids), f"CPU id {cpu!r} is not a non-negative int")

    # -- construction ---------------------------------------------------------------
    @classmethod
    def _trusted(cls, ids: frozenset[int]) -> CpuSet:
        """A set from ids already known to be non-negative ints (parsed, or combined from valid sets).

        Package-internal: skips the per-id check of ``__post_init__``, which dominates set algebra.
        """
        result = object.__new__(cls)
        # The frozen dataclass's own __init__ assigns its fields the same way.
        object.__setattr__(result, "ids", ids)
        return result

    @classmethod
    def of(cls, cpus: Iterable[int] = ()) -> CpuSet:
        """A set from any iterable of CPU ids."""
        return cls(frozenset(cpus))

    @classmethod
    def range(cls, first: int, last: int) -> CpuSet:
        """CPUs ``first`` to ``last`` inclusive, as a cpulist range reads."""
        return cls(frozenset(range(first, last + 1)))

    @classmethod
    def parse_list(cls, text: str) -> CpuSet:
        """Parse a cpulist such as ``0-55,112-167`` or ``0,2,4``; empty text is the empty set."""
        stripped = text.strip()
        if not stripped:
            return cls()
        cpus: set[int] = set()
        for part in stripped.split(","):
            match = _RANGE.match(part.strip())
            if not match:
                raise CpuSetParseError(text, f"{part!r} is not N or N-M")
            first = int(match.group(1))
            last = int(match.group(2)) if match.group(2) is not None else first
            if last < first:
                raise CpuSetParseError(text, f"range {part!r} runs backwards")
            cpus.update(range(first, last + 1))
        return cls._trusted(frozenset(cpus))

    @classmethod
    def parse_mask(cls, text: str) -> CpuSet:
        """Parse a kernel hex mask such as ``ffffffff,00000000`` (32-bit words, most significant first)."""
        stripped = text.strip()
        if not stripped:
            raise CpuSetParseError(text, "an empty mask")
        words = stripped.split(",")
        cpus: set[int] = set()
        for position, word in enumerate(reversed(words)):
            if not _HEX_WORD.match(word):
                raise CpuSetParseError(text, f"{word!r} is not a 32-bit hex word")
            value = int(word, 16)
            base = 32 * position
            bit = 0
            while value:
                if value & 1:
                    cpus.add(base + bit)
                value >>= 1
                bit += 1
        return cls._trusted(frozenset(cpus))

    @classmethod
    def from_nvml_words(cls, words: Sequence[int]) -> CpuSet:
        """Decode NVML's affinity array: bit ``i`` of word ``w`` is CPU ``64*w + i``."""
        cpus: set[int] = set()
        for position, word in enumerate(words):
            if not isinstance(word, int) or word < 0 or word > _U64:
                raise CpuSetParseError(list(words), f"word {position} ({word!r}) is not an unsigned 64-bit int")
            bit = 0
            while word:
                if word & 1:
                    cpus.add(64 * position + bit)
                word >>= 1
                bit += 1
        return cls._trusted(frozenset(cpus))

    # -- rendering ------------------------------------------------------------------
    def to_list(self) -> str:
        """The canonical cpulist, as the kernel prints it: ``0-3,8-11,14``; empty set is ``""``."""
        parts: list[str] = []
        for first, last in self.ranges():
            parts.append(str(first) if first == last else f"{first}-{last}")
        return ",".join(parts)

    def to_mask(self, words: int | None = None) -> str:
        """The kernel hex mask with ``words`` 32-bit words (default: as few as hold the set, at least one)."""
        needed = (max(self.ids) // 32 + 1) if self.ids else 1
        count = needed if words is None else words
        if count < needed:
            raise ValueError(f"{count} words cannot hold CPU {max(self.ids)}")
        value = self.bits()
        return ",".join(f"{(value >> (32 * i)) & 0xFFFFFFFF:08x}" for i in reversed(range(count)))

    def to_nvml_words(self, words: int | None = None) -> list[int]:
        """NVML's array of unsigned 64-bit words (default: as few as hold the set, at least one)."""
        needed = (max(self.ids) // 64 + 1) if self.ids else 1
        count = needed if words is None else words
        if count < needed:
            raise ValueError(f"{count} words cannot hold CPU {max(self.ids)}")
        value = self.bits()
        return [(value >> (64 * i)) & _U64 for i in range(count)]

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
