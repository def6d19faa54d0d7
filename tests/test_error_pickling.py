"""Every gpunuma error crosses a process boundary intact: Ray and process pools pickle what a worker raises.

Pickle rebuilds an exception from its ``args`` by default, which breaks every error whose ``__init__``
takes other arguments than its message: the caller then gets an unpicklable-exception error instead of
the ``GpunumaError`` it can catch.
"""

from __future__ import annotations

import errno
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

import gpunuma
from gpunuma import errors
from gpunuma.adapters.threads import ThreadBindError
from gpunuma_fakes.catalogue import UnknownMachineError

SAMPLES = [
    errors.CpuSetParseError("3;4", "a ';' is no separator"),
    errors.BusIdError("GPU-1"),
    errors.SysfsFormatError("/sys/bus/pci/devices/x/numa_node", "\uff11", "not an ASCII number"),
    errors.SysfsReadError("/sys/x", OSError(errno.EACCES, "Permission denied")),
    errors.TopologyUnavailableError("no sysfs"),
    errors.NvmlError("driver not loaded", code=9),
    errors.SnapshotError("too many members"),
    errors.FileWriteError("host.tar.gz", "a folder has that name"),
    errors.UnknownSourceError("nvlm"),
    errors.GpuResolutionError("local GPU 9 does not exist", variable="gpus", value="9"),
    errors.SettingsError("GPUNUMA_MEMORY='fast'"),
    errors.PolicyError("share 4/4"),
    errors.PlanError("nothing to bind to"),
    errors.InvalidNodeError(5, "node 5 does not exist"),
    errors.BindError(errno.EPERM, "set_mempolicy refused"),
    errors.LibraryNotFoundError("libnuma.so.1 is missing"),
    errors.HalfBoundError("cannot bind; thread 4242 could not be restored (EPERM)", (4242,), memory_restored=False),
    errors.NotBoundError(None),
    errors.CommandError("/nonexistent", "No such file or directory", not_found=True),
    errors.MissingDependencyError("prometheus_client", "metrics", "--prometheus"),
    errors.FleetError("cannot join the Ray cluster at 'auto'"),
    ThreadBindError(4242, OSError(errno.EINVAL, "Invalid argument")),
    UnknownMachineError("dgx-9000", ("dgx-h100",)),
]


def _state(err: BaseException) -> tuple[object, ...]:
    os_fields = (err.errno, err.strerror, err.filename) if isinstance(err, OSError) else ()
    return type(err), str(err), err.args, vars(err), os_fields


def test_every_public_error_class_has_a_sample():
    public = {name for name in gpunuma.__all__ if name.endswith("Error")}
    assert public <= {type(err).__name__ for err in SAMPLES} | {"GpunumaError", "TopologyError"}


@pytest.mark.parametrize("err", SAMPLES, ids=lambda err: type(err).__name__)
def test_an_error_unpickles_as_the_same_class_with_the_same_message_and_attributes(err):
    assert _state(pickle.loads(pickle.dumps(err))) == _state(err)


def _raise(index: int) -> None:
    raise SAMPLES[index]


@pytest.mark.parametrize("index", [0, 3, 12, 16], ids=lambda i: type(SAMPLES[i]).__name__)
def test_an_error_raised_in_a_pool_worker_reaches_the_caller_as_itself(index):
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        with pytest.raises(errors.GpunumaError) as caught:
            pool.submit(_raise, index).result(timeout=120)
    assert _state(caught.value) == _state(SAMPLES[index])
