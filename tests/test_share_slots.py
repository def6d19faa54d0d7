"""Share slots: each process sharing a GPU holds the lowest free slot, until it exits."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from gpunuma.adapters.share_slots import ShareSlots
from gpunuma.core.policy import Share
from gpunuma.core.reasons import Reason
from gpunuma.errors import BindError
from gpunuma.integrations.ray import share_from_ray


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
