"""Shared fixtures: simulated machines written as sysfs/procfs trees, and the session's own temporary folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from gpunuma.core.filetree import FileTree
from gpunuma_fakes import Machine, machine, render_sysfs
from gpunuma_fakes.render import machine_tree

# Also an installed entry point; listed here so a checkout whose install predates it still has the fixtures.
pytest_plugins = ["gpunuma_fakes.pytest_plugin"]

#: The session's own temporary folder, and the variables it replaced.
_SCRATCH = pytest.StashKey[tuple[str, dict[str, str | None]]]()
#: Where processes of the suite put their temporary state, pointed into the session's folder.
_REDIRECTED = ("RAY_TMPDIR", "XDG_RUNTIME_DIR")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """The suite's temporary state lives in one folder of the session's own, removed when it ends, so the suite
    leaves nothing in ``$TMPDIR``: pytest's folders (unless ``--basetemp`` names one), Ray's sessions
    (``RAY_TMPDIR``) and the share slots of fractional-GPU workers (``XDG_RUNTIME_DIR``), in this process and
    every process it starts. The name is short: Ray's socket paths below it must stay within 107 bytes."""
    scratch = tempfile.mkdtemp(prefix="gt-")
    saved = {name: os.environ.get(name) for name in _REDIRECTED}
    config.stash[_SCRATCH] = (scratch, saved)
    if config.option.basetemp is None:
        config.option.basetemp = os.path.join(scratch, "pytest")
    for name in _REDIRECTED:
        os.environ[name] = scratch


def pytest_unconfigure(config: pytest.Config) -> None:
    scratch, saved = config.stash.get(_SCRATCH, (None, {}))
    if scratch is None:
        return
    shutil.rmtree(scratch, ignore_errors=True)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def rendered(simulated_trees: Callable[[Machine], Path]) -> Callable[[str], Path]:
    """``rendered("dgx-h100")``: the root of that catalogue machine's tree, rendered once per session.

    Shared between tests: read it, never change it (use ``render`` for a tree to damage).
    """
    return lambda name: simulated_trees(machine(name))


class TreeEdits:
    """A machine's tree held in memory with one test's own edits; the machine's own tree is never changed."""

    def __init__(self, simulated: Machine) -> None:
        self.base = machine_tree(simulated)
        entries = dict(self.base.items())
        self.root = self.base.root
        self.files = {path: data for path, data in entries.items() if isinstance(data, bytes)}
        self.links = {path: target for path, target in entries.items() if isinstance(target, str)}
        self.folders = [path for path, data in entries.items() if data is None]

    def _real(self, relative: str) -> str:
        """``relative`` with the links in its folders followed (``sys/bus/pci/devices/X/numa_node`` is a device's)."""
        parent, _, name = relative.rpartition("/")
        if not parent:
            return relative
        real = (self.base.resolve(f"{self.root}/{parent}") or "").removeprefix(self.root).strip("/")
        return f"{real}/{name}" if real else relative

    def write(self, relative: str, text: str | bytes) -> None:
        relative = self._real(relative)
        self.links.pop(relative, None)
        self.files[relative] = text if isinstance(text, bytes) else text.encode()

    def read(self, relative: str) -> str:
        return self.files[self._real(relative)].decode()

    def delete(self, relative: str) -> None:
        """Remove a file, a link or a folder with everything in it."""
        relative = self._real(relative)
        below = relative + "/"
        for table in (self.files, self.links):
            for path in [p for p in table if p == relative or p.startswith(below)]:
                del table[path]
        self.folders = [p for p in self.folders if p != relative and not p.startswith(below)]

    def paths(self, prefix: str) -> list[str]:
        """The files below ``prefix``."""
        return sorted(path for path in self.files if path.startswith(prefix.rstrip("/") + "/"))

    @property
    def tree(self) -> FileTree:
        """The edited tree, as the adapters read it."""
        return FileTree(self.root, self.files, self.links, self.folders)


@pytest.fixture
def edit() -> Callable[[Machine], TreeEdits]:
    """``edit(machine)``: the machine's tree in memory for this test to change (``.write``, ``.delete``, ``.tree``)."""
    return TreeEdits


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


@pytest.fixture
def watch_creations(monkeypatch) -> Callable[[], list[str]]:
    """Call it to record, from then on, every file or folder this process creates (``os.open`` with
    ``O_CREAT``, ``os.mkdir``); it returns the list the records go to."""

    def watch() -> list[str]:
        created: list[str] = []
        real_open, real_mkdir = os.open, os.mkdir

        def tracked_open(path, flags, *args, **kwargs):
            if flags & os.O_CREAT:
                created.append(os.fspath(path))
            return real_open(path, flags, *args, **kwargs)

        def tracked_mkdir(path, *args, **kwargs):
            created.append(os.fspath(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", tracked_open)
        monkeypatch.setattr(os, "mkdir", tracked_mkdir)
        return created

    return watch
