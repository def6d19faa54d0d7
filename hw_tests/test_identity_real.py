"""CUDA_VISIBLE_DEVICES by index and by UUID names the GPU that CUDA itself opens as cuda:0."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import run_child

_TORCH_CUDA0 = """
import json, torch
props = torch.cuda.get_device_properties(0)
bus = "%04x:%02x:%02x.0" % (props.pci_domain_id, props.pci_bus_id, props.pci_device_id)
print(json.dumps({"count": torch.cuda.device_count(), "bus": bus, "uuid": str(props.uuid)}))
"""

_GPUNUMA_CUDA0 = """
import json
from gpunuma.core.identity import resolve_gpus
from gpunuma.settings import read_gpu_environment
from gpunuma.compose import make_source
topology = make_source("auto").read()
(index,) = resolve_gpus(topology, gpus=[0], env=read_gpu_environment())
print(json.dumps({"index": index, "bus": topology.gpu(index).pci_bus_id}))
"""


@pytest.fixture(scope="module")
def torch_available() -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed here: nothing to compare gpunuma's answer with")


@pytest.mark.parametrize("form", ["index", "uuid", "uuid-prefix"])
def test_visible_device_resolves_to_the_gpu_cuda_opens(form, nvml_topology, child_env, torch_available):
    for gpu in nvml_topology.gpus:
        value = {"index": str(gpu.index), "uuid": gpu.uuid, "uuid-prefix": gpu.uuid[:12]}[form]
        env = {**child_env, "CUDA_VISIBLE_DEVICES": value, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        cuda = run_child(_TORCH_CUDA0, env)
        ours = run_child(_GPUNUMA_CUDA0, env)
        assert cuda["count"] == 1
        assert ours["bus"] == cuda["bus"] == gpu.pci_bus_id
        assert ours["index"] == gpu.index
        # torch prints the UUID without the "GPU-" prefix.
        assert gpu.uuid.endswith(cuda["uuid"])
