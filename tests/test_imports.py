"""Importing gpunuma, its binding path and its Ray integration loads neither Ray nor pynvml."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, sys
import gpunuma, gpunuma.api, gpunuma.cli, gpunuma.integrations.ray, gpunuma_fakes
gpunuma.CpuSet, gpunuma.Policy, gpunuma.bind_to_gpu  # lazy attributes resolve
print(json.dumps({name: name in sys.modules for name in ("ray", "pynvml")}))
"""


def test_importing_the_library_loads_neither_ray_nor_pynvml():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == {"ray": False, "pynvml": False}


def test_unknown_attributes_raise_attribute_error():
    import pytest

    import gpunuma

    with pytest.raises(AttributeError, match="no_such_thing"):
        gpunuma.no_such_thing  # noqa: B018
