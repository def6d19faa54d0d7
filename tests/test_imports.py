"""Importing gpunuma, its binding path and its Ray integration loads neither Ray nor pynvml; the API is typed."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gpunuma
import gpunuma.errors

_PROBE = """
import json, sys
import gpunuma, gpunuma.api, gpunuma.tools.cli, gpunuma.integrations.ray, gpunuma_fakes
[getattr(gpunuma, name) for name in gpunuma.__all__]  # every lazy public name resolves
print(json.dumps({name: name in sys.modules for name in ("ray", "pynvml")}))
"""


def test_importing_the_library_loads_neither_ray_nor_pynvml():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == {"ray": False, "pynvml": False}


def test_binding_loads_none_of_the_tools():
    # The bind path of every worker: the command, check, snapshots, captured trees and the launch child stay out.
    probe = (
        "import json, sys, gpunuma; gpunuma.bind_to_node(0); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('gpunuma.tools', 'gpunuma_fakes')))))"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("GPUNUMA_")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env).stdout
    assert json.loads(out) == []


def test_unknown_attributes_raise_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        gpunuma.no_such_thing  # noqa: B018


def test_all_lists_exactly_the_lazy_exports_and_each_is_the_defining_modules_object():
    assert set(gpunuma.__all__) == {"__version__", *gpunuma._EXPORTS}
    assert len(gpunuma.__all__) == len(set(gpunuma.__all__))
    for name, module in gpunuma._EXPORTS.items():
        assert getattr(gpunuma, name) is getattr(sys.modules[module], name)


def test_type_checkers_see_every_public_name_through_type_checking_imports():
    tree = ast.parse(Path(inspect.getfile(gpunuma)).read_text())
    guarded = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    imported = {
        alias.name: node.module
        for node in ast.walk(guarded) if isinstance(node, ast.ImportFrom) for alias in node.names
    }
    assert imported == gpunuma._EXPORTS


def test_every_error_class_is_public():
    errors = {name for name, value in vars(gpunuma.errors).items()
              if isinstance(value, type) and issubclass(value, gpunuma.errors.GpunumaError)}
    assert errors <= set(gpunuma.__all__)
    assert {"GpunumaError", "BindError", "PlanError", "GpuResolutionError", "SettingsError"} <= errors


def test_every_public_error_has_a_row_in_the_api_docs_errors_table():
    api_doc = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    table = api_doc.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    public = {name for name in gpunuma.__all__ if name.endswith("Error")}
    assert {name for name in public if f"| `{name}` |" not in table} == set()


def test_the_version_is_stated_once_in_the_package():
    pyproject = (Path(inspect.getfile(gpunuma)).parents[2] / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and '\nversion = "' not in pyproject
    assert importlib.metadata.version("gpunuma") == gpunuma.__version__


def test_mypy_sees_the_real_signatures_not_any(tmp_path, monkeypatch):
    mypy = pytest.importorskip("mypy.api")
    snippet = tmp_path / "use.py"
    snippet.write_text("import gpunuma\nreport: int = gpunuma.bind_to_gpu(0)\ngpunuma.plan_for(node='one')\n")
    monkeypatch.chdir(tmp_path)  # a downstream project: none of this repository's mypy settings
    monkeypatch.setenv("MYPYPATH", str(Path(inspect.getfile(gpunuma)).parents[1]))  # editable installs hide it
    out, _, status = mypy.run([str(snippet), "--cache-dir=/dev/null", "--python-version", "3.10"])
    assert status == 1
    assert '"BindingReport", variable has type "int"' in out
    assert 'Argument "node" to "plan_for" has incompatible type "str"' in out
