"""A strict setup hook on a real local Ray: a GPU task or actor that cannot be bound fails with gpunuma's reason.

Ray calls the assignment hook outside the code that turns a task's exceptions into its result, so a
raise there would kill the worker and leave the caller a bare ``WorkerCrashedError`` after retries.
The simulated cloud VM's GPUs report no NUMA locality: a strict binding there binds nothing and fails.
"""

from __future__ import annotations

import os
import sys

import pytest

ray = pytest.importorskip("ray")

from gpunuma.adapters.static import StaticTopology  # noqa: E402
from gpunuma.errors import NotBoundError  # noqa: E402
from gpunuma.integrations.ray import make_setup_hook  # noqa: E402
from gpunuma_fakes import machine  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

CLOUD = machine("cloud-vm")


def ran_marker(folder: str, name: str) -> str:
    return os.path.join(folder, name)


def gpu_work(folder: str) -> int:
    open(ran_marker(folder, f"task-{os.getpid()}"), "w").close()
    return 1


def cpu_work() -> int:
    return os.getpid()


class GpuServer:
    def __init__(self, folder: str) -> None:
        open(ran_marker(folder, "actor"), "w").close()

    def ping(self) -> bool:
        return True


@pytest.fixture(scope="module")
def strict_ray():
    hook = make_setup_hook(source=StaticTopology(CLOUD.topology(), CLOUD.allowed()), binder=CLOUD.kernel(),
                           strict=True)
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": hook})
    try:
        yield
    finally:
        ray.shutdown()


def _cause(err: BaseException) -> BaseException | None:
    return getattr(err, "cause", None)


def test_a_gpu_task_fails_with_the_reason_without_running_or_retrying(strict_ray, tmp_path):
    task = ray.remote(num_gpus=1, num_cpus=0)(gpu_work)

    with pytest.raises(ray.exceptions.RayTaskError) as caught:
        ray.get(task.remote(str(tmp_path)), timeout=120)

    cause = _cause(caught.value)
    assert isinstance(cause, NotBoundError)
    assert cause.report.reasons[-1].code == "gpu_locality_unknown"
    assert list(tmp_path.iterdir()) == []  # the task body never ran, not even on a retry


def test_a_gpu_actor_creation_fails_with_the_reason(strict_ray, tmp_path):
    actor = ray.remote(num_gpus=1, num_cpus=0, max_restarts=0)(GpuServer).remote(str(tmp_path))

    with pytest.raises(ray.exceptions.RayActorError) as caught:
        ray.get(actor.ping.remote(), timeout=120)

    assert "NotBoundError" in str(caught.value) and "no NUMA locality" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_the_worker_stays_usable_for_work_that_holds_no_gpu(strict_ray, tmp_path):
    failing = ray.remote(num_gpus=1, num_cpus=0, max_retries=0)(gpu_work)
    with pytest.raises(ray.exceptions.RayTaskError):
        ray.get(failing.remote(str(tmp_path)), timeout=120)

    cpu_only = ray.remote(num_cpus=1)(cpu_work)
    assert ray.get([cpu_only.remote() for _ in range(4)], timeout=120)
