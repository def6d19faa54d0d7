"""The runnable examples do what the README says, on this CPU-only machine."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.ray
def test_ray_scheduler_example_starts_eight_bound_actors_on_a_simulated_dgx():
    pytest.importorskip("ray")
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "ray_scheduler.py"), "--simulate", "dgx-h100"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    lines = re.findall(r"^actor (\d): GPU (\d) -> NUMA node (\d), CPUs (\S+)$", out, flags=re.M)
    assert [(int(a), int(g)) for a, g, _, _ in lines] == [(i, i) for i in range(8)]
    assert {int(g): (int(n), cpus) for _, g, n, cpus in lines} == {
        g: (0, "0-55,112-167") if g < 4 else (1, "56-111,168-223") for g in range(8)
    }
