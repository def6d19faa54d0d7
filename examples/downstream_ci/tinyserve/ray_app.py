"""The same worker as a Ray actor, one per GPU Ray assigns."""

from __future__ import annotations

import gpunuma
import ray

from tinyserve.worker import Worker


@ray.remote(num_gpus=1, num_cpus=0)
class WorkerActor:
    def __init__(self) -> None:
        self.worker = Worker()
        self.gpu = int(ray.get_gpu_ids()[0])  # this node's GPU numbering (physical)

    def health(self) -> dict[str, object]:
        """What an operator asks of a running actor: its GPU and whether every thread is bound as planned."""
        check = gpunuma.check_process(physical=self.gpu)  # Ray sets CUDA_VISIBLE_DEVICES after start: name it
        threads = {t.tid: t.cpus.to_list() for t in check.view.threads}
        return {
            "gpu": self.gpu,
            "nodes": list(self.worker.binding.plan.nodes),
            "ok": check.ok,
            "scheduler_cpus": threads[self.worker.scheduler.native_id],
        }
