"""Names others chose (thread names, RDMA and network device names, UUIDs) never act on the terminal of whoever
runs ``gpunuma``: the text output shows them escaped, the JSON output keeps them exact."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from gpunuma.tools.cli import main
from gpunuma.tools.terminal import visible
from gpunuma_fakes import machine
from gpunuma_fakes.render import PID, TIDS, render_sysfs

RETITLE = "\x1b]0;title\x07"  # sets the terminal's title
CLEAR = "\x1b[2J"  # clears the screen
#: What neither may show as: the raw control characters a terminal acts on.
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (RETITLE, "\\x1b]0;title\\x07"),
        (CLEAR, "\\x1b[2J"),
        ("mlx5_\x9b2J", "mlx5_\\x9b2J"),  # a C1 control: CSI on terminals that take 8-bit controls
        ("eth\u202e0lx", "eth\\u202e0lx"),  # a right-to-left override shows "xl0hte"
        ("a\u2066b\u2069", "a\\u2066b\\u2069"),  # bidi isolates
        ("a\nOK: every thread is bound", "a\\nOK: every thread is bound"),  # a line of its own
        ("cr\rover", "cr\\rover"),
        ("del\x7f", "del\\x7f"),
        ("file\udcff", "file\\udcff"),  # an undecodable byte of a file name
        ("tab\there", "tab\\there"),
    ],
)
def test_controls_and_bidi_overrides_become_visible_escapes(text, shown):
    assert visible(text) == shown


@pytest.mark.parametrize("text", ["mlx5_0", "ibp24s0", "GPU-0b5a3c1e", "Ünïcödé 名前", "with spaces", ""])
def test_printable_text_is_left_as_it_is(text):
    assert visible(text) is text


def test_whole_lines_keep_their_newlines_and_tabs_when_asked():
    assert visible("a\tb\n\x1b[2J\n", keep="\n\t") == "a\tb\n\\x1b[2J\n"


@pytest.fixture(scope="module")
def hostile_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DGX H100 whose RDMA devices, network interfaces and threads were named to attack a terminal."""
    spec = machine("dgx-h100")
    nics = tuple(dataclasses.replace(nic, name=nic.name + RETITLE, netdev=nic.netdev + CLEAR) for nic in spec.nics)
    root = render_sysfs(dataclasses.replace(spec, nics=nics), tmp_path_factory.mktemp("hostile") / "tree")
    for tid, name in zip(TIDS[1:], (RETITLE, CLEAR), strict=True):
        status = root / f"proc/{PID}/task/{tid}/status"
        status.write_text(status.read_text().replace("Name:\tworker", f"Name:\t{name}"))
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    main(list(argv))
    out, err = capsys.readouterr()
    return out + err


@pytest.mark.parametrize(
    "argv",
    [["topo"], ["plan", "--gpu", "5"], ["plan", "--gpu", "5", "--env"], ["check", "--pid", str(PID), "--gpu", "5"]],
    ids=["topo", "plan", "plan --env", "check --pid"],
)
def test_names_from_others_print_escaped(capsys, hostile_tree, argv):
    shown = run(capsys, *argv, "--root", str(hostile_tree))

    assert not any(raw in shown for raw in RAW)
    assert "\\x1b]0;title\\x07" in shown
    if argv[0] != "plan" or "--env" not in argv:  # --env names the NICs, not their interfaces
        assert "\\x1b[2J" in shown


@pytest.mark.parametrize(("argv", "names"), [
    (["topo"], lambda out: [nic["name"] for nic in out["nics"]] + [d for nic in out["nics"] for d in nic["netdevs"]]),
    (["plan", "--gpu", "5", "--env"], lambda out: [out["NCCL_IB_HCA"]]),
    (["check", "--pid", str(PID), "--gpu", "5"], lambda out: [thread["name"] for thread in out["threads"]]),
], ids=["topo", "plan --env", "check --pid"])
def test_json_keeps_names_exact_and_escapes_their_controls_as_json_does(capsys, hostile_tree, argv, names):
    out = run(capsys, *argv, "--root", str(hostile_tree), "--json")

    assert not any(raw in out for raw in RAW)
    found = names(json.loads(out))
    assert any(RETITLE in name for name in found)
