"""The bench's one command on a tiny repetition count: the table and JSON have the promised shape.

Never asserts timings (a shared 2-core CI box is too noisy for that); only that every row ran
(or says why it was skipped) and reports n, min, median and max per series, in the table and the JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"
STATS_KEYS = {"label", "n", "min_ns", "median_ns", "max_ns"}
ROW_KEYS = {"key", "tree", "what", "target", "series", "headline", "verdict", "derived", "notes", "row_seconds"}
WITHOUT_RAY = [
    "import", "cold", "exec", "sysfs-dgx", "sysfs-1024", "plan", "sim-bind", "sim-plan", "archive", "bind", "verify",
    "numa-maps", "migrate", "numactl", "nvml", "suite",
]
CHECKOUT = RUN.parent.parent


def run_bench(tmp_path: Path, rows: list[str], *extra: str) -> tuple[str, dict]:
    out = tmp_path / "bench.json"
    argv = [sys.executable, str(RUN), *rows, "--quick", "--json", str(out), *extra]  # the rows named as arguments
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, json.loads(out.read_text())


def assert_row_shape(row: dict) -> None:
    assert ROW_KEYS <= set(row), f"{row['key']} lacks {ROW_KEYS - set(row)}"
    if row["verdict"].startswith("skipped: "):
        assert row["series"] == [], "a skipped row has no numbers"
        return
    assert row["verdict"] in {"met", "missed", "reported"}, row["verdict"]
    assert row["series"], f"{row['key']} measured nothing"
    for series in row["series"]:
        assert set(series) == STATS_KEYS
        assert series["n"] >= 1
        assert 0 < series["min_ns"] <= series["median_ns"] <= series["max_ns"]


def assert_table_lists(stdout: str, rows: list[dict]) -> None:
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| row | series | n | min | median | max |"))
    body = []
    for line in lines[header + 2 :]:
        if not line.startswith("| "):
            break  # the main table ends; a before/after table may follow
        body.append(line)
    assert [line.split(" | ")[0][2:] for line in body if not line.startswith("|  |")] == [r["key"] for r in rows]
    assert len(body) == sum(max(1, len(r["series"])) for r in rows), "one table line per series"


def test_quick_run_without_ray_prints_and_writes_every_row_with_n_min_median_max(tmp_path):
    stdout, payload = run_bench(tmp_path, WITHOUT_RAY)

    assert payload["environment"]["quick"] is True
    assert [row["key"] for row in payload["rows"]] == WITHOUT_RAY
    for row in payload["rows"]:
        assert_row_shape(row)
    by_key = {row["key"]: row for row in payload["rows"]}
    assert by_key["import"]["derived"]["heavy_modules_imported"] == [], "import gpunuma must not pull in ray/pynvml"
    assert set(by_key["sysfs-1024"]["derived"]["median_ns_by_cpus"]) == {"256", "512", "1024"}
    assert by_key["bind"]["derived"]["threads_read_back"] == 20
    assert by_key["verify"]["derived"]["threads"] == 20
    held = by_key["numa-maps"]["derived"]["base"]
    assert held["pages"] * held["page_size"] >= 1 << 30, "the holder's GiB is counted"
    assert by_key["migrate"]["derived"]["nodes"], "the memory nodes it moved between"
    assert by_key["numactl"]["verdict"] == "reported" or by_key["numactl"]["verdict"].startswith("skipped")
    assert by_key["cold"]["derived"]["ratio_cpu_paired"] > 1, "binding costs more than a bare interpreter"
    assert by_key["sim-bind"]["derived"]["created"] == 0, "a simulated bind writes no file"
    assert by_key["archive"]["derived"]["members"] > 12_000
    assert_table_lists(stdout, payload["rows"])


def test_compare_runs_each_row_on_both_trees_and_prints_before_and_after(tmp_path):
    # This checkout against itself: the machinery (installs, probe children, the table), not the numbers.
    stdout, payload = run_bench(tmp_path, ["cold", "plan"], "--compare", str(CHECKOUT))

    assert [(row["key"], row["tree"]) for row in payload["rows"]] == [
        ("cold", "before"), ("cold", "current"), ("plan", "before"), ("plan", "current")
    ]
    for row in payload["rows"]:
        assert_row_shape(row)
    assert set(payload["trees"]) == {"before", "current"}
    assert "| row | series | before median | current median | current/before |" in stdout
    assert_table_lists(stdout, [row for row in payload["rows"] if row["tree"] == "current"])


@pytest.mark.ray
@pytest.mark.slow
def test_quick_ray_row_times_both_sides_and_binds_like_the_dgx_layout(tmp_path):
    pytest.importorskip("ray")
    stdout, payload = run_bench(tmp_path, ["ray"])

    (row,) = payload["rows"]
    assert_row_shape(row)
    assert [s["label"] for s in row["series"]] == [
        "with binding (GpuBoundActor)", "without (plain actor)",
        "one worker: unpickle + __init__, bound (CPU)", "one worker: unpickle + __init__, plain (CPU)",
    ]
    assert isinstance(row["derived"]["added_fraction"], float)
    assert row["derived"]["worker_bind_cpu_ns"] > 0, "binding costs a worker something"
    assert_table_lists(stdout, payload["rows"])
