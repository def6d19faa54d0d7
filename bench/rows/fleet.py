"""``gpunuma fleet`` on a simulated Ray cluster of two DGX H100 nodes running 16 bound GPU actors.

The cluster is the fakes' (one Ray node per simulated machine, ``GPUNUMA_SIMULATE`` in each node's workers);
every actor binds itself with ``bind_this_process()`` by the machine it landed on. Timed: the command an
operator runs (a fresh interpreter that joins the cluster, checks every actor on its node and leaves), the same
check from a driver already connected (``check_fleet()``), and each node's own checking time as it reports it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import Budget, Context, RowResult, Samples, Stats, child_env, fmt_ns, sample_trees, skipped, verdict

KEY = "fleet"
WHAT = "`gpunuma fleet` on a simulated 2-node Ray cluster (2 x dgx-h100), 16 bound GPU actors"
TARGET = "< 5 s wall; per-node work < 100 ms"
WALL_LIMIT_NS = 5_000_000_000
NODE_LIMIT_NS = 100_000_000
MACHINES = ("dgx-h100", "dgx-h100")
COMMAND = "`gpunuma fleet --address ADDR --json` (fresh interpreter: join, check, leave; wall)"
DRIVER = "`check_fleet()` in a connected driver (wall)"
NODE_CPU = "one node's work per command: checking its actors (8; --quick: 2) in a fresh task worker (CPU)"
NODE_WALL = "one node's work per command (wall)"
NODE_WARM = "one node's work from the connected driver: a reused task worker (wall)"
SERIES = (COMMAND, DRIVER, NODE_CPU, NODE_WALL, NODE_WARM)


class Worker:
    """A GPU worker that binds itself first, as a serving project writes it."""

    def __init__(self) -> None:
        from gpunuma.integrations.ray import bind_this_process

        self.report = bind_this_process()

    def bound(self) -> bool:
        return bool(self.report.bound)


def sample(budget: Budget, workdir: Path) -> Samples:
    try:
        import ray
    except ImportError:
        return {"series": {}, "info": {"skipped": "ray not installed"}}
    try:
        from gpunuma.tools.fleet import check_fleet
    except ImportError:
        return {"series": {}, "info": {"skipped": "this tree has no gpunuma fleet"}}
    from gpunuma_fakes import machine
    from gpunuma_fakes.pytest_plugin import start_cluster

    actors_per_node = 2 if budget.quick else 8
    # Ray's workers inherit this environment: a bytecode cache, as an installed wheel has.
    saved_env = dict(os.environ)
    os.environ.update(child_env(workdir))
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.pop("RAY_ADDRESS", None)
    cluster = None
    try:
        cluster, simulated = start_cluster(tuple(machine(name) for name in MACHINES), MACHINES)
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        actors = [
            ray.remote(Worker).options(
                num_gpus=1, num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)
            ).remote()
            for node_id in simulated.machines for _ in range(actors_per_node)
        ]
        if not all(ray.get([actor.bound.remote() for actor in actors])):
            raise RuntimeError("an actor did not bind on its simulated machine")
        env = {**child_env(workdir), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        argv = [sys.executable, "-m", "gpunuma", "fleet", "--address", simulated.address, "--json"]
        series: dict[str, list[int]] = {label: [] for label in SERIES}
        for round_ in range(budget.reps(5, 1) + 1):  # the first round is a warm-up (Ray starts the node tasks' workers)
            start = time.perf_counter_ns()
            done = subprocess.run(argv, env=env, capture_output=True, text=True)
            wall = time.perf_counter_ns() - start
            report = json.loads(done.stdout)
            _expect(done.returncode, report, len(actors))
            start = time.perf_counter_ns()
            in_driver = check_fleet()
            driver = time.perf_counter_ns() - start
            _expect(0 if in_driver.verdict.value == "as_expected" else 1, in_driver.to_dict(), len(actors))
            if not round_:
                continue
            series[COMMAND].append(wall)
            series[DRIVER].append(driver)
            series[NODE_CPU].extend(round(node["cpu_seconds"] * 1e9) for node in report["nodes"])
            series[NODE_WALL].extend(round(node["seconds"] * 1e9) for node in report["nodes"])
            series[NODE_WARM].extend(round(node.seconds * 1e9) for node in in_driver.nodes if node.seconds)
        for actor in actors:
            ray.kill(actor)
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
            shutil.rmtree(simulated.temp_dir, ignore_errors=True)
        os.environ.clear()
        os.environ.update(saved_env)
    return {"series": series, "info": {"actors": actors_per_node * len(MACHINES), "nodes": len(MACHINES)}}


def _expect(code: int, report: dict[str, Any], actors: int) -> None:
    """Every actor found, on two nodes that answered, each as expected (exit 0)."""
    workers = [w for node in report["nodes"] for w in node["workers"]]
    answered = [node["answered"] for node in report["nodes"]]
    if code != 0 or len(workers) != actors or answered != [True] * len(MACHINES):
        raise RuntimeError(f"gpunuma fleet: exit {code}, {len(workers)} of {actors} workers, answered {answered}")


def run(ctx: Context) -> list[RowResult]:
    return [_result(tree, samples) for tree, samples in sample_trees(ctx, "fleet", sample, chunks=1).items()]


def _result(tree: str, samples: Samples) -> RowResult:
    info = samples["info"]
    if "skipped" in info:
        return skipped(KEY, WHAT, TARGET, info["skipped"], tree=tree)
    stats = {label: Stats.of(samples["series"][label]) for label in SERIES}
    wall, node = stats[COMMAND], stats[NODE_CPU]
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=tuple(stats.items()),
        headline=f"{fmt_ns(wall.median_ns)} wall for {info['actors']} actors (max {fmt_ns(wall.max_ns)}); a node's "
                 f"work {fmt_ns(node.median_ns)} CPU (max {fmt_ns(node.max_ns)})",
        verdict=verdict(wall.max_ns < WALL_LIMIT_NS and node.max_ns < NODE_LIMIT_NS),
        derived={"wall_ns": wall.median_ns, "wall_max_ns": wall.max_ns, "node_cpu_ns": node.median_ns,
                 "node_cpu_max_ns": node.max_ns, "node_wall_ns": stats[NODE_WALL].median_ns,
                 "node_warm_wall_ns": stats[NODE_WARM].median_ns, "actors": info["actors"], "nodes": info["nodes"]},
        notes=("judged on the worst run: the command's wall time, a node's CPU time",
               "each command is a new Ray job, so each node checks in a fresh task worker: its first check imports "
               "the adapters and reads the (simulated) machine",
               "the first round is a warm-up, not timed"),
        tree=tree,
    )
