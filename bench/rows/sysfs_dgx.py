"""SysfsTopology.read() of the simulated DGX H100 tree (224 CPUs, 2 nodes, 8 GPUs, 12 RDMA NICs): what a plan
for an explicit node reads (nodes only), what a node-scope GPU plan reads (nodes, GPUs, NICs) and the full read
(each CPU's core, socket and cache too, for the socket/exclusive/cache scopes)."""

from __future__ import annotations

from pathlib import Path

from compat import load
from floor import count, record, replay
from harness import Budget, Context, RowResult, Samples, Stats, fmt_ns, sample_trees, time_calls, verdict

from rows.machines import rendered

KEY = "sysfs-dgx"
WHAT = "sysfs topology read, simulated dgx-h100 tree (224 CPUs, 8 GPUs): node scope and full"
TARGET = "node scope < 1 ms; full < 2 ms"
NODES_LIMIT_NS = 1_000_000
FULL_LIMIT_NS = 2_000_000
NODES_ONLY = "read(), explicit node (nodes only: gpus=False, what bind_to_node reads)"
NODES = "read(), node scope (nodes, GPUs and NICs: layout=False, what a GPU plan reads)"
FULL = "read(), full (each CPU's core, socket and cache too)"
WITH_ALLOWED = "full read() + allowed()"
#: The floor series: the system calls one read made, replayed alone (``floor.py``).
FLOOR = ": its system calls alone, replayed (the floor)"


def prepare(workdir: Path) -> None:
    """Render the simulated trees this row reads (``--compare``: once, by this checkout, for every tree)."""
    rendered("dgx-h100", workdir)


def sample(budget: Budget, workdir: Path) -> Samples:
    simulated, root = rendered("dgx-h100", workdir)
    sysfs = load("SysfsTopology")
    source = sysfs(root=root)
    topology = source.read()
    assert len(topology.cpus) == simulated.cpu_count == 224 and len(topology.gpus) == 8, "tree misread"
    series = {}
    bare = None
    try:
        light = sysfs(root=root, layout=False)
    except TypeError:  # a tree from before the node-scope read: it has only the full one
        light = None
    if light is not None:
        nodes = light.read()
        same = [(n.id, n.cpus, n.has_memory, n.distances) for n in nodes.nodes] == [
            (n.id, n.cpus, n.has_memory, n.distances) for n in topology.nodes
        ]
        assert same and nodes.gpus == topology.gpus and not nodes.cpus, "node-scope read misread the tree"
        try:
            bare = sysfs(root=root, layout=False, gpus=False)
        except TypeError:  # a tree from before the explicit-node read
            pass
        if bare is not None:
            alone = bare.read()
            assert [n.cpus for n in alone.nodes] == [n.cpus for n in topology.nodes] and not alone.gpus, "misread"
            series[NODES_ONLY] = time_calls(bare.read, reps=budget.reps(300, 20), warmup=budget.reps(20, 3))
        series[NODES] = time_calls(light.read, reps=budget.reps(300, 20), warmup=budget.reps(20, 3))
    series[FULL] = time_calls(source.read, reps=budget.reps(300, 20), warmup=budget.reps(20, 3))
    readers = {NODES_ONLY: bare.read if bare is not None else None, NODES: light.read if light else None,
               FULL: source.read}  # fmt: skip
    calls = {}
    ordered = {}
    for label, values in series.items():
        # Beside each read, the kernel's share of it: what no reader in Python can go below for those files.
        operations = record(readers[label])
        calls[label] = count(operations)
        ordered[label] = values
        ordered[label + FLOOR] = time_calls(
            lambda operations=operations: replay(operations), reps=budget.reps(300, 20), warmup=budget.reps(20, 3)
        )
    ordered[WITH_ALLOWED] = time_calls(lambda: (source.read(), source.allowed()), reps=budget.reps(300, 20), warmup=3)
    return {"series": ordered, "info": {"system_calls": calls}}


def run(ctx: Context) -> list[RowResult]:
    return [_result(tree, samples) for tree, samples in sample_trees(ctx, "sysfs_dgx", sample).items()]


def _result(tree: str, samples: Samples) -> RowResult:
    series = {label: Stats.of(values) for label, values in samples["series"].items()}
    calls = samples.get("info", {}).get("system_calls", {})
    full = series[FULL].median_ns
    nodes = series[NODES].median_ns if NODES in series else None
    alone = series[NODES_ONLY].median_ns if NODES_ONLY in series else None
    headline = f"full {fmt_ns(full)}" if nodes is None else f"node scope {fmt_ns(nodes)}, full {fmt_ns(full)}"
    if alone is not None:
        headline = f"explicit node {fmt_ns(alone)}, {headline}"
    met = full < FULL_LIMIT_NS and nodes is not None and nodes < NODES_LIMIT_NS
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=tuple(series.items()),
        headline=headline,
        verdict=verdict(met),
        derived={"median_ns": full, "node_scope_median_ns": nodes, "explicit_node_median_ns": alone, "cpus": 224,
                 "gpus": 8, "floor_median_ns": {label: series[label + FLOOR].median_ns for label in calls},
                 "system_calls": calls},  # fmt: skip
        notes=(
            "page-cached tmpfs/disk tree: real sysfs files are generated by the kernel on read",
            "system calls per read: " + ", ".join(f"{label.split(' (')[0]} {n}" for label, n in calls.items()),
        ),
        tree=tree,
    )
