"""PCI bus ids: the one reader and writer of ``[DOMAIN:]BUS:DEVICE.FUNCTION`` in every form gpunuma meets.

sysfs names functions ``0000:c3:00.0`` (lower case, 4-digit domain); NVML's ``busId`` is
``00000000:C3:00.0`` (``%08X:%02X:%02X.%X``, NUL-padded in a 32-byte buffer) and its ``busIdLegacy``
``0000:C3:00.0``; ``/proc/driver/nvidia/gpus`` and ``nvidia-smi`` use the 4-digit upper-case form;
users and Ray write any of these, or ``c3:00.0`` without a domain. Text is read by ``str`` methods,
not ``re`` (each bound worker imports this), and hex digits are ASCII only: ``int(..., 16)`` alone
would read full-width ``１`` as a digit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeGuard

from gpunuma.errors import BusIdError

#: The longest text read as a bus id before stripping: NVML's buffer is 32 bytes, the longest id 16.
LONGEST = 64

_HEX = frozenset("0123456789abcdefABCDEF")
_LOWER_HEX = frozenset("0123456789abcdef")
_FUNCTIONS = frozenset("01234567")
#: Where unreadable names sort: after every real function (domains are at most 32 bits).
_LAST = (1 << 32, 0, 0, 0)


def _hex(text: str, most: int) -> int | None:
    return int(text, 16) if 0 < len(text) <= most and _HEX.issuperset(text) else None


@dataclass(frozen=True, slots=True)
class BusId:
    """One PCI function's address: ``domain`` (up to 32 bits), ``bus``, ``device`` and ``function`` (0-7)."""

    domain: int
    bus: int
    device: int
    function: int

    @classmethod
    def parse(cls, text: str | bytes) -> BusId | None:
        """The id in ``text`` (any form above, either case, bytes, blanks and NUL padding), else None."""
        if len(text) > LONGEST:
            return None
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        head, dot, function = text.strip().rstrip("\x00").rpartition(".")
        if not dot or len(function) != 1 or function not in _FUNCTIONS:
            return None
        parts = head.split(":")
        if len(parts) == 2:
            parts.insert(0, "0")
        if len(parts) != 3:
            return None
        domain, bus, device = _hex(parts[0], 8), _hex(parts[1], 2), _hex(parts[2], 2)
        if domain is None or bus is None or device is None:
            return None
        return cls(domain, bus, device, int(function))

    @property
    def sysfs(self) -> str:
        """``0000:c3:00.0``: the name under ``/sys/bus/pci/devices`` and gpunuma's own form."""
        return f"{self.domain:04x}:{self.bus:02x}:{self.device:02x}.{self.function}"

    @property
    def nvml(self) -> str:
        """``00000000:C3:00.0``: NVML's ``busId``."""
        return f"{self.domain:08X}:{self.bus:02X}:{self.device:02X}.{self.function}"

    @property
    def legacy(self) -> str:
        """``0000:C3:00.0``: NVML's ``busIdLegacy``, ``nvidia-smi`` and ``/proc/driver/nvidia/gpus``."""
        return f"{self.domain:04X}:{self.bus:02X}:{self.device:02X}.{self.function}"

    @property
    def key(self) -> tuple[int, int, int, int]:
        """PCI bus order (what ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and NVML's numbering follow)."""
        return (self.domain, self.bus, self.device, self.function)


def parse_bus_id(text: str | bytes) -> BusId:
    """The id in ``text``; :class:`~gpunuma.errors.BusIdError` (a ``ValueError``) when it is not one."""
    parsed = BusId.parse(text)
    if parsed is None:
        raise BusIdError(text)
    return parsed


def normalize_bus_id(text: str | bytes) -> str:
    """``00000000:1B:00.0`` / ``0000:1b:00.0`` / ``1b:00.0`` / bytes -> ``0000:1b:00.0`` (sysfs form).

    Raises :class:`~gpunuma.errors.BusIdError` (a ``ValueError``) for anything else.
    """
    if is_sysfs_form(text):
        return text  # already the sysfs form, as every sysfs path gives it
    return parse_bus_id(text).sysfs


def is_sysfs_form(text: str | bytes) -> TypeGuard[str]:
    """Whether ``text`` is already ``0000:c3:00.0``: what every name under ``/sys/bus/pci/devices`` is."""
    return (
        isinstance(text, str) and len(text) == 12 and text[4] == ":" and text[7] == ":" and text[10] == "."
        and text[11] in _FUNCTIONS and _LOWER_HEX.issuperset(text[:4] + text[5:7] + text[8:10])
    )  # fmt: skip


def is_bus_id(text: str) -> bool:
    """Whether ``text`` reads as a PCI bus id in any form above."""
    return BusId.parse(text) is not None


def in_bus_order(names: Iterable[str]) -> list[str]:
    """``names`` sorted by :func:`bus_order`: as text when every one is in sysfs form (equal widths, lower case)."""
    listed = list(names)
    if all(map(is_sysfs_form, listed)):
        return sorted(listed)
    return sorted(listed, key=bus_order)


def bus_order(text: str) -> tuple[int, int, int, int]:
    """A sort key putting ids in PCI bus order (wide domains included) and anything unreadable last."""
    if is_sysfs_form(text):  # a GPU read sorts every PCI function (63 on a DGX H100): no value built for each
        return (int(text[:4], 16), int(text[5:7], 16), int(text[8:10], 16), int(text[11]))
    parsed = BusId.parse(text)
    return _LAST if parsed is None else parsed.key
