"""Two distributions: gpunuma carries neither the simulated machines nor a pytest plugin; gpunuma-fakes carries both."""

from __future__ import annotations

from pathlib import Path

import pytest

import gpunuma
import gpunuma_fakes

tomllib = pytest.importorskip("tomllib")
CHECKOUT = Path(__file__).resolve().parent.parent


def _project(path: Path) -> dict:
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def test_the_gpunuma_wheel_holds_gpunuma_alone_and_no_pytest_plugin():
    root = _project(CHECKOUT / "pyproject.toml")

    assert root["tool"]["setuptools"]["packages"]["find"]["where"] == ["src"]
    assert not (CHECKOUT / "src" / "gpunuma_fakes").exists()
    assert "pytest11" not in root["project"].get("entry-points", {})


def test_the_fakes_are_their_own_typed_distribution_with_the_plugin():
    fakes = _project(CHECKOUT / "fakes" / "pyproject.toml")

    assert fakes["project"]["name"] == "gpunuma-fakes"
    assert fakes["project"]["entry-points"]["pytest11"] == {
        "gpunuma_fakes.pytest_plugin": "gpunuma_fakes.pytest_plugin"
    }
    assert fakes["tool"]["setuptools"]["package-data"] == {"gpunuma_fakes": ["py.typed"]}
    assert (CHECKOUT / "fakes" / "gpunuma_fakes" / "py.typed").is_file()


def test_the_fakes_are_released_with_gpunuma_at_its_version():
    fakes = _project(CHECKOUT / "fakes" / "pyproject.toml")

    assert gpunuma_fakes.__version__ == gpunuma.__version__
    assert fakes["project"]["dependencies"] == [f"gpunuma=={gpunuma.__version__}"]


@pytest.mark.parametrize("where", ["README.md", ".ci/run"])
def test_the_test_command_installs_the_fakes(where):
    text = (CHECKOUT / where).read_text()

    commands = [line for line in text.splitlines() if "pip install" in line and ".[test]" in line]
    assert commands and all("-e ./fakes" in line for line in commands)
