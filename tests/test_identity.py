"""Which physical GPUs a process owns, on simulated machines, for every way of saying it."""

from __future__ import annotations

import dataclasses
import logging
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from pytest_mock import MockerFixture

from gpunuma.adapters.static import StaticTopology
from gpunuma.api import plan_for
from gpunuma.core.identity import (
    describe_resolution,
    local_to_physical,
    resolve_gpus,
    visible_gpus,
)
from gpunuma.core.model import MigDevice, Topology
from gpunuma.core.reasons import codes
from gpunuma.errors import GpuResolutionError
from gpunuma.settings import read_gpu_environment
from gpunuma_fakes import machine

DGX = machine("dgx-h100").topology()
ALLOWED = machine("dgx-h100").allowed()
UUID = {gpu.index: gpu.uuid for gpu in DGX.gpus}
CVD = "CUDA_VISIBLE_DEVICES"
MIG_A = "MIG-4f1c2a6e-5d1b-5a7f-9b9e-1c0d3e2f4a51"
MIG_B = "MIG-8a2b3c4d-1e2f-5a6b-8c9d-0e1f2a3b4c5d"


@pytest.fixture
def ray_gives(mocker: MockerFixture) -> Callable[[Sequence[int | str]], Any]:
    """``ray_gives([3])``: Ray's API as a worker sees it, whose ``get_gpu_ids()`` answers ``[3]``."""
    return lambda ids: mocker.Mock(spec=["get_gpu_ids"], **{"get_gpu_ids.return_value": list(ids)})


def ray_module(ids: Sequence[int | str], *, mode: int = 1) -> types.SimpleNamespace:
    """An initialised ``ray`` module in a worker (``mode=1``, WORKER_MODE) or the driver (0)."""
    context = types.SimpleNamespace(worker=types.SimpleNamespace(mode=mode))
    return types.SimpleNamespace(
        is_initialized=lambda: True, get_gpu_ids=lambda: list(ids), get_runtime_context=lambda: context, WORKER_MODE=1
    )


def with_migs(topology: Topology, index: int, uuids: tuple[str, ...]) -> Topology:
    gpus = tuple(
        dataclasses.replace(g, mig_devices=tuple(MigDevice(u, index) for u in uuids)) if g.index == index else g
        for g in topology.gpus
    )
    return dataclasses.replace(topology, gpus=gpus)


# -- CUDA_VISIBLE_DEVICES ------------------------------------------------------------------
def test_nothing_set_means_every_gpu_in_bus_order() -> None:
    resolution = describe_resolution(DGX, env={})
    assert resolution.gpus == (0, 1, 2, 3, 4, 5, 6, 7)
    assert resolution.source == "all"
    assert resolution.reasons[0].to_dict() == {
        "code": "gpu_from_visibility", "values": {"gpu": "GPU 0 (0000:1b:00.0)", "origin": "no CUDA_VISIBLE_DEVICES"}}


def test_uuid_of_gpu_6_resolves_to_gpu_6_and_says_so() -> None:
    value = UUID[6]
    resolution = describe_resolution(DGX, env={CVD: value})
    assert resolution.gpus == (6,)
    assert [r.to_dict() for r in resolution.reasons] == [{
        "code": "gpu_from_visibility", "values": {"gpu": "GPU 6 (0000:d1:00.0)", "origin": f"{CVD}={value}"}}]


def test_permuted_indices_map_local_to_physical() -> None:
    env = {CVD: "5,1"}
    assert resolve_gpus(DGX, env=env) == (5, 1)
    assert local_to_physical(DGX, 0, env) == 5
    assert local_to_physical(DGX, 1, env) == 1


def test_local_index_beyond_the_visible_list_names_the_variable() -> None:
    with pytest.raises(GpuResolutionError, match=r"local GPU 2 does not exist.*CUDA_VISIBLE_DEVICES=5,1") as caught:
        local_to_physical(DGX, 2, {CVD: "5,1"})
    assert (caught.value.variable, caught.value.value) == (CVD, "5,1")


def test_unique_uuid_prefix_and_case_are_accepted() -> None:
    prefix = UUID[6][:12]  # "GPU-" and the first 8 hex digits
    assert resolve_gpus(DGX, env={CVD: prefix}) == (6,)
    assert resolve_gpus(DGX, env={CVD: UUID[3].upper()}) == (3,)


def test_mixed_uuid_and_index_entries_with_spaces() -> None:
    assert resolve_gpus(DGX, env={CVD: f" 7 , {UUID[2]} "}) == (7, 2)


def test_ambiguous_uuid_prefix_is_an_error_naming_the_variable() -> None:
    with pytest.raises(GpuResolutionError, match="ambiguous") as caught:
        resolve_gpus(DGX, env={CVD: "GPU-"})
    assert (caught.value.variable, caught.value.value) == (CVD, "GPU-")


def test_unknown_uuid_is_an_error_naming_variable_and_value() -> None:
    value = "GPU-00000000-dead-beef-0000-000000000000"
    with pytest.raises(GpuResolutionError, match=f"CUDA_VISIBLE_DEVICES='{value}' names no GPU") as caught:
        resolve_gpus(DGX, env={CVD: value})
    assert caught.value.variable == CVD and caught.value.value == value


def test_first_index_out_of_range_is_an_error() -> None:
    with pytest.raises(GpuResolutionError, match="index 8 is not one of the 8 GPUs") as caught:
        resolve_gpus(DGX, env={CVD: "8"})
    assert caught.value.value == "8"


@pytest.mark.parametrize("value", ["", "  ", "-1", "NoDevFiles"])
def test_values_meaning_no_gpu_give_none(value: str) -> None:
    assert resolve_gpus(DGX, env={CVD: value}) == ()


def test_an_invalid_entry_truncates_the_list_like_cuda_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gpunuma"):
        resolution = describe_resolution(DGX, env={CVD: "2,99,3"})
    assert resolution.gpus == (2,)
    assert len(resolution.warnings) == 1
    assert resolution.warnings[0].code == "visible_list_truncated"
    assert resolution.warnings[0].values["ignored"] == "99,3"
    assert caplog.records == []  # the core returns its reasons; the entry points log them

    with caplog.at_level(logging.WARNING, logger="gpunuma"):
        plan = plan_for(source=StaticTopology(DGX, ALLOWED), env={CVD: "2,99,3"})
    assert plan.gpus == (2,)
    assert [r.getMessage() for r in caplog.records] == list(resolution.warnings)


def test_a_uuid_without_gpu_prefix_is_invalid_for_cuda() -> None:
    # CUDA needs the GPU- prefix: the bare hex sees no device.
    with pytest.raises(GpuResolutionError, match="neither an index nor a GPU-/MIG- UUID"):
        resolve_gpus(DGX, env={CVD: UUID[1].removeprefix("GPU-")})


def test_mig_uuid_maps_to_its_parent_gpu() -> None:
    topo = with_migs(DGX, 4, (MIG_A, MIG_B))
    assert resolve_gpus(topo, env={CVD: MIG_B}) == (4,)
    assert resolve_gpus(topo, env={CVD: f"MIG-{UUID[4]}/1/0"}) == (4,)


def test_unknown_mig_uuid_is_an_error() -> None:
    with pytest.raises(GpuResolutionError, match="unknown MIG UUID"):
        resolve_gpus(DGX, env={CVD: MIG_A})


def test_uuids_need_a_topology_that_knows_them() -> None:
    bare = dataclasses.replace(DGX, gpus=tuple(dataclasses.replace(g, uuid=None) for g in DGX.gpus))
    with pytest.raises(GpuResolutionError, match="no UUIDs") as caught:
        resolve_gpus(bare, env={CVD: UUID[6]})
    assert caught.value.variable == CVD


# -- CUDA_DEVICE_ORDER ---------------------------------------------------------------------
def mixed_models() -> Topology:
    gpus = tuple(dataclasses.replace(g, name="NVIDIA L4") if g.index == 0 else g for g in DGX.gpus)
    return dataclasses.replace(DGX, gpus=gpus)


def test_fastest_first_on_mixed_models_warns_and_uses_bus_order() -> None:
    resolution = describe_resolution(mixed_models(), env={CVD: "0", "CUDA_DEVICE_ORDER": "FASTEST_FIRST"})
    assert resolution.gpus == (0,)
    assert resolution.warnings[0].code == "device_order_mixed_models"
    assert resolution.warnings[0].values["order"] == "FASTEST_FIRST"
    assert describe_resolution(mixed_models(), env={CVD: "0"}).warnings  # unset is FASTEST_FIRST too


def test_pci_bus_id_order_or_one_model_does_not_warn() -> None:
    assert describe_resolution(mixed_models(), env={"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}).warnings == ()
    assert describe_resolution(DGX, env={"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}).warnings == ()


# -- AMD -------------------------------------------------------------------------------------
MI300X = machine("mi300x").topology()


def test_rocr_visible_devices_select_amd_gpus() -> None:
    assert resolve_gpus(MI300X, env={"ROCR_VISIBLE_DEVICES": "4,5"}) == (4, 5)


def test_hip_visible_devices_index_into_what_rocr_left() -> None:
    env = {"ROCR_VISIBLE_DEVICES": "4,5", "HIP_VISIBLE_DEVICES": "1"}
    resolution = describe_resolution(MI300X, env=env)
    assert resolution.gpus == (5,)
    assert [r.to_dict() for r in resolution.reasons] == [{"code": "gpu_from_visibility", "values": {
        "gpu": "GPU 5 (0000:a6:00.0)", "origin": "ROCR_VISIBLE_DEVICES=4,5 then HIP_VISIBLE_DEVICES=1"}}]


def test_cuda_visible_devices_acts_as_hip_visible_devices_on_amd() -> None:
    assert resolve_gpus(MI300X, env={CVD: "7"}) == (7,)
    assert resolve_gpus(MI300X, env={}) == tuple(range(8))


# -- Ray -------------------------------------------------------------------------------------
def test_ray_assignment_is_physical_and_wins_over_the_variable(ray_gives: Any) -> None:
    ray = ray_gives([3])
    # Ray sets CUDA_VISIBLE_DEVICES=3 in the worker; local cuda:0 is then physical 3 as well.
    resolution = describe_resolution(DGX, env=read_gpu_environment({CVD: "3"}, ray))
    assert resolution.gpus == (3,)
    assert resolution.source == "ray"
    ray.get_gpu_ids.assert_called_once_with()


def test_ray_ids_stay_physical_when_ray_leaves_cvd_unset(ray_gives: Any) -> None:
    env = {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"}
    resolution = describe_resolution(DGX, env=read_gpu_environment(env, ray_gives(["6", "2"])))
    assert resolution.gpus == (6, 2)
    assert resolution.reasons[0].code == "gpu_from_ray_noset"
    assert resolution.reasons[0].values == {"gpu": "GPU 6 (0000:d1:00.0)", "ids": "['6', '2']"}


def test_a_ray_worker_with_no_gpu_owns_none_whatever_the_variable_says(ray_gives: Any) -> None:
    # num_gpus=0: Ray gives no ids; CUDA_VISIBLE_DEVICES may be unset (all GPUs) or left from the node.
    for env in ({}, {CVD: "5"}):
        resolution = describe_resolution(DGX, env=read_gpu_environment(env, ray_gives([])))
        assert resolution.gpus == () and codes(resolution.reasons) == ("ray_worker_without_gpu",)


def test_the_ray_driver_takes_its_gpus_from_its_own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    driver = ray_module([], mode=0)  # SCRIPT_MODE: the process that called ray.init()
    monkeypatch.setitem(sys.modules, "ray", driver)
    assert resolve_gpus(DGX, env=read_gpu_environment({CVD: "5"})) == (5,)


def test_ray_id_beyond_the_machine_is_an_error(ray_gives: Any) -> None:
    with pytest.raises(GpuResolutionError, match="no physical GPU 9"):
        resolve_gpus(DGX, env=read_gpu_environment({}, ray_gives([9])))


def test_a_physical_id_on_a_machine_without_gpus_says_none_not_an_empty_list(ray_gives: Any) -> None:
    no_gpus = dataclasses.replace(DGX, gpus=())
    with pytest.raises(GpuResolutionError) as caught:
        resolve_gpus(no_gpus, env=read_gpu_environment({}, ray_gives([0])))
    assert str(caught.value).endswith("no physical GPU 0 (GPUs: none)")


def test_ray_not_imported_is_never_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    assert resolve_gpus(DGX, env=read_gpu_environment({CVD: "1"})) == (1,)
    assert "ray" not in sys.modules


def test_an_initialised_ray_in_this_process_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = ray_module([4])
    monkeypatch.setitem(sys.modules, "ray", fake)
    assert resolve_gpus(DGX, env=read_gpu_environment({CVD: "1"})) == (4,)
    fake.is_initialized = lambda: False
    assert resolve_gpus(DGX, env=read_gpu_environment({CVD: "1"})) == (1,)


# -- explicit ids ------------------------------------------------------------------------------
def test_explicit_ints_are_local_ordinals_through_the_variable() -> None:
    resolution = describe_resolution(DGX, gpus=[0], env={CVD: "5,1"})
    assert resolution.gpus == (5,)
    assert [r.to_dict() for r in resolution.reasons] == [{"code": "gpu_local_ordinal_through", "values": {
        "gpu": "GPU 5 (0000:c3:00.0)", "item": 0, "local": 0, "origin": "CUDA_VISIBLE_DEVICES=5,1"}}]
    assert resolve_gpus(DGX, gpus="cuda:1", env={CVD: "5,1"}) == (1,)


def test_explicit_strings_are_uuids_or_bus_ids_in_any_form() -> None:
    env = {CVD: "0"}  # strings name physical GPUs whatever the process sees
    assert resolve_gpus(DGX, gpus=[UUID[6]], env=env) == (6,)
    assert resolve_gpus(DGX, gpus=["00000000:C3:00.0", "0000:d1:00.0"], env=env) == (5, 6)
    assert resolve_gpus(DGX, gpus=UUID[2].removeprefix("GPU-"), env=env) == (2,)  # torch's bare form


PERMUTED = {CVD: "7,6,5,4,3,2,1,0"}


@pytest.mark.parametrize("digits, physical", [("3", 4), ("0", 7), (" 6 ", 1)])
def test_explicit_decimal_strings_are_local_indices_like_ints(digits: str, physical: int) -> None:
    # On dgx-h100 GPU 6's UUID starts "GPU-3" and GPUs 3 and 7 start "GPU-0": digits must not read as prefixes.
    assert UUID[6].startswith("GPU-3") and UUID[3].startswith("GPU-0") and UUID[7].startswith("GPU-0")
    resolution = describe_resolution(DGX, gpus=digits, env=PERMUTED)
    assert resolution.gpus == (physical,) == resolve_gpus(DGX, gpus=int(digits), env=PERMUTED)
    assert resolve_gpus(DGX, gpus=f"cuda:{digits.strip()}", env=PERMUTED) == (physical,)
    assert resolution.reasons[0].code == "gpu_local_ordinal_through"
    assert resolution.reasons[0].values["local"] == int(digits)
    assert resolution.reasons[0].values["origin"] == "CUDA_VISIBLE_DEVICES=7,6,5,4,3,2,1,0"


def test_plan_for_a_local_rank_string_plans_the_gpu_it_names() -> None:
    from gpunuma.adapters.static import StaticTopology
    from gpunuma.api import plan_for

    dgx = machine("dgx-h100")
    source = StaticTopology(dgx.topology(), dgx.allowed())
    local_rank = "3"  # as os.environ["LOCAL_RANK"] gives it
    plan = plan_for(local_rank, source=source, env=PERMUTED)
    assert plan.gpus == (4,) and plan.nodes == (1,)
    assert plan_for("0", source=source, env=PERMUTED).gpus == (7,)


def test_explicit_decimal_string_beyond_the_visible_list_is_an_index_error() -> None:
    with pytest.raises(GpuResolutionError, match="local GPU 2 does not exist") as caught:
        resolve_gpus(DGX, gpus="2", env={CVD: "5,1"})
    assert (caught.value.variable, caught.value.value) == (CVD, "5,1")


def test_explicit_local_index_out_of_range_names_the_variable() -> None:
    with pytest.raises(GpuResolutionError, match="local GPU 3 does not exist") as caught:
        resolve_gpus(DGX, gpus=3, env={CVD: "5,1"})
    assert (caught.value.variable, caught.value.value) == (CVD, "5,1")


def test_explicit_unknown_bus_id_is_an_error() -> None:
    with pytest.raises(GpuResolutionError, match="no GPU at PCI bus id"):
        resolve_gpus(DGX, gpus="0000:ff:00.0", env={})


def test_explicit_wins_over_ray(ray_gives: Any) -> None:
    from gpunuma.adapters.static import StaticTopology
    from gpunuma.api import plan_for

    dgx = machine("dgx-h100")
    ray = ray_gives([3])
    assert plan_for(1, source=StaticTopology(dgx.topology(), dgx.allowed()), env={}, ray=ray).gpus == (1,)
    assert resolve_gpus(DGX, gpus=[1], env=read_gpu_environment({}, ray)) == (1,)  # explicit ids win over Ray's
    ray.get_gpu_ids.assert_called_once_with()  # ... and plan_for did not even ask Ray


def test_visible_gpus_reports_its_origin() -> None:
    visible = visible_gpus(DGX, {CVD: "4,5"})
    assert visible.gpus == (4, 5) and visible.origin == "CUDA_VISIBLE_DEVICES=4,5"


# -- physical ids (NVML / nvidia-smi numbering) ------------------------------------------------
def test_a_physical_id_ignores_a_permuted_visible_list() -> None:
    # NeMo RL under RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES: CUDA_VISIBLE_DEVICES lists the node's GPUs.
    resolution = describe_resolution(DGX, physical=7, env={CVD: "7,6,5,4,3,2,1,0"})
    assert resolution.gpus == (7,) and resolution.source == "physical"
    assert codes(resolution.reasons) == ("gpu_physical",)
    # The local form reads 7 as cuda:7, which this list maps to physical 0.
    assert resolve_gpus(DGX, gpus=7, env={CVD: "7,6,5,4,3,2,1,0"}) == (0,)


def test_physical_ids_as_decimal_strings_and_several() -> None:
    assert resolve_gpus(DGX, physical=["6", 2], env={}) == (6, 2)


@pytest.mark.parametrize("bad", [8, -1, "GPU-1", True])
def test_a_physical_id_the_machine_lacks_is_an_error(bad: object) -> None:
    with pytest.raises(GpuResolutionError) as caught:
        resolve_gpus(DGX, physical=bad, env={})  # type: ignore[arg-type]
    assert caught.value.variable == "physical"


def test_physical_and_local_together_is_an_error() -> None:
    with pytest.raises(GpuResolutionError, match="not both"):
        resolve_gpus(DGX, gpus=1, physical=1, env={})


# -- LOCAL_RANK (torchrun) ---------------------------------------------------------------------
def test_local_rank_picks_the_gpu_when_the_process_sees_every_gpu() -> None:
    resolution = describe_resolution(DGX, env={"LOCAL_RANK": "5", "LOCAL_WORLD_SIZE": "8"})
    assert resolution.gpus == (5,) and resolution.source == "LOCAL_RANK"
    assert codes(resolution.reasons) == ("gpu_from_local_rank",)


def test_local_rank_is_a_local_ordinal_through_a_visible_list() -> None:
    assert resolve_gpus(DGX, env={CVD: "4,5,6,7", "LOCAL_RANK": "1"}) == (5,)


def test_a_single_visible_gpu_wins_over_local_rank() -> None:
    # A launcher that gives each worker one GPU (Slurm, Ray) may leave LOCAL_RANK at the job's rank.
    assert resolve_gpus(DGX, env={CVD: "3", "LOCAL_RANK": "3"}) == (3,)


@pytest.mark.parametrize(
    ("env", "code"),
    [
        ({"LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}, "local_rank_single_worker"),
        ({"LOCAL_RANK": "9"}, "local_rank_out_of_range"),
        ({"LOCAL_RANK": "x"}, "local_rank_not_an_index"),
    ],
)
def test_local_rank_that_picks_no_gpu_leaves_every_visible_gpu_and_says_why(env: dict[str, str], code: str) -> None:
    resolution = describe_resolution(DGX, env=env)
    assert resolution.gpus == tuple(range(8))
    assert codes(resolution.warnings) == (code,)


def test_ray_wins_over_local_rank(ray_gives: Any) -> None:
    env = read_gpu_environment({"LOCAL_RANK": "5"}, ray_gives([2]))
    assert resolve_gpus(DGX, env=env) == (2,)
