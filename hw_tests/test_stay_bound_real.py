"""Staying bound on the GPU host: ``verify()`` finds a real thread a library moved and puts it back; a late bind
with ``migrate=True`` moves 1 GiB touched on another node (its GB/s recorded); on a one-node host nothing moves."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_child

_DRIFT_CHILD = """
import json, os, sys, threading
import gpunuma
gate = threading.Event()
worker = threading.Thread(target=gate.wait, daemon=True)
worker.start()
report = gpunuma.bind_to_gpu(sys.argv[1], env={})
elsewhere = sorted(set(range(os.cpu_count())) - set(report.cpus.ids)) or sorted(report.cpus.ids)[-1:]
os.sched_setaffinity(worker.native_id, elsewhere)  # a library pinning its thread off the binding (or within it)
found = gpunuma.verify()
repaired = gpunuma.verify(repair=True, include_narrowed=True)
gate.set()
print(json.dumps({
    "bound": report.bound, "cpus": report.cpus.to_list(), "tid": worker.native_id,
    "found": found.drift_of(worker.native_id), "repaired": [(r.tid, r.drift) for r in repaired.repaired],
    "final": repaired.verdict.value, "local": repaired.local_fraction, "pages": repaired.pages_by_node,
}))
"""


def test_a_thread_moved_off_a_gpus_binding_is_found_and_put_back(nvml_topology, child_env, results_dir):
    gpu = nvml_topology.gpus[0]
    out = run_child(_DRIFT_CHILD, child_env, gpu.uuid)
    if not out["bound"]:
        pytest.skip("this host's GPU reports no NUMA locality: nothing is bound, so nothing can drift")

    assert out["found"] in ("moved", "narrowed")
    assert out["repaired"] == [[out["tid"], out["found"]]]
    assert out["final"] == "as_expected" and out["local"] is not None and 0 < out["local"] <= 1
    if results_dir is not None:
        (results_dir / "stay_bound_verify.json").write_text(json.dumps(out, indent=2))


def test_a_late_bind_moves_a_gib_to_the_bound_node(sysfs_topology, child_env, results_dir):
    child = Path(ROOT, "bench", "child_migrate.py")
    result = run_child(child.read_text(), child_env, "--gib", "1", "--rounds", "4", timeout=600)
    nodes, rounds = result["nodes"], result["rounds"]
    gib_pages = (1 << 30) // rounds[0]["page_size"]

    if len(nodes) < 2:
        assert all(r["pages_moved"] == 0 and r["local_after"] == 1.0 for r in rounds)
    else:
        for r in rounds:
            assert r["pages_moved"] >= 0.9 * gib_pages, r
            assert r["local_after"] >= 0.9, r
    if results_dir is not None:
        rates = [r["pages_moved"] * r["page_size"] / r["seconds"] / 1e9 for r in rounds if r["pages_moved"]]
        summary = {"nodes": nodes, "rounds": rounds, "gb_per_s": rates, "python": sys.version.split()[0]}
        (results_dir / "stay_bound_migrate.json").write_text(json.dumps(summary, indent=2))
