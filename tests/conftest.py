"""Shared fixtures: simulated machines written as sysfs/procfs trees, and the session's own temporary folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from gpunuma_fakes import Machine, machine, render_sysfs

# Also an installed entry point; listed here so a checkout whose install predates it still has the fixtures.
pytest_plugins = ["gpunuma_fakes.pytest_plugin"]

#: The session's own temporary folder (``$TMPDIR`` of the suite and of every process it starts).
_SCRATCH = pytest.StashKey[tuple[str, str | None]]()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Everything the suite and its processes put in ``$TMPDIR`` (pytest's folders, Ray's sessions, share slots,
    the CLI's work) goes into one folder of the session's own, removed when the session ends: the suite leaves
    nothing in ``$TMPDIR``. The name is short: Ray's socket paths below it must stay within 107 bytes."""
    scratch = tempfile.mkdtemp(prefix="gt-")
    config.stash[_SCRATCH] = (scratch, os.environ.get("TMPDIR"))
    os.environ["TMPDIR"] = scratch
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again


def pytest_unconfigure(config: pytest.Config) -> None:
    scratch, saved = config.stash.get(_SCRATCH, (None, None))
    if scratch is None:
        return
    shutil.rmtree(scratch, ignore_errors=True)
    if saved is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved
    tempfile.tempdir = None


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
def bindings_stay_in_their_test():
    """A test that binds this process leaves ``GPUNUMA_OWN`` set, one that binds through a named machine's
    simulated kernel ``GPUNUMA_SIMULATED_KERNEL`` (children must inherit them), and one under
    ``GPUNUMA_SIMULATE`` the process's simulated kernel of that machine: undo all three after. Each test starts
    with no binding in force (``gpunuma.last_report()`` None), as a fresh process does."""
    import os
    import sys

    from gpunuma import compose

    names = ("GPUNUMA_OWN", "GPUNUMA_SIMULATED_KERNEL")
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    in_force, binder = list(compose._LAST), list(compose._IN_FORCE_BINDER)
    compose._LAST.clear()
    compose._IN_FORCE_BINDER.clear()
    yield
    compose._LAST[:] = in_force
    compose._IN_FORCE_BINDER[:] = binder
    for name in names:
        os.environ.pop(name, None)
    os.environ.update(saved)
    source = sys.modules.get("gpunuma_fakes.source")
    if source is not None:
        source.forget_process_kernels()
