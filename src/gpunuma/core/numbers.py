"""The one reader of integers written as text: kernel files, environment variables, command lines.

The kernel prints ``%d``/``%x`` in ASCII, and the CUDA runtime reads ``CUDA_VISIBLE_DEVICES`` with
ASCII ``strtol``. Python's ``int()`` also takes ``+1``, ``1_0`` and every Unicode digit (``０``,
``١``): a corrupt ``numa_node`` or a mistyped variable would become a wrong node or GPU stated as fact.
Lengths are bounded too, so a 5000-digit string is refused here and never reaches ``int()``.
"""

from __future__ import annotations

#: More digits than any id, count or size gpunuma reads (a kB count of 2**63 has 19).
MAX_DIGITS = 20
_DECIMAL = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")


def digits(text: str) -> bool:
    """Whether ``text`` is one or more ASCII decimal digits, of any length (compare such ids as text)."""
    return bool(text) and _DECIMAL.issuperset(text)


def decimal(text: str, *, signed: bool = False) -> int | None:
    """``text`` as ASCII decimal digits (a leading ``-`` too when ``signed``), else None. No blanks, no ``+``."""
    body = text[1:] if signed and text[:1] == "-" else text
    if len(body) > MAX_DIGITS or not digits(body):
        return None
    return int(text)


def hexadecimal(text: str) -> int | None:
    """``text`` as ASCII hex digits, with or without a ``0x`` prefix (``0x10de``), else None."""
    body = text[2:] if text[:2] in ("0x", "0X") else text
    if not body or len(body) > MAX_DIGITS or not _HEX.issuperset(body):
        return None
    return int(body, 16)


def integer(text: str) -> int:
    """A signed decimal command-line value (``--node 1``); argparse names the function in its error."""
    value = decimal(text.strip(), signed=True)
    if value is None:
        raise ValueError(text)
    return value


def natural(text: str) -> int:
    """A non-negative decimal command-line value (``--physical-gpu 3``)."""
    value = decimal(text.strip())
    if value is None:
        raise ValueError(text)
    return value
