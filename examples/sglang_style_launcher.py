"""An SGLang-style launcher: a placement group, one scheduler actor per GPU, each bound before it builds.

    python examples/sglang_style_launcher.py --simulate dgx-h100        # 8 actors on any box, even 2 cores
    python examples/sglang_style_launcher.py --simulate gb200 --tp 2
    python examples/sglang_style_launcher.py --simulate tests/data/h200x2.tar.gz   # a captured host
    python examples/sglang_style_launcher.py                            # this machine's GPUs, real binding

``SchedulerActor`` is written as a server ships it, with no test hooks: it resolves the GPU Ray
assigned it (a physical id, as SGLang's Ray scheduler actor reads ``get_accelerator_ids()``), binds
its whole process with ``gpunuma.bind_to_gpu(physical=...)``, and only then builds its heavy object.
``--simulate`` only puts ``GPUNUMA_SIMULATE`` in the actors' ``runtime_env`` and gives Ray exactly
that machine's GPUs: the actors then bind the simulated machine through its simulated kernel.
Prints one line per actor; each actor's own "gpunuma: [TPn] bound to ..." line reaches this console
through Ray's log forwarding.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

import gpunuma


class TinyScheduler:
    """The heavy object a real server builds here: model weights, KV cache, its thread pools."""

    def __init__(self, tp_rank: int) -> None:
        self.tp_rank = tp_rank

    def step(self, tokens: int) -> int:
        return tokens + self.tp_rank


class SchedulerActor:
    """One per GPU: find the GPU, bind every thread of this process to its node, then build."""

    def __init__(self, tp_rank: int) -> None:
        assigned = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
        self.gpu = int(assigned[0])  # a physical id: this node's GPU numbering, not cuda:N
        self.numa = gpunuma.bind_to_gpu(physical=self.gpu, label=f"TP{tp_rank}")
        self.scheduler = TinyScheduler(tp_rank)  # built after binding: its threads and memory start local

    def get_info(self) -> dict[str, Any]:
        report = self.numa
        return {
            "gpu": self.gpu,
            "bound": report.bound,
            "nodes": list(report.plan.nodes),
            "cpus": report.cpus.to_list(),
            "method": report.method,
            "why": report.reasons[-1] if report.reasons else "",
        }

    def step(self, tokens: int) -> int:
        return self.scheduler.step(tokens)


def gpu_count(simulate: str | None) -> int:
    """The GPUs of the simulated machine, else the GPUs this Ray cluster has."""
    if simulate is not None:
        from gpunuma.api import make_source
        from gpunuma.settings import Simulated

        return len(make_source("auto", machine=Simulated(simulate)).read().gpus)
    return int(ray.cluster_resources().get("GPU", 0))


def describe(tp_rank: int, info: dict[str, Any]) -> str:
    if info["bound"]:
        nodes = ",".join(str(n) for n in info["nodes"])
        return f"TP{tp_rank}: GPU {info['gpu']} -> NUMA node {nodes}, CPUs {info['cpus']} ({info['method']})"
    return f"TP{tp_rank}: GPU {info['gpu']} -> not bound: {info['why']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulate", metavar="NAME|PATH", help="a gpunuma_fakes machine or a captured host")
    parser.add_argument("--tp", type=int, help="tensor-parallel size: scheduler actors (default: every GPU)")
    args = parser.parse_args(argv)

    if args.simulate is not None:
        gpus = gpu_count(args.simulate)
        # Exactly the simulated machine's GPUs, so every GPU id Ray hands out exists there.
        ray.init(num_cpus=2, num_gpus=gpus, include_dashboard=False,
                 runtime_env={"env_vars": {"GPUNUMA_SIMULATE": args.simulate}})
    else:
        ray.init(include_dashboard=False)
        gpus = gpu_count(None)
    tp = args.tp or gpus
    if not 0 < tp <= gpus:
        print(f"--tp {tp}: this cluster has {gpus} GPU(s); try --simulate dgx-h100", file=sys.stderr)
        ray.shutdown()
        return 1
    group = placement_group([{"GPU": tp}])  # one bundle per node; the actors share its GPUs, as SGLang's do
    try:
        ray.get(group.ready())
        actor_class = ray.remote(SchedulerActor)
        strategy = PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=0)
        actors = [
            actor_class.options(num_cpus=0, num_gpus=1, scheduling_strategy=strategy).remote(rank)
            for rank in range(tp)
        ]
        infos = ray.get([actor.get_info.remote() for actor in actors])
        for rank, info in enumerate(infos):
            print(describe(rank, info), flush=True)
        assert ray.get([actor.step.remote(10) for actor in actors]) == [10 + rank for rank in range(tp)]
    finally:
        remove_placement_group(group)
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
