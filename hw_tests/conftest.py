"""The real-hardware suite: every test here is marked ``gpu`` and needs an NVIDIA GPU host.

Run it with ``pytest -m gpu`` (or ``tox -e gpu``). Without a GPU every test skips with the
reason; CI never runs it. Children run with this checkout's ``src`` and ``fakes`` on
``PYTHONPATH`` so the suite also works from a plain checkout (no install).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    ours = [item for item in items if here in Path(str(item.fspath)).parents]
    if not ours:
        return
    reason = _gpu_absence_reason()
    for item in ours:
        item.add_marker(pytest.mark.gpu)
        if reason is not None:
            # A marker, not a fixture: the session fixtures below must not even start without a GPU.
            item.add_marker(pytest.mark.skip(reason=reason))


def _gpu_absence_reason() -> str | None:
    """None when NVML sees at least one GPU, else why the suite cannot run here."""
    try:
        import pynvml
    except ImportError:
        return "pynvml (nvidia-ml-py) is not installed: pip install 'gpunuma[nvml]'"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        return f"NVML does not initialise on this host ({err}): no NVIDIA GPU or driver"
    try:
        if pynvml.nvmlDeviceGetCount() == 0:
            return "NVML reports no GPU on this host"
    finally:
        pynvml.nvmlShutdown()
    return None


@pytest.fixture(scope="session")
def child_env() -> dict[str, str]:
    """The environment for child processes: this checkout importable, output unbuffered."""
    env = dict(os.environ)
    paths = [str(ROOT / "src"), str(ROOT / "fakes")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_child(code: str, env: dict[str, str], *args: str, timeout: float = 120) -> Any:
    """Run ``code`` in a fresh Python; it must print one JSON document as its last line."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def results_dir() -> Path | None:
    """Where tests write their measurements for RESULTS.md (``GPUNUMA_HW_OUT``), or None."""
    out = os.environ.get("GPUNUMA_HW_OUT")
    if not out:
        return None
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def nvml_topology() -> Any:
    from gpunuma.adapters.nvml import NvmlTopology
    from gpunuma.adapters.sysfs import SysfsTopology

    return NvmlTopology(sysfs=SysfsTopology()).read()


@pytest.fixture(scope="session")
def sysfs_topology() -> Any:
    from gpunuma.adapters.sysfs import SysfsTopology

    return SysfsTopology().read()
