"""A tampered ``nvml.json`` in a snapshot is a SnapshotError naming the file and the field, from every way in:
``load_snapshot``, ``--simulate PATH``, ``GPUNUMA_SIMULATE`` and a best-effort bind (then "not bound", with it)."""

from __future__ import annotations

import copy
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from gpunuma.api import bind_to_gpu
from gpunuma.core.reasons import codes
from gpunuma.errors import NotBoundError, SnapshotError
from gpunuma.tools.cli import ExitCode, main
from gpunuma.tools.nvml_record import MAX_BYTES, MAX_WORDS
from gpunuma.tools.snapshot import write_snapshot
from gpunuma_fakes import machine
from gpunuma_fakes.nvml import FakeNvml
from gpunuma_fakes.render import render_sysfs
from gpunuma_fakes.snapshot import load_snapshot

#: cloud-vm: 4 GPUs whose NVML answers no NUMA id (recorded as its error), 16 CPUs.
HOST = "cloud-vm"


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """The members of a snapshot of ``HOST``, read once: each test writes them again with its own record."""
    folder = tmp_path_factory.mktemp("host")
    spec = machine(HOST)
    write_snapshot(folder / "host.tar.gz", root=render_sysfs(spec, folder / "tree"), nvml=FakeNvml(spec))
    with tarfile.open(folder / "host.tar.gz") as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar.getmembers()]  # type: ignore[union-attr]


def recorded(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> dict[str, Any]:
    return json.loads(next(data for m, data in members if m.name.endswith("/nvml.json")))  # type: ignore[arg-type]


def snapshot_with(members: list[tuple[tarfile.TarInfo, bytes | None]], record: bytes, path: Path) -> Path:
    """The snapshot with ``record`` as its ``nvml.json``, written to ``path`` (a ``.tar``)."""
    with tarfile.open(path, "w") as tar:
        for member, data in members:
            if member.name.endswith("/nvml.json"):
                member = copy.copy(member)
                member.size, data = len(record), record
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def _set(path: str, value: object) -> Any:
    """A change to the record: ``path`` of keys and list positions (``gpus.0.index``), set or (``...``) removed."""

    def change(record: Any) -> None:
        *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
        for part in parents:
            record = record[part]
        if value is ...:
            del record[last]
        else:
            record[last] = value

    return change


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


#: (what is tampered, the change, the field the error names)
TAMPERED = [
    ("index as text", _set("gpus.0.index", "0"), "gpus[0].index"),
    ("index as a bool", _set("gpus.1.index", True), "gpus[1].index"),
    ("index as a float", _set("gpus.0.index", 0.0), "gpus[0].index"),
    ("index negative", _set("gpus.0.index", -1), "gpus[0].index"),
    ("index huge", _set("gpus.0.index", 10**30), "gpus[0].index"),
    ("index beyond the GPUs", _set("gpus.3.index", 4), "gpus[3].index"),
    ("index null", _set("gpus.0.index", None), "gpus[0].index"),
    ("index missing", _set("gpus.2.index", ...), "gpus[2].index"),
    ("index twice", _set("gpus.1.index", 0), "gpus[1].index"),
    ("numa node as text", _set("gpus.0.numa_node_id", "x"), "gpus[0].numa_node_id"),
    ("numa node as a bool", _set("gpus.0.numa_node_id", False), "gpus[0].numa_node_id"),
    ("numa node huge", _set("gpus.0.numa_node_id", 10**30), "gpus[0].numa_node_id"),
    ("numa node below -1", _set("gpus.0.numa_node_id", -2), "gpus[0].numa_node_id"),
    ("numa node as a list", _set("gpus.0.numa_node_id", [0]), "gpus[0].numa_node_id"),
    ("affinity as text", _set("gpus.0.cpu_affinity", "zz"), "gpus[0].cpu_affinity"),
    ("affinity word beyond 64 bits", _set("gpus.0.cpu_affinity", [1 << 64]), "gpus[0].cpu_affinity"),
    ("affinity word negative", _set("gpus.0.cpu_affinity", [-1]), "gpus[0].cpu_affinity"),
    ("affinity word a bool", _set("gpus.0.cpu_affinity_socket", [True]), "gpus[0].cpu_affinity_socket"),
    ("affinity nested", _set("gpus.0.memory_affinity_node", [[1]]), "gpus[0].memory_affinity_node"),
    ("affinity too long", _set("gpus.0.cpu_affinity", [0] * (MAX_WORDS + 1)), "gpus[0].cpu_affinity"),
    ("mig mode a number", _set("gpus.0.mig_mode", 5), "gpus[0].mig_mode"),
    ("mig mode short", _set("gpus.0.mig_mode", [1]), "gpus[0].mig_mode"),
    ("mig mode out of range", _set("gpus.0.mig_mode", [0, 2]), "gpus[0].mig_mode"),
    ("mig devices as text", _set("gpus.0.mig_devices", "MIG-x"), "gpus[0].mig_devices"),
    ("mig devices numbers", _set("gpus.0.mig_devices", [5]), "gpus[0].mig_devices"),
    ("mig slots huge", _set("gpus.0.mig_slots", 10**6), "gpus[0].mig_slots"),
    ("uuid a number", _set("gpus.0.uuid", 5), "gpus[0].uuid"),
    ("uuid an object", _set("gpus.0.uuid", {"a": [1]}), "gpus[0].uuid"),
    ("name huge", _set("gpus.0.name", "H" * 100_000), "gpus[0].name"),
    ("bus id nonsense", _set("gpus.0.bus_id", "nonsense"), "gpus[0].bus_id"),
    ("bus id a number", _set("gpus.0.bus_id", 7), "gpus[0].bus_id"),
    ("an error a number", _set("gpus.0.numa_node_id_error", 3), "gpus[0].numa_node_id_error"),
    ("a handle error an object", _set("gpus.0.handle_error", {}), "gpus[0].handle_error"),
    ("gpus an object", _set("gpus", {}), "gpus"),
    ("gpus text", _set("gpus", "x"), "gpus"),
    ("a gpu a number", _set("gpus.0", 5), "gpus[0]"),
    ("a gpu a list", _set("gpus.0", []), "gpus[0]"),
    ("count not the GPUs", _set("count", 3), "count"),
    ("count as text", _set("count", "4"), "count"),
    ("driver a list", _set("driver", ["x"]), "driver"),
]
#: (what is wrong, the bytes of the record, what the error says)
BROKEN = [
    ("a list", b"[]", "expected a JSON object"),
    ("a number", b"5", "expected a JSON object"),
    ("null", b"null", "expected a JSON object"),
    ("not JSON", b'{"gpus": [', "not a JSON record"),
    ("not text", b"\xff\xfe\x00", "not a JSON record"),
    ("nested too deep to read", _deep(200_000).encode(), "not a JSON record"),
    ("too big", b" " * (MAX_BYTES + 1), "bytes"),
    ("error a number", b'{"error": 3}', "error"),
]


def cases(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> list[tuple[str, bytes, str]]:
    built = []
    for what, change, field in TAMPERED:
        record = recorded(members)
        change(record)
        built.append((what, json.dumps(record).encode(), field))
    return [*built, *BROKEN]


@pytest.mark.parametrize("case", range(len(TAMPERED) + len(BROKEN)))
def test_a_tampered_record_is_a_snapshot_error_naming_the_file_and_the_field(members, tmp_path, case):
    what, record, field = cases(members)[case]
    path = snapshot_with(members, record, tmp_path / "host.tar")

    with pytest.raises(SnapshotError) as raised:
        load_snapshot(path).source().read()

    assert "nvml.json: " in str(raised.value) and field in str(raised.value), what
    assert len(str(raised.value)) < 500, what  # nothing huge quoted


@pytest.mark.parametrize("case", range(0, len(TAMPERED) + len(BROKEN), 4))
def test_a_tampered_record_from_the_command_line_is_one_line_and_exit_5(members, tmp_path, capsys, case):
    what, record, field = cases(members)[case]
    path = snapshot_with(members, record, tmp_path / "host.tar")

    code = main(["plan", "--simulate", str(path), "--gpu", "0"])

    err = capsys.readouterr().err
    assert code == ExitCode.ERROR, what
    assert err.count("\n") == 1 and "nvml.json: " in err and field in err and "Traceback" not in err, what


@pytest.mark.parametrize("case", range(1, len(TAMPERED) + len(BROKEN), 4))
def test_a_tampered_record_under_gpunuma_simulate_is_not_bound_with_the_reason(members, tmp_path, case):
    what, record, field = cases(members)[case]
    env = {"GPUNUMA_SIMULATE": str(snapshot_with(members, record, tmp_path / "host.tar")), "CUDA_VISIBLE_DEVICES": "0"}

    report = bind_to_gpu(0, env=env)

    assert not report.bound and codes(report.reasons) == ("plan_failed",), what
    assert "nvml.json: " in report.reasons[0] and field in report.reasons[0], what
    with pytest.raises(NotBoundError, match="nvml.json: ") as caught:
        bind_to_gpu(0, env=env, strict=True)
    assert isinstance(caught.value.__cause__, SnapshotError)


def test_an_untampered_record_replays_and_unknown_keys_are_left_alone(members, tmp_path):
    record = recorded(members)
    record["recorded_by_a_newer_gpunuma"] = json.loads(_deep(100))
    record["gpus"][0]["more"] = {"nested": [[{"junk": None}]]}
    path = snapshot_with(members, json.dumps(record).encode(), tmp_path / "host.tar")

    replayed = load_snapshot(path).source().read()

    assert [gpu.uuid for gpu in replayed.gpus] == [gpu.uuid for gpu in machine(HOST).source(tmp_path / "t").read().gpus]
