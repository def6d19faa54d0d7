"""Numbers from kernel files, environment variables, flags and API arguments are read strictly.

Python's ``int()`` takes ``+1``, ``1_0`` and any Unicode digit (``０``, ``١``); the kernel prints ASCII
``%d`` and the CUDA runtime reads ASCII. Each such text is a typed error (or names no GPU), never a
wrong node or GPU stated as fact. API arguments of the wrong type are typed errors, never a bare
``TypeError`` or "node 1 does not exist" for a node that does.
"""

from __future__ import annotations

import pytest

from gpunuma.adapters.static import StaticTopology
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.api import bind_to_gpu, bind_to_node, plan_for
from gpunuma.core.identity import resolve_gpus, visible_gpus
from gpunuma.core.numbers import MAX_DIGITS, decimal, hexadecimal
from gpunuma.errors import GpuResolutionError, InvalidNodeError, SysfsFormatError
from gpunuma.tools.cli import ExitCode, main
from gpunuma_fakes import machine

DGX = machine("dgx-h100")
#: Text ``int()`` reads as a number but the kernel and the CUDA runtime never would.
NOT_ASCII_DECIMAL = ["\uff10", "\u0661", "1_0", "+1", " 1", "1 ", "", "-", "--1", "1e3", "\u00b2", "0x1"]


@pytest.mark.parametrize("text", NOT_ASCII_DECIMAL)
def test_decimal_takes_ascii_digits_only(text):
    assert decimal(text, signed=True) is None


def test_decimal_reads_what_the_kernel_prints():
    assert [decimal("0"), decimal("42"), decimal("-1", signed=True), decimal("007")] == [0, 42, -1, 7]
    assert decimal("-1") is None  # unsigned unless asked
    assert decimal("9" * MAX_DIGITS) == int("9" * MAX_DIGITS) and decimal("9" * (MAX_DIGITS + 1)) is None
    assert decimal("1" * 5000) is None  # never handed to int()


@pytest.mark.parametrize("text", ["0x\uff11", "1_0", "+10", "0x", "g", "\u0661"])
def test_hexadecimal_takes_ascii_hex_digits_only(text):
    assert hexadecimal(text) is None


def test_hexadecimal_reads_sysfs_ids():
    assert [hexadecimal("0x10de"), hexadecimal("10DE"), hexadecimal("0x030200")] == [0x10DE, 0x10DE, 0x030200]


# -- kernel files --------------------------------------------------------------------------------------
GPU5 = "sys/bus/pci/devices/0000:c3:00.0"


@pytest.mark.parametrize(
    ("relative", "text"),
    [
        (f"{GPU5}/numa_node", "\uff10\n"),  # fullwidth 0: GPU 5 is on node 1
        (f"{GPU5}/numa_node", "\u0661\n"),  # Arabic-Indic 1
        (f"{GPU5}/numa_node", "1_0\n"),
        (f"{GPU5}/numa_node", "+1\n"),
        (f"{GPU5}/vendor", "0x10_de\n"),
        (f"{GPU5}/class", "0x\uff10\uff13\uff10\uff12\uff10\uff10\n"),
        ("sys/devices/system/node/node1/distance", "21 1_0\n"),
        ("sys/devices/system/node/node1/meminfo", "Node 1 MemTotal: \u0661\u0662 kB\n"),
        ("sys/devices/system/cpu/cpu0/topology/physical_package_id", "\u0660\n"),
    ],
)
def test_a_kernel_number_in_other_than_ascii_digits_is_a_format_error_naming_the_file(edit, relative, text):
    dgx = edit(DGX)
    dgx.write(relative, text)

    with pytest.raises(SysfsFormatError) as caught:
        SysfsTopology(root=dgx.tree).read()

    assert str(caught.value.path).endswith(relative)


def test_a_fullwidth_numa_node_binds_nothing_instead_of_the_wrong_node(edit):
    dgx = edit(DGX)
    dgx.write(f"{GPU5}/numa_node", "\uff10\n")

    report = bind_to_gpu(5, source=SysfsTopology(root=dgx.tree), binder=DGX.kernel(), env={})

    assert not report.bound and report.plan.nodes == ()


def test_a_cpu_directory_named_in_other_digits_is_not_a_cpu(render):
    root = render(DGX)
    (root / "sys/devices/system/cpu/cpu\u0661\u0660").mkdir()

    assert SysfsTopology(root=root).read().all_cpus == DGX.topology().all_cpus


# -- CUDA_VISIBLE_DEVICES, explicit ids, LOCAL_RANK ------------------------------------------------------
@pytest.mark.parametrize("entry", ["\u0661", "\uff15", "+5", "1_0"])
def test_a_visible_devices_entry_in_other_than_ascii_digits_names_no_gpu(entry):
    # The runtime reads ASCII strtol: the list ends at the first entry that names no GPU.
    assert visible_gpus(DGX.topology(), {"CUDA_VISIBLE_DEVICES": f"4,{entry}"}).gpus == (4,)
    with pytest.raises(GpuResolutionError):
        visible_gpus(DGX.topology(), {"CUDA_VISIBLE_DEVICES": entry})


@pytest.mark.parametrize("gpu", ["\u0661", "+1", "1_0", "cuda:\u0661", "cuda:+1"])
def test_an_explicit_gpu_string_in_other_than_ascii_digits_is_no_local_index(gpu):
    with pytest.raises(GpuResolutionError):
        resolve_gpus(DGX.topology(), gpus=gpu, env={})


@pytest.mark.parametrize("rank", ["\u0665", "+5", "5_0"])
def test_a_local_rank_in_other_than_ascii_digits_picks_no_gpu(rank):
    plan = plan_for(source=StaticTopology(DGX.topology(), DGX.allowed()), env={"LOCAL_RANK": rank})
    assert plan.gpus != (5,)


# -- flags ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags", [["--node", "\u0661"], ["--node", "+1"], ["--physical-gpu", "\u0665"],
                                   ["--physical-gpu", "1_0"]])
@pytest.mark.parametrize("command", [["plan"], ["exec", "--dry-run"]])
def test_a_numeric_flag_in_other_than_ascii_digits_is_a_usage_error(capsys, command, flags):
    code = main([*command, "--simulate", "dgx-h100", *flags, *(["--", "true"] if command[0] == "exec" else [])])
    assert code == ExitCode.USAGE
    assert "invalid" in capsys.readouterr().err


@pytest.mark.parametrize("gpu", ["\u0665", "+5", "5_0"])
def test_a_gpu_flag_in_other_than_ascii_digits_plans_nothing(capsys, gpu):
    assert main(["plan", "--simulate", "dgx-h100", "--gpu", gpu]) == ExitCode.ERROR
    assert capsys.readouterr().out == ""


# -- API argument types ----------------------------------------------------------------------------------
@pytest.fixture
def dgx_static():
    return StaticTopology(DGX.topology(), DGX.allowed())


@pytest.mark.parametrize("node", ["1", 1.0, 1.5, True, b"1"])
def test_a_node_that_is_not_an_int_is_an_invalid_node_error_naming_its_type(dgx_static, node):
    with pytest.raises(InvalidNodeError) as caught:
        plan_for(node=node, source=dgx_static, env={})
    assert caught.value.node is node and type(node).__name__ in caught.value.why

    with pytest.raises(InvalidNodeError):  # a programming error: raised in best-effort mode too
        bind_to_node(node, source=dgx_static, binder=DGX.kernel(), env={})


@pytest.mark.parametrize("gpu", [1.0, b"5", "", " ", [1.0], [b"5"]])
def test_a_gpu_id_that_is_not_an_int_or_a_name_is_a_resolution_error(dgx_static, gpu):
    with pytest.raises(GpuResolutionError) as caught:
        plan_for(gpu, source=dgx_static, env={})
    assert caught.value.variable == "gpus"

    if isinstance(gpu, str):  # the right type naming nothing: the machine's to judge, best-effort
        assert not bind_to_gpu(gpu, source=dgx_static, binder=DGX.kernel(), env={}).bound
    else:  # the wrong type: a programming error, raised in best-effort mode too
        with pytest.raises(GpuResolutionError):
            bind_to_gpu(gpu, source=dgx_static, binder=DGX.kernel(), env={})


@pytest.mark.parametrize("physical", [1.0, b"5", "\u0665"])
def test_a_physical_id_that_is_not_an_int_is_a_resolution_error(dgx_static, physical):
    with pytest.raises(GpuResolutionError) as caught:
        plan_for(physical=physical, source=dgx_static, env={})
    assert caught.value.variable == "physical"


# -- GPUNUMA_* integers ----------------------------------------------------------------------------------
@pytest.mark.parametrize("env", [{"GPUNUMA_RESERVE": "\u0661"}, {"GPUNUMA_RESERVE": "1_0"},
                                 {"GPUNUMA_SHARE": "\u0661/\u0664"}, {"GPUNUMA_SHARE": "+1/4"},
                                 {"GPUNUMA_SHARE": "1/" + "4" * 5000}])
def test_a_gpunuma_integer_in_other_than_ascii_digits_is_a_settings_error_in_strict_mode(env):
    from gpunuma.errors import SettingsError
    from gpunuma.settings import configure

    with pytest.raises(SettingsError):
        configure({**env, "GPUNUMA_STRICT": "1"})


@pytest.mark.parametrize("env", [{"GPUNUMA_RESERVE": "\u0661"}, {"GPUNUMA_SHARE": "1/" + "4" * 5000}])
def test_a_gpunuma_integer_in_other_than_ascii_digits_keeps_the_default_in_best_effort_mode(env, caplog):
    from gpunuma.settings import configure

    settings = configure(env)
    assert settings.policy == configure({}).policy
    assert [name for name in env if any(problem.startswith(name) for problem in settings.problems)] == list(env)
    assert any(record.levelname == "WARNING" for record in caplog.records)


@pytest.mark.parametrize(("variable", "value"), [("GPUNUMA_CPU_SCOPE", "\uff2e\uff2f\uff24\uff25"),
                                                 ("GPUNUMA_SOURCE", "NVLM"), ("GPUNUMA_MEMORY", "Fast")])
def test_a_bad_gpunuma_choice_is_quoted_as_it_was_set(variable, value):
    from gpunuma.errors import SettingsError
    from gpunuma.settings import configure

    with pytest.raises(SettingsError) as caught:
        configure({variable: value}, strict=True)
    assert f"{variable}={value!r}" in str(caught.value)
