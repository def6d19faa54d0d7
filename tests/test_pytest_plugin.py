"""The pytest plugin shipped with the fakes: a downstream project's test suite, run as its own pytest session."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]

#: The downstream test docs/testing.md shows (under ten lines).
DOWNSTREAM = """
import pytest
from gpunuma import bind_to_gpu

@pytest.mark.simulated_machine("dgx-h100")
def test_gpu_5_binds_to_node_1(simulated_source, simulated_kernel):
    report = bind_to_gpu(5, source=simulated_source, binder=simulated_kernel, env={})
    assert report.bound and report.plan.nodes == (1,)
"""


def test_the_plugin_is_an_installed_pytest11_entry_point():
    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("gpunuma_fakes.pytest_plugin") == "gpunuma_fakes.pytest_plugin", (
        "the gpunuma-fakes distribution declares it (fakes/pyproject.toml): pip install -e ./fakes"
    )


def test_the_readme_downstream_test_passes_with_no_conftest(pytester: pytest.Pytester):
    assert len(DOWNSTREAM.strip().splitlines()) < 10
    pytester.makepyfile(test_downstream=DOWNSTREAM)

    pytester.runpytest("-p", "gpunuma_fakes.pytest_plugin").assert_outcomes(passed=1)


def test_a_wrong_expectation_fails_the_downstream_test(pytester: pytest.Pytester):
    pytester.makepyfile(test_downstream=DOWNSTREAM.replace("== (1,)", "== (0,)"))

    pytester.runpytest("-p", "gpunuma_fakes.pytest_plugin").assert_outcomes(failed=1)


def test_machines_by_indirect_parameter_and_a_machine_object(pytester: pytest.Pytester):
    pytester.makepyfile(
        test_many="""
        import pytest
        from gpunuma import bind_to_gpu
        from gpunuma_fakes import machine, split_host

        @pytest.mark.parametrize("simulated_machine", ["dgx-h100", "gb200", machine("mi300x")], indirect=True)
        def test_every_gpu_binds_where_the_catalogue_expects(simulated_machine, simulated_source, simulated_kernel):
            for gpu, node in simulated_machine.expected_nodes.items():
                report = bind_to_gpu(gpu, source=simulated_source, binder=simulated_kernel, env={})
                assert report.plan.nodes == (node,)
                assert simulated_kernel.applied[-1] == report.plan

        @pytest.mark.simulated_machine(split_host(2))
        def test_a_split_host(simulated_machine, simulated_source):
            assert [n.id for n in simulated_source.read().cpu_nodes] == [0, 1]
        """
    )

    pytester.runpytest("-p", "gpunuma_fakes.pytest_plugin").assert_outcomes(passed=4)


def test_a_test_that_names_no_machine_is_told_how(pytester: pytest.Pytester):
    pytester.makepyfile(test_none="def test_x(simulated_kernel):\n    pass\n")

    result = pytester.runpytest("-p", "gpunuma_fakes.pytest_plugin")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*mark the test @pytest.mark.simulated_machine('dgx-h100')*"])


def test_an_unknown_machine_name_lists_the_known_ones(pytester: pytest.Pytester):
    pytester.makepyfile(
        test_typo="""
        import pytest

        @pytest.mark.simulated_machine("dgx-h1000")
        def test_x(simulated_machine):
            pass
        """
    )

    result = pytester.runpytest("-p", "gpunuma_fakes.pytest_plugin")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*dgx-h100*"])


def test_gpunuma_simulate_puts_the_tests_machine_under_unchanged_code_and_takes_it_away_after(pytester):
    pytester.makepyfile(
        test_env="""
        import os
        import pytest
        import gpunuma

        @pytest.mark.simulated_machine("dgx-h100")
        def test_by_marker(gpunuma_simulate, monkeypatch):
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
            assert os.environ["GPUNUMA_SIMULATE"] == gpunuma_simulate == "dgx-h100"
            report = gpunuma.bind_to_gpu()
            assert report.method == "simulated" and report.plan.nodes == (1,)
            assert gpunuma.check_process(physical=5).ok

        @pytest.mark.parametrize("gpunuma_simulate", ["gb200"], indirect=True)
        def test_by_parameter(gpunuma_simulate):
            assert os.environ["GPUNUMA_SIMULATE"] == "gb200"

        def test_after_them():
            assert not {"GPUNUMA_SIMULATE", "GPUNUMA_SIMULATED_KERNEL"} & set(os.environ)
        """
    )

    pytester.runpytest("-p", "gpunuma_fakes.pytest_plugin", "-p", "no:randomly").assert_outcomes(passed=3)


def test_gpunuma_simulate_refuses_a_machine_object_it_cannot_name(pytester):
    pytester.makepyfile(
        test_object="""
        import pytest
        from gpunuma_fakes import split_host

        @pytest.mark.simulated_machine(split_host(1))
        def test_x(gpunuma_simulate):
            pass
        """
    )

    result = pytester.runpytest("-p", "gpunuma_fakes.pytest_plugin")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*GPUNUMA_SIMULATE carries a catalogue name or a snapshot path*"])
