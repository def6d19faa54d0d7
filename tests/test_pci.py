"""PCI bus ids in every form NVML, sysfs, the NVIDIA driver and users write them, and text that is none."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_mock import MockerFixture

from gpunuma.adapters.nvml import NvmlTopology
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.core.identity import resolve_gpus
from gpunuma.core.pci import BusId, bus_order, in_bus_order, is_bus_id, normalize_bus_id, parse_bus_id
from gpunuma.core.reasons import codes
from gpunuma.errors import BusIdError, GpunumaError
from gpunuma_fakes import machine, render_sysfs
from gpunuma_fakes.nvml import FakeNvml

C3 = BusId(domain=0, bus=0xC3, device=0, function=0)


# -- the forms gpunuma meets -------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, normal",
    [
        ("00000000:1B:00.0", "0000:1b:00.0"),
        ("0000:1b:00.0", "0000:1b:00.0"),
        (b"00000009:01:00.0", "0009:01:00.0"),
        ("1b:00.0", "0000:1b:00.0"),
        ("00010000:0A:1F.3", "10000:0a:1f.3"),
    ],
)
def test_bus_ids_normalise_to_the_sysfs_form(raw: str | bytes, normal: str) -> None:
    assert normalize_bus_id(raw) == normal


@pytest.mark.parametrize(
    "raw",
    [
        "00000000:C3:00.0",  # NVML busId
        "0000:C3:00.0",  # NVML busIdLegacy, nvidia-smi, /proc/driver/nvidia/gpus
        "0000:c3:00.0",  # sysfs
        "c3:00.0",  # no domain
        "0000:c3:0.0",  # one-digit device
        "0000:C3:00.0\x00\x00\x00\x00",  # NVML's NUL-padded buffer
        b"00000000:C3:00.0\x00\x00",
        "  0000:c3:00.0\n",
        "0000:c3:00.0".upper(),
    ],
)
def test_every_form_of_one_function_reads_as_the_same_value(raw: str | bytes) -> None:
    assert BusId.parse(raw) == C3


def test_one_value_writes_each_form() -> None:
    assert (C3.sysfs, C3.nvml, C3.legacy) == ("0000:c3:00.0", "00000000:C3:00.0", "0000:C3:00.0")
    assert BusId.parse(C3.nvml) == BusId.parse(C3.legacy) == BusId.parse(C3.sysfs) == C3


def test_bus_order_is_numeric_so_wide_domains_sort_after_narrow_ones_and_junk_sorts_last() -> None:
    names = ["not-a-bus", "10000:00:01.0", "ffff:00:00.0", "0000:c3:00.0", "0000:1b:00.1", "0000:1b:00.0"]
    assert sorted(names, key=bus_order) == [
        "0000:1b:00.0", "0000:1b:00.1", "0000:c3:00.0", "ffff:00:00.0", "10000:00:01.0", "not-a-bus"]


# -- text that is no bus id --------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw",
    [
        "GPU-1234",
        "",
        "0000:c3:00",  # no function
        "0000:c3:00.",  # empty function
        "0000:c3:00.8",  # functions are 0-7
        "0000:c3:00.00",
        "000000000:c3:00.0",  # a 9-digit domain
        "0000:c3g:00.0",
        "0000:123:00.0",  # a 3-digit bus
        "0:0000:c3:00.0",  # one field too many
        "0000:c3::00.0",
        "0000:c\uff13:00.0",  # a full-width 3: int(..., 16) reads it, the kernel never writes it
        "0000:c\u0663:00.0",  # an Arabic-Indic 3
        "0000:c3:00.\u0660",  # an Arabic-Indic 0 as the function
        "0000:c3:00.0" + " " * 100,  # longer than any real id, even NUL-padded
        b"\xff\xfe:c3:00.0",  # bytes that are not text
    ],
)
def test_malformed_ids_read_as_none_and_raise_a_typed_error(raw: str | bytes) -> None:
    assert BusId.parse(raw) is None
    with pytest.raises(BusIdError) as caught:
        normalize_bus_id(raw)
    assert isinstance(caught.value, GpunumaError) and isinstance(caught.value, ValueError)
    assert caught.value.text == raw


def test_a_huge_string_is_refused_without_reading_it_and_quoted_short() -> None:
    huge = "0" * 10_000_000 + ":c3:00.0"
    assert not is_bus_id(huge) and bus_order(huge) == bus_order("junk")
    with pytest.raises(BusIdError) as caught:
        parse_bus_id(huge)
    assert len(str(caught.value)) < 200


# -- the places that read them -----------------------------------------------------------------
def test_a_gpu_named_by_any_form_of_its_bus_id_resolves_to_it() -> None:
    dgx = machine("dgx-h100").topology()
    wanted = next(gpu for gpu in dgx.gpus if gpu.pci_bus_id == "0000:c3:00.0")
    for form in ("00000000:C3:00.0", "0000:C3:00.0", "c3:00.0"):
        assert resolve_gpus(dgx, gpus=[form], env={}) == (wanted.index,)


def test_nvml_skips_a_gpu_whose_bus_id_is_garbage_with_a_note(tmp_path: Path, mocker: MockerFixture) -> None:
    m = machine("workstation")
    render_sysfs(m, tmp_path)
    fake = FakeNvml(m)
    info = fake.nvmlDeviceGetPciInfo
    mocker.patch.object(fake, "nvmlDeviceGetPciInfo", side_effect=lambda h: mocker.Mock(
        busId=b"\xff" * 40, busIdLegacy="", domain=info(h).domain))
    found = NvmlTopology(nvml=fake, sysfs=SysfsTopology(root=str(tmp_path))).read_gpus(
        SysfsTopology(root=str(tmp_path)).read())
    assert found.gpus == () and codes(found.notes) == ("nvml_bus_id_malformed",)


@pytest.mark.parametrize(
    "names",
    [
        ["0000:c3:00.0", "0000:1b:00.0", "0000:1b:00.1", "0001:00:00.0", "0000:9a:00.0"],
        # Wider domains (VMD puts functions in 10000:...) and upper case: sorted by value, not as text.
        ["10000:01:00.0", "0000:c3:00.0", "0000:1B:00.0", "0001:00:00.0", "1b:00.1"],
        # A name that is no bus id sorts after every function.
        ["0000:c3:00.0", "not-a-bus", "0000:1b:00.0"],
        [],
    ],
)
def test_in_bus_order_sorts_as_bus_order_does(names: list[str]) -> None:
    assert in_bus_order(names) == sorted(names, key=bus_order)
