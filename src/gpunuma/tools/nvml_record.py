"""``nvml.json``, a snapshot's record of NVML's answers: its fields, and the check every record read back passes.

``gpunuma snapshot`` writes it (:func:`gpunuma.tools.snapshot.record_nvml`); ``--simulate PATH`` and
``GPUNUMA_SIMULATE`` replay it. A record comes from a file anyone may have edited, so every field the
replay uses is checked here before anything reads it: its JSON type (a ``bool`` is no number), its range
and its size. A record that fails is a :class:`~gpunuma.errors.SnapshotError` naming the file and the field
(``nvml.json: gpus[0].index: ...``), never a ``ValueError`` or ``KeyError`` from deep inside the replay.

The record is a JSON object, either ``{"error": TEXT}`` (NVML did not start) or::

    {"driver": TEXT, "count": N, "gpus": [GPU, ...]}

where each ``GPU`` holds ``index`` (its NVML index: the indices are ``0 .. N-1``, each once) and, for every
other answer, the answer under its key or NVML's error under ``<key>_error`` (``"NVMLError_NotSupported:
Not Supported"``). Keys this table does not know are left alone (a newer gpunuma may record more).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from gpunuma.core.cpuset import LIMIT
from gpunuma.core.pci import normalize_bus_id
from gpunuma.errors import GpunumaError, SnapshotError, quoted

#: The most bytes a record may hold (a DGX's record is ~10 kB).
MAX_BYTES = 1 << 22
#: More GPUs than any machine has: a record listing more is refused before its entries are read.
MAX_GPUS = 1024
#: An NVML affinity answer has at most this many 64-bit words: one bit per CPU id below the CpuSet bound.
MAX_WORDS = LIMIT // 64
#: NVML's MIG instances per GPU are at most 7; a record may list at most this many.
MAX_MIG = 64
#: Text fields (names, UUIDs, errors) longer than this are no answer of NVML's.
MAX_TEXT = 4096
#: NVML's NUMA node ids are unsigned 32-bit numbers; -1 is the "none" some drivers answer.
_NODE_RANGE = (-1, (1 << 32) - 1)


class _Bad(Exception):
    """A field's value is not what the record's format allows: ``why`` says what was expected."""


def _int(value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Bad(f"expected a whole number, got {_kind(value)}")
    if not low <= value <= high:
        raise _Bad(f"expected {low}..{high}, got {quoted(value)}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise _Bad(f"expected text, got {_kind(value)}")
    if len(value) > MAX_TEXT:
        raise _Bad(f"expected at most {MAX_TEXT} characters, got {len(value)}")
    return value


def _list(value: object, most: int) -> list[Any]:
    if not isinstance(value, list):
        raise _Bad(f"expected a list, got {_kind(value)}")
    if len(value) > most:
        raise _Bad(f"expected at most {most} entries, got {len(value)}")
    return value


def _words(value: object) -> None:
    for word in _list(value, MAX_WORDS):
        _int(word, 0, (1 << 64) - 1)


def _bus_id(value: object) -> None:
    try:
        normalize_bus_id(_text(value))
    except GpunumaError as err:  # BusIdError
        raise _Bad(str(err)) from None


def _mig_mode(value: object) -> None:
    modes = _list(value, 2)
    if len(modes) != 2:
        raise _Bad(f"expected [current, pending], got {len(modes)} entries")
    for mode in modes:
        _int(mode, 0, 1)


def _uuids(value: object) -> None:
    for uuid in _list(value, MAX_MIG):
        _text(uuid)


#: Each answer a GPU's record may hold -> the check of its value (its ``<key>_error`` is text).
GPU_FIELDS: dict[str, Callable[[object], object]] = {
    "uuid": _text,
    "name": _text,
    "bus_id": _bus_id,
    "numa_node_id": lambda value: _int(value, *_NODE_RANGE),
    "cpu_affinity": _words,
    "cpu_affinity_unscoped": _words,
    "cpu_affinity_socket": _words,
    "memory_affinity_node": _words,
    "memory_affinity_socket": _words,
    "mig_mode": _mig_mode,
    "mig_slots": lambda value: _int(value, 0, MAX_MIG),
    "mig_devices": _uuids,
}
#: The errors a GPU's record may hold for calls whose answer is not kept (their answers are handles).
GPU_ERRORS = ("handle", "pci")
#: Each answer the record itself may hold -> the check of its value.
TOP_FIELDS: dict[str, Callable[[object], object]] = {
    "error": _text,
    "driver": _text,
    "count": lambda value: _int(value, 0, MAX_GPUS),
}


def _kind(value: object) -> str:
    """What a JSON value is, for a message: a container by its size alone (never its nested contents)."""
    if isinstance(value, list):
        return f"a list of {len(value)} entries"
    if isinstance(value, dict):
        return f"an object of {len(value)} keys"
    if value is None:
        return "null"
    names = {bool: "true/false", int: "a number", float: "a number", str: "text"}
    return f"{names.get(type(value), type(value).__name__)} {quoted(value)}"


def _fields(record: dict[str, Any], table: dict[str, Callable[[object], object]], errors: tuple[str, ...],
            where: str, prefix: str) -> None:
    for key, check in table.items():
        _field(record, key, check, where, prefix)
    for key in (*table, *errors):
        _field(record, f"{key}_error", _text, where, prefix)


def _field(record: dict[str, Any], key: str, check: Callable[[object], object], where: str, prefix: str) -> None:
    if key not in record:
        return
    try:
        check(record[key])
    except _Bad as bad:
        raise SnapshotError(f"{where}: {prefix}{key}: {bad}") from None


def parse_record(data: bytes, where: str) -> dict[str, Any]:
    """The record ``data`` holds (the bytes of the file ``where`` names), every field checked.

    Returns the JSON object as it is; raises :class:`~gpunuma.errors.SnapshotError` naming ``where`` and
    the field for anything else: bytes that are not JSON (too many, or nested too deep to read), a record
    that is not an object, a field of the wrong type or out of range, GPU indices that are not ``0 .. N-1``.
    """
    if len(data) > MAX_BYTES:
        raise SnapshotError(f"{where}: {len(data)} bytes; a record of NVML's answers holds at most {MAX_BYTES}")
    try:
        record = json.loads(data)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise SnapshotError(f"{where}: not a JSON record of NVML's answers: {str(err)[:200]}") from None
    if not isinstance(record, dict):
        raise SnapshotError(f"{where}: expected a JSON object, got {_kind(record)}")
    _fields(record, TOP_FIELDS, (), where, "")
    if "error" in record:
        return record
    gpus = record.get("gpus", [])
    try:
        _list(gpus, MAX_GPUS)
    except _Bad as bad:
        raise SnapshotError(f"{where}: gpus: {bad}") from None
    seen: set[int] = set()
    for position, gpu in enumerate(gpus):
        prefix = f"gpus[{position}]."
        if not isinstance(gpu, dict):
            raise SnapshotError(f"{where}: gpus[{position}]: expected an object, got {_kind(gpu)}")
        if "index" not in gpu:
            raise SnapshotError(f"{where}: {prefix}index: missing")
        _field(gpu, "index", lambda value: _int(value, 0, len(gpus) - 1), where, prefix)
        if gpu["index"] in seen:
            raise SnapshotError(f"{where}: {prefix}index: {gpu['index']} is recorded twice")
        seen.add(gpu["index"])
        _fields(gpu, GPU_FIELDS, GPU_ERRORS, where, prefix)
    if "count" in record and record["count"] != len(gpus):
        raise SnapshotError(f"{where}: count: {record['count']} GPUs, but {len(gpus)} recorded")
    return record
