"""Host-to-device copy bandwidth per GPU from pinned memory on each node: the benefit of binding.

Each (node, GPU) pair runs in its own child: bind to the node with memory ``bind`` first, then
allocate and touch the pinned buffer, so its pages come from that node; then time copies with
CUDA events. On a multi-socket host the far node's row is the cost of running unbound.
"""

from __future__ import annotations

import importlib.util
import json
import statistics

import pytest
from conftest import run_child

_PROBE = """
import json, sys, torch
from gpunuma.api import bind_to_node
from gpunuma.core.policy import Policy
node, uuid, size_mb, reps = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
report = bind_to_node(node, policy=Policy(memory="bind"), strict=True, env={})
host = torch.empty(size_mb << 20, dtype=torch.uint8, pin_memory=True)
host.fill_(1)  # first touch: the pages are placed now, under the bound policy
dev = torch.empty_like(host, device="cuda:0")
for _ in range(3):
    dev.copy_(host, non_blocking=True)
torch.cuda.synchronize()
rates = []
for _ in range(reps):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record(); dev.copy_(host, non_blocking=True); end.record(); end.synchronize()
    rates.append((size_mb << 20) / (start.elapsed_time(end) / 1e3) / 1e9)
print(json.dumps({"rates": rates, "bound": report.bound, "memory": report.memory_policy}))
"""


@pytest.fixture(scope="module")
def torch_cuda() -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed here: the probe copies with torch")


def test_host_to_device_bandwidth_from_each_node(nvml_topology, sysfs_topology, child_env, results_dir, torch_cuda):
    rows = []
    for node in sysfs_topology.cpu_nodes:
        for gpu in nvml_topology.gpus:
            env = {**child_env, "CUDA_VISIBLE_DEVICES": gpu.uuid}
            result = run_child(_PROBE, env, str(node.id), gpu.uuid, "256", "20", timeout=300)
            assert result["bound"], result
            rates = sorted(result["rates"])
            local = gpu.numa_node is None or gpu.numa_node == node.id
            rows.append({
                "node": node.id, "gpu": gpu.index, "bus": gpu.pci_bus_id, "gpu_node": gpu.numa_node,
                "local": local, "min": rates[0], "median": statistics.median(rates), "max": rates[-1],
            })
    print("\nhost-to-device copy, 256 MiB pinned, 20 reps (GB/s)")
    print(f"{'node':>4} {'GPU':>3} {'bus':>12} {'GPU node':>8} {'min':>7} {'median':>7} {'max':>7}")
    for row in rows:
        gpu_node = "?" if row["gpu_node"] is None else row["gpu_node"]
        print(f"{row['node']:>4} {row['gpu']:>3} {row['bus']:>12} {gpu_node!s:>8} "
              f"{row['min']:7.2f} {row['median']:7.2f} {row['max']:7.2f}")
    assert rows and all(row["median"] > 1.0 for row in rows)  # a PCIe/NVLink-C2C link moves GB/s
    if results_dir is not None:
        (results_dir / "bandwidth.json").write_text(json.dumps(rows, indent=2))

