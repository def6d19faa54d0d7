"""Real binding in child processes: libnuma and the raw-syscall path, every thread read back."""

from __future__ import annotations

import pytest
from conftest import run_child

# Threads are started before binding: the binder must reach them too.
_BIND_CHILD = """
import json, os, sys, threading
from gpunuma.api import bind_to_gpu, bind_to_node
from gpunuma.adapters.kernel_view import read_kernel_view
from gpunuma.errors import NotBoundError
gate = threading.Event()
# Daemon threads: an error in the child must end it, not leave it waiting on them.
workers = [threading.Thread(target=gate.wait, name=f"pre-{i}", daemon=True) for i in range(4)]
for w in workers: w.start()
binder, what, strict = sys.argv[1], sys.argv[2], sys.argv[3] == "strict"
try:
    if what.startswith("node:"):
        report = bind_to_node(int(what[5:]), binder=binder, strict=strict, env={})
    else:
        report = bind_to_gpu(what, binder=binder, strict=strict, env={})
    refused = None
except NotBoundError as err:  # strict, and the plan binds nothing: the process is as it was
    report, refused = err.report, type(err).__name__
view = read_kernel_view()
gate.set()
print(json.dumps({
    "report": report.to_dict(),
    "refused": refused,
    "threads": {str(t.tid): t.cpus.to_list() for t in view.threads},
    "mempolicy": view.mempolicy,
}))
"""


@pytest.mark.parametrize("binder", ["libnuma", "syscall"])
def test_child_binds_to_every_cpu_node_and_every_thread_follows(binder, sysfs_topology, child_env):
    for node in sysfs_topology.cpu_nodes:
        result = run_child(_BIND_CHILD, child_env, binder, f"node:{node.id}", "strict")
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
        result = run_child(_BIND_CHILD, child_env, binder, gpu.uuid, "best-effort")
        strict = run_child(_BIND_CHILD, child_env, binder, gpu.uuid, "strict")
        report = result["report"]
        if report["plan"]["binds"]:
            assert report["bound"] and report["mismatches"] == [], report
            assert set(result["threads"].values()) == {report["cpus"]}
            assert strict["refused"] is None and strict["report"]["bound"]
        else:
            # The GPU reports no locality, or its node is the whole VM: nothing changed and the report
            # says why; strict mode refuses to run unbound (NotBoundError) and changes nothing either.
            assert not report["bound"] and report["reasons"], report
            assert len(set(result["threads"].values())) == 1
            assert strict["refused"] == "NotBoundError" and not strict["report"]["bound"]
            assert set(strict["threads"].values()) == set(result["threads"].values())


_PLACEMENT_CHILD = """
import json, sys
from gpunuma.api import bind_to_node
from gpunuma.core.policy import Policy
node = int(sys.argv[1])
report = bind_to_node(node, policy=Policy(memory="bind"), strict=True, env={})
buf = bytearray(64 << 20)            # mapped after binding ...
for i in range(0, len(buf), 4096):   # ... and first touched now: the pages are placed under the policy
    buf[i] = 1
best = None
for line in open("/proc/self/numa_maps"):
    fields = dict(f.split("=", 1) for f in line.split()[2:] if "=" in f)
    anon = int(fields.get("anon", 0))
    if best is None or anon > best[0]:
        best = (anon, {k[1:]: int(v) for k, v in fields.items() if k[:1] == "N" and k[1:].isdigit()})
print(json.dumps({"bound": report.bound, "memory": report.memory_policy, "pages": best[1]}))
"""


def test_memory_bound_to_a_node_is_allocated_on_that_node(sysfs_topology, child_env):
    """The kernel, not the report: a buffer touched after binding lives on the bound node (numa_maps)."""
    for node in sysfs_topology.nodes:
        if not (node.has_cpus and node.has_memory):
            continue
        result = run_child(_PLACEMENT_CHILD, child_env, str(node.id))
        assert result["bound"] and result["memory"] == "bind", result
        pages = result["pages"]
        on_node = pages.get(str(node.id), 0)
        assert on_node >= 0.95 * sum(pages.values()) and on_node >= (64 << 20) // 4096 * 0.95, pages
