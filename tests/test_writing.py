"""Files gpunuma writes are written whole or not at all, never through a link, never over what it did not make."""

from __future__ import annotations

import os
import stat
import tarfile
import threading
from pathlib import Path

import pytest

from gpunuma.errors import FileWriteError
from gpunuma.tools.cli import ExitCode, main
from gpunuma.tools.writing import replacing, write_file
from gpunuma_fakes import machine
from gpunuma_fakes.render import render_sysfs


def snapshot(capsys: pytest.CaptureFixture[str], output: Path) -> tuple[int, str]:
    code = main(["snapshot", "-o", str(output)])
    return code, capsys.readouterr().err


def test_a_snapshot_replaces_a_file_of_that_name_whole_and_touches_nothing_beside_it(capsys, tmp_path):
    output = tmp_path / "host.tar.gz"
    output.write_bytes(b"an older snapshot")
    beside = tmp_path / "host.tar.gz.partial"
    beside.write_bytes(b"the user's own file")

    code, _ = snapshot(capsys, output)

    assert code == ExitCode.OK and tarfile.is_tarfile(output)
    assert beside.read_bytes() == b"the user's own file"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["host.tar.gz", "host.tar.gz.partial"]


@pytest.mark.parametrize("where", ["host.tar.gz", "host.tar.gz.partial"])
def test_a_link_where_the_snapshot_goes_is_never_followed(capsys, tmp_path, where):
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    (tmp_path / where).symlink_to(victim)

    code, err = snapshot(capsys, tmp_path / "host.tar.gz")

    assert victim.read_bytes() == b"not yours"
    assert (tmp_path / where).is_symlink() and os.readlink(tmp_path / where) == str(victim)
    if where == "host.tar.gz":
        assert code == ExitCode.ERROR and "a symbolic link has that name" in err and err.count("\n") == 1
    else:
        assert code == ExitCode.OK and tarfile.is_tarfile(tmp_path / "host.tar.gz")


def test_a_folder_where_the_snapshot_goes_is_one_line_and_exit_5(capsys, tmp_path):
    (tmp_path / "host.tar.gz").mkdir()
    (tmp_path / "host.tar.gz" / "kept").write_bytes(b"")

    code, err = snapshot(capsys, tmp_path / "host.tar.gz")

    assert code == ExitCode.ERROR and "a folder has that name" in err and "Traceback" not in err
    assert [path.name for path in (tmp_path / "host.tar.gz").iterdir()] == ["kept"]


def test_a_missing_folder_is_one_line_and_exit_5(capsys, tmp_path):
    code, err = snapshot(capsys, tmp_path / "nowhere" / "host.tar.gz")

    assert code == ExitCode.ERROR and "its folder cannot be opened" in err and err.count("\n") == 1


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_nothing_else(tmp_path, error):
    target = tmp_path / "out"
    target.write_bytes(b"old")

    with pytest.raises(type(error) if isinstance(error, KeyboardInterrupt) else FileWriteError):
        with replacing(target) as handle:
            handle.write(b"half of it")
            raise error

    assert target.read_bytes() == b"old" and [path.name for path in tmp_path.iterdir()] == ["out"]


def test_a_new_file_gets_the_umask_mode_or_the_mode_asked_for(tmp_path):
    old = os.umask(0o027)
    try:
        write_file(tmp_path / "shared", b"x")
        write_file(tmp_path / "private", b"x", mode=0o600)
    finally:
        os.umask(old)

    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o600


def test_a_link_swapped_in_and_out_of_the_name_while_writing_never_reaches_its_target(tmp_path):
    """Another user toggles a link at the name as fast as it can: every write either lands as a regular file
    of its own bytes or is refused; the link's target never changes."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    target = tmp_path / "out"
    stop = threading.Event()

    def toggle() -> None:
        while not stop.is_set():
            try:
                os.symlink(victim, target)
                os.unlink(target)
            except OSError:
                pass

    attacker = threading.Thread(target=toggle)
    attacker.start()
    outcomes = set()
    try:
        for round_ in range(300):
            try:
                write_file(target, b"round %d" % round_)
                outcomes.add("written")
            except FileWriteError:
                outcomes.add("refused")
    finally:
        stop.set()
        attacker.join()

    assert victim.read_bytes() == b"not yours"
    assert outcomes <= {"written", "refused"}
    assert not [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")]


def test_a_rendered_tree_never_writes_through_a_link_in_it(tmp_path):
    spec = machine("workstation")
    root = render_sysfs(spec, tmp_path / "tree")
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    online = root / "sys/devices/system/node/online"
    online.unlink()
    online.symlink_to(victim)

    with pytest.raises(FileWriteError, match="a symbolic link has that name"):
        render_sysfs(spec, root)

    assert victim.read_bytes() == b"not yours"
