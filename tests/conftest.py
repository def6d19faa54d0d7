"""Shared fixtures: simulated machines rendered as sysfs/procfs trees."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gpunuma_fakes import Machine, machine, render_sysfs

# Also an installed entry point; listed here so a checkout whose install predates it still has the fixtures.
pytest_plugins = ["gpunuma_fakes.pytest_plugin"]


@pytest.fixture(scope="session")
def rendered(simulated_trees: Callable[[Machine], Path]) -> Callable[[str], Path]:
    """``rendered("dgx-h100")``: the root of that catalogue machine's tree, rendered once per session.

    Shared between tests: read it, never change it (use ``render`` for a tree to damage).
    """
    return lambda name: simulated_trees(machine(name))


@pytest.fixture
def render(tmp_path: Path) -> Callable[[Machine], Path]:
    """``render(machine)``: a private tree of any machine (catalogue or hand-made) in this test's tmp_path."""
    count = iter(range(1_000_000))

    def _render(simulated: Machine) -> Path:
        return render_sysfs(simulated, tmp_path / f"{simulated.name}-{next(count)}")

    return _render


@pytest.fixture(autouse=True)
def own_binding_record_stays_in_its_test():
    """A test that binds this process leaves ``GPUNUMA_OWN`` set (children must inherit it): undo it after."""
    import os

    saved = os.environ.pop("GPUNUMA_OWN", None)
    yield
    os.environ.pop("GPUNUMA_OWN", None)
    if saved is not None:
        os.environ["GPUNUMA_OWN"] = saved
