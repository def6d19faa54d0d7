"""Real binding in child processes: libnuma and the raw-syscall path, every thread read back."""

from __future__ import annotations

import pytest
from conftest import run_child

# Threads are started before binding: the binder must reach them too.
_BIND_CHILD = """
import json, os, sys, threading
from gpunuma.api import bind_to_gpu, bind_to_node
from gpunuma.readback import read_kernel_view
gate = threading.Event()
workers = [threading.Thread(target=gate.wait, name=f"pre-{i}") for i in range(4)]
for w in workers: w.start()
binder, what = sys.argv[1], sys.argv[2]
if what.startswith("node:"):
    report = bind_to_node(int(what[5:]), binder=binder, strict=True, env={})
else:
    report = bind_to_gpu(what, binder=binder, strict=True, env={})
view = read_kernel_view()
gate.set()
print(json.dumps({
    "report": report.to_dict(),
    "threads": {str(t.tid): t.cpus.to_list() for t in view.threads},
    "mempolicy": view.mempolicy,
}))
"""


@pytest.mark.parametrize("binder", ["libnuma", "syscall"])
def test_child_binds_to_every_cpu_node_and_every_thread_follows(binder, sysfs_topology, child_env):
    for node in sysfs_topology.cpu_nodes:
        result = run_child(_BIND_CHILD, child_env, binder, f"node:{node.id}")
        report = result["report"]
        assert report["bound"], report
        assert report["method"] == binder
        assert report["mismatches"] == []
        assert len(result["threads"]) >= 5  # main + 4 started before binding
        assert set(result["threads"].values()) == {node.cpus.to_list()}
        assert result["mempolicy"] == "preferred"


@pytest.mark.parametrize("binder", ["libnuma", "syscall"])
def test_child_binds_to_each_gpus_plan(binder, nvml_topology, child_env):
    for gpu in nvml_topology.gpus:
        result = run_child(_BIND_CHILD, child_env, binder, gpu.uuid)
        report = result["report"]
        if report["plan"]["binds"]:
            assert report["bound"] and report["mismatches"] == [], report
            assert set(result["threads"].values()) == {report["cpus"]}
        else:
            # The GPU reports no locality (a VM): nothing changed and the report says why.
            assert not report["bound"] and report["reasons"], report
            assert len(set(result["threads"].values())) == 1


def test_far_node_is_a_different_node(sysfs_topology):
    if len(sysfs_topology.cpu_nodes) < 2:
        pytest.skip("needs more than one NUMA node with CPUs (this host has one)")
    first, second = sysfs_topology.cpu_nodes[:2]
    assert first.cpus.isdisjoint(second.cpus)
