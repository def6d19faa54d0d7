"""Share slots: each process sharing a GPU holds the lowest free slot, until it exits."""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from gpunuma.adapters import share_slots
from gpunuma.adapters.share_slots import ShareSlots, default_directory
from gpunuma.core.policy import Share
from gpunuma.core.reasons import Reason, codes
from gpunuma.errors import BindError, NotBoundError
from gpunuma.integrations.ray import share_from_ray, worker_share
from gpunuma.settings import configure


def hold(directory: Path, key: str, count: int, slot: int) -> int:
    """Another holder of ``slot``: a lock on its own open file, as another process would take it."""
    fd = os.open(directory / f"{key}.{count}.{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_the_first_claim_takes_slot_0_and_keeps_it(tmp_path):
    slots = ShareSlots(str(tmp_path))

    assert slots.claim("gpu0", 4) == 0
    assert slots.claim("gpu0", 4) == 0  # the same process asking again keeps its slot
    assert ShareSlots(str(tmp_path)).claim("gpu0", 4) == 0


def test_slots_held_elsewhere_are_skipped_and_none_is_left_when_all_are(tmp_path):
    held = [hold(tmp_path, "gpu1", 3, slot) for slot in (0, 2)]
    held += [hold(tmp_path, "gpu7", 2, slot) for slot in (0, 1)]
    try:
        assert ShareSlots(str(tmp_path)).claim("gpu1", 3) == 1
        assert ShareSlots(str(tmp_path)).claim("gpu7", 2) is None
    finally:
        for fd in held:
            os.close(fd)


def test_a_slot_is_free_again_once_its_process_exits(tmp_path):
    claim = (
        "import sys; from gpunuma.adapters.share_slots import ShareSlots; "
        f"print(ShareSlots({str(tmp_path)!r}).claim('gpu2', 2))"
    )
    first = subprocess.run([sys.executable, "-c", claim], capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", claim], capture_output=True, text=True, check=True)

    assert first.stdout.strip() == second.stdout.strip() == "0"


def test_odd_keys_make_safe_file_names(tmp_path):
    assert ShareSlots(str(tmp_path)).claim("ray-node/../gpu 3", 2) == 0
    assert [path.name for path in tmp_path.iterdir()] == ["ray-node_.._gpu_3.2.0.lock"]


def test_a_folder_that_cannot_be_made_is_a_bind_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")

    with pytest.raises(BindError):
        ShareSlots(str(blocker / "slots")).claim("gpu0", 2)


def test_the_folder_is_the_sessions_private_one_else_one_per_user_in_the_temporary_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert default_directory() == str(tmp_path / "gpunuma")

    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    assert default_directory() == str(tmp_path / f"gpunuma-{os.geteuid()}")


def test_the_folder_is_made_for_its_user_alone_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        assert ShareSlots(str(tmp_path / "slots")).claim("gpu0", 2) == 0
    finally:
        os.umask(old)

    assert stat.S_IMODE((tmp_path / "slots").stat().st_mode) == 0o700


def _given_away(folder: Path) -> None:
    os.chown(folder, 65534, 65534)


def _opened_to_others(folder: Path) -> None:
    folder.chmod(0o777)


def _a_link(folder: Path) -> None:
    real = folder.with_name("real")
    real.mkdir(mode=0o700)
    folder.rmdir()
    folder.symlink_to(real)


REFUSED = [
    pytest.param(_given_away, "belongs to uid 65534", id="another user's",
                 marks=pytest.mark.skipif(os.geteuid() != 0, reason="only root gives a folder to another user")),
    pytest.param(_opened_to_others, "lets other users in", id="open to others"),
    pytest.param(_a_link, "symbolic link", id="a link"),
]


@pytest.mark.parametrize(("spoil", "why"), REFUSED)
def test_a_folder_someone_else_could_control_is_refused_and_never_used(tmp_path, spoil, why):
    folder = tmp_path / "slots"
    folder.mkdir(mode=0o700)
    spoil(folder)

    with pytest.raises(BindError, match=why):
        ShareSlots(str(folder)).claim("gpu0", 2)

    assert list(folder.iterdir()) == []  # not a lock file made in it


def test_a_link_in_a_lock_files_place_is_never_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"root-owned content")
    folder = tmp_path / "slots"
    folder.mkdir(mode=0o700)
    (folder / "gpu0.2.0.lock").symlink_to(victim)

    with pytest.raises(BindError, match="symbolic link"):
        ShareSlots(str(folder)).claim("gpu0", 2)

    assert victim.read_bytes() == b"root-owned content"
    assert fcntl.flock(os.open(victim, os.O_RDONLY), fcntl.LOCK_EX | fcntl.LOCK_NB) is None  # not locked either


def test_a_lock_is_not_inherited_by_programs_the_process_runs(tmp_path):
    ShareSlots(str(tmp_path)).claim("gpu4", 2)
    (slot, fd) = next(held for (folder, key, _), held in share_slots._HELD.items()
                      if folder == str(tmp_path) and key == "gpu4")

    assert slot == 0 and not os.get_inheritable(fd)


@pytest.mark.parametrize("count", [0, share_slots.MAX_SLOTS + 1, 10**12])
def test_a_slot_count_out_of_bounds_is_a_bind_error_before_any_file(tmp_path, count):
    with pytest.raises(BindError, match="slots"):
        ShareSlots(str(tmp_path / "slots")).claim("gpu0", count)

    assert not (tmp_path / "slots").exists()


def ray_stub(gpu_fraction: float, gpu_ids: list[int]) -> SimpleNamespace:
    """The two calls :func:`share_from_ray` makes of Ray, answering as a worker with that assignment."""
    context = SimpleNamespace(get_assigned_resources=lambda: {"GPU": gpu_fraction, "CPU": 1.0},
                              get_node_id=lambda: "node-a")
    return SimpleNamespace(get_runtime_context=lambda: context, get_gpu_ids=lambda: gpu_ids)


def test_a_quarter_gpu_worker_derives_a_share_of_four(tmp_path):
    slots = ShareSlots(str(tmp_path))
    held = hold(tmp_path, "ray-node-a-gpu3", 4, 0)  # another actor on that GPU holds part 0
    try:
        share, reason = share_from_ray(ray_stub(0.25, [3]), slots)
    finally:
        os.close(held)

    assert share == Share(1, 4)
    assert Reason.coerce(reason).to_dict() == {
        "code": "share_from_ray", "values": {"index": 1, "count": 4, "fraction": 0.25, "gpu": "3"}
    }


@pytest.mark.parametrize(("fraction", "gpus"), [(1.0, [0]), (2.0, [0, 1]), (0.6, [0]), (0.0, [])])
def test_whole_gpus_several_gpus_or_more_than_half_take_no_share(tmp_path, fraction, gpus):
    assert share_from_ray(ray_stub(fraction, gpus), ShareSlots(str(tmp_path))) is None


def test_a_best_effort_worker_whose_slots_are_refused_binds_without_a_share_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "gpunuma").mkdir(mode=0o777)
    (tmp_path / "gpunuma").chmod(0o777)  # made first, open to every user
    options = configure({})

    kept, reasons = worker_share(ray_stub(0.25, [3]), options)

    assert kept.policy.share is None and codes(reasons) == ("share_slots_refused",)
    assert "lets other users in" in Reason.coerce(reasons[0]).values["error"]
    with pytest.raises(NotBoundError, match="lets other users in") as caught:
        worker_share(ray_stub(0.25, [3]), configure({}, strict=True))
    assert isinstance(caught.value.__cause__, BindError)
