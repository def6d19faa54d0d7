"""What the command says: its version, help that reads as plain text, and one node per GPU whichever command asks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gpunuma import __version__
from gpunuma.adapters.sysfs import SysfsTopology
from gpunuma.tools.cli import ExitCode, build_parser, main

DATA = Path(__file__).parent / "data"
COMMANDS = ("topo", "plan", "exec", "check", "snapshot", "machines")


def test_version_prints_the_version_and_exits_0(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])

    assert done.value.code == 0 and capsys.readouterr().out == f"gpunuma {__version__}\n"


@pytest.mark.parametrize("command", ("", *COMMANDS))
def test_help_is_plain_text_without_markup(command):
    parser = build_parser()
    if command:
        parser = next(action for action in parser._subparsers._group_actions).choices[command]  # type: ignore[union-attr]
    text = parser.format_help()

    assert not re.search(r"`|:(func|class|mod|meth|data|attr):", text), text


@pytest.mark.parametrize(
    ("where", "node"),
    [(["--root", str(DATA / "h200x1.tar.gz")], 0),  # numa_node -1, its local CPUs all on node 0
     (["--simulate", "gh200"], 0),  # numa_node 0, its GPU memory on CPU-less node 1
     (["--simulate", "cloud-vm"], None)],  # no locality at all: neither names a node
    ids=["numa-node-minus-1", "gpu-memory-node", "unknown"],
)
def test_topo_and_plan_agree_on_a_gpus_node(capsys, where, node):
    assert main(["topo", *where, "--json"]) == ExitCode.OK
    shown = json.loads(capsys.readouterr().out)["gpus"][0]
    main(["topo", *where])
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("  GPU 0 "))
    main(["plan", *where, "--physical-gpu", "0", "--json"])
    planned = {d["code"]: d["values"] for d in json.loads(capsys.readouterr().out)["reason_details"]}

    assert shown["cpu_node"] == node and f" node {'unknown' if node is None else node} " in line
    if node is None:
        assert "gpu_locality_unknown" in planned
    else:
        assert [values["node"] for code, values in planned.items() if code.startswith("gpu_")
                and "node" in values] == [node]


def test_a_line_has_one_gpunuma_prefix_under_a_standard_formatter_and_from_the_command(rendered):
    import logging

    from gpunuma.api import bind_to_gpu
    from gpunuma_fakes import machine

    vm = machine("cloud-vm")  # nothing to bind: a WARNING
    stream = __import__("io").StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    logging.getLogger("gpunuma").addHandler(handler)
    try:
        bind_to_gpu(0, source=vm.source(rendered("cloud-vm")), binder=vm.kernel(), env={})
    finally:
        logging.getLogger("gpunuma").removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    assert line.startswith("WARNING:gpunuma.compose:not bound: ") and line.count("gpunuma") == 1

    # The command shows its lines with the prefix once: a real bind of this machine's first node, logged under -v.
    node = min(SysfsTopology(layout=False, gpus=False).read().cpu_nodes, key=lambda n: n.id).id
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUNUMA_")}
    done = subprocess.run([sys.executable, "-m", "gpunuma", "-v", "exec", "--node", str(node), "--", "true"],
                          capture_output=True, text=True, env=env, timeout=120)
    (bound,) = [line for line in done.stderr.splitlines() if "bound to NUMA node" in line]
    assert done.returncode == 0 and bound.startswith(f"gpunuma: bound to NUMA node {node} ")


@pytest.mark.parametrize(("where", "noted"), [(["--simulate", "mi300x"], False),
                                              (["--root", str(DATA / "h200x1.tar.gz")], True)], ids=["amd", "nvidia"])
def test_a_missing_nvml_is_a_reason_only_where_nvml_could_tell_something(capsys, where, noted):
    # NVML is not used on either (the AMD host has no NVIDIA driver; a captured tree is not this machine's NVML):
    # the NVIDIA host's plan says so, the AMD host's has nothing to miss.
    main(["plan", *where, "--physical-gpu", "0", "--json"])
    details = json.loads(capsys.readouterr().out)["reason_details"]

    notes = [d["values"]["note"]["code"] for d in details if d["code"] == "topology_note"]
    assert ("nvml_not_used" in notes) is noted
