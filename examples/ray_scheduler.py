"""One scheduler actor per GPU, each bound to its GPU's NUMA node before it builds its model.

    python examples/ray_scheduler.py --simulate dgx-h100          # 8 actors on any box, even 2 cores
    python examples/ray_scheduler.py --simulate dgx-h100 --policy exclusive
    python examples/ray_scheduler.py                               # this machine's GPUs, real binding

With ``--simulate`` the actors read a rendered sysfs tree and a fake NVML of that machine and bind
through a simulated kernel, so nothing on this host changes. Prints one line per actor.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import ray

from gpunuma.core.policy import Policy
from gpunuma.integrations.ray import start_bound_actor


class TinyScheduler:
    """The "heavy object" a real server would build here (model weights, KV cache, worker threads)."""

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")

    def step(self, tokens: int) -> int:
        return tokens + self.rank


def simulated_adapters(name: str, root: str) -> dict[str, object]:
    """The real sysfs+NVML source over a rendered machine, and that machine's simulated kernel."""
    from gpunuma_fakes.catalogue import machine

    simulated = machine(name)
    return {"source": simulated.source(root), "binder": simulated.kernel()}


def describe(rank: int, report: object) -> str:
    gpus = ",".join(str(g) for g in report.plan.gpus) or "?"  # type: ignore[attr-defined]
    if report.bound:  # type: ignore[attr-defined]
        nodes = ",".join(str(n) for n in report.plan.nodes)  # type: ignore[attr-defined]
        return f"actor {rank}: GPU {gpus} -> NUMA node {nodes}, CPUs {report.cpus.to_list()}"  # type: ignore[attr-defined]
    why = "; ".join(report.reasons) or "no reason recorded"  # type: ignore[attr-defined]
    return f"actor {rank}: GPU {gpus} -> not bound: {why}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulate", metavar="MACHINE", help="a gpunuma_fakes machine, e.g. dgx-h100, gb200")
    parser.add_argument("--policy", choices=["node", "socket", "exclusive"], default="node", help="CPU scope")
    args = parser.parse_args(argv)
    policy = Policy(cpu_scope=args.policy)

    with tempfile.TemporaryDirectory(prefix="gpunuma-sim-") as root:
        if args.simulate:
            from gpunuma_fakes.catalogue import machine

            gpus = len(machine(args.simulate).gpus)
            adapters = simulated_adapters(args.simulate, root)
            # Fake GPUs for Ray's scheduler; num_cpus=0 per actor lets eight fit on two cores.
            ray.init(num_cpus=2, num_gpus=gpus, include_dashboard=False, log_to_driver=False)
        else:
            adapters = {}
            ray.init(include_dashboard=False)
            gpus = int(ray.cluster_resources().get("GPU", 0))
            if gpus == 0:
                print("no GPUs in this Ray cluster; try --simulate dgx-h100", file=sys.stderr)
                ray.shutdown()
                return 1
        try:
            actors = [
                start_bound_actor(
                    TinyScheduler,
                    actor_options={"num_cpus": 0},
                    policy=policy,
                    label=f"TP{rank}",
                    factory_args=(rank,),
                    **adapters,
                )
                for rank in range(gpus)
            ]
            reports = ray.get([actor.binding_report.remote() for actor in actors])
            for rank, report in enumerate(reports):
                print(describe(rank, report))
            assert ray.get([a.call.remote("step", 10) for a in actors]) == [10 + r for r in range(gpus)]
        finally:
            ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
