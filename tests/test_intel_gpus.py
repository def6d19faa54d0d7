"""Intel data-center GPUs: found through sysfs, made visible through ZE_AFFINITY_MASK."""

from __future__ import annotations

import pytest

from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.api import plan_for
from gpunuma.core.identity import GpuEnvironment, visible_gpus
from gpunuma.errors import GpuResolutionError
from gpunuma_fakes import machine

MAX = machine("intel-max").topology()


@pytest.mark.parametrize(
    ("mask", "gpus"),
    [(None, (0, 1, 2, 3, 4, 5)), ("4,5", (4, 5)), ("1.0,1.1,3", (1, 3)), ("5,0", (5, 0)), ("", ())],
)
def test_ze_affinity_mask_selects_devices_in_bus_order_and_tiles_count_as_their_device(mask, gpus):
    environment = GpuEnvironment.from_mapping({} if mask is None else {"ZE_AFFINITY_MASK": mask})

    assert visible_gpus(MAX, environment).gpus == gpus


def test_cuda_visible_devices_does_not_steer_intel_gpus():
    assert visible_gpus(MAX, {"CUDA_VISIBLE_DEVICES": "3"}).gpus == (0, 1, 2, 3, 4, 5)


def test_a_mask_that_names_no_device_of_this_machine_is_an_error():
    with pytest.raises(GpuResolutionError) as caught:
        visible_gpus(MAX, {"ZE_AFFINITY_MASK": "9"})

    assert caught.value.variable == "ZE_AFFINITY_MASK"


def test_local_device_zero_under_a_mask_binds_to_its_gpus_node(rendered):
    plan = plan_for(0, source=SysfsTopology(root=rendered("intel-max")), env={"ZE_AFFINITY_MASK": "4"})

    assert (plan.gpus, plan.nodes) == ((4,), (1,))
    assert plan.reasons[0].startswith("GPU 4 (0000:c2:00.0) from gpus=0 (local cuda:0 through ZE_AFFINITY_MASK=4)")
