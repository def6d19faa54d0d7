"""The system-call floor of a read: the same file operations a call made, replayed without the Python around them.

:func:`record` runs a call once with the ``os`` functions a sysfs reader uses wrapped, keeping each
operation and its arguments; :func:`replay` repeats them (file descriptors mapped to the new ones), reading
what was read and listing what was listed. Its time is what no reader in Python can go below for that set
of files, so a row can say how much of a read is the kernel's and how much is the adapter's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

#: The ``os`` functions the topology readers call (``os.path`` helpers go through ``stat``/``lstat``).
WRAPPED = ("open", "read", "close", "listdir", "scandir", "readlink", "stat", "lstat")

Operation = tuple[str, tuple[Any, ...], dict[str, Any], Any]


def record(call: Callable[[], object]) -> list[Operation]:
    """The ``os`` operations ``call`` makes, in order, with their results (an exception's class as the result)."""
    operations: list[Operation] = []
    originals = {name: getattr(os, name) for name in WRAPPED}

    def wrapped(name: str) -> Callable[..., Any]:
        original = originals[name]

        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                result = original(*args, **kwargs)
            except OSError as err:
                operations.append((name, args, kwargs, type(err)))
                raise
            operations.append((name, args, kwargs, result))
            return result

        return run

    try:
        for name in WRAPPED:
            setattr(os, name, wrapped(name))
        call()
    finally:
        for name, original in originals.items():
            setattr(os, name, original)
    return operations


def replay(operations: list[Operation]) -> None:
    """Make the recorded operations again: the same paths opened, read, listed, linked and closed."""
    fds: dict[int, int] = {}
    for name, args, kwargs, result in operations:
        if name == "open":
            if isinstance(result, int):
                fds[result] = os.open(*args, **kwargs)
            else:
                try:
                    os.open(*args, **kwargs)
                except OSError:
                    pass
        elif name == "read":
            fd = fds.get(args[0])
            if fd is not None:
                try:
                    os.read(fd, *args[1:])
                except OSError:
                    pass
        elif name == "close":
            fd = fds.pop(args[0], None)
            if fd is not None:
                os.close(fd)
        elif name == "scandir":
            try:
                with os.scandir(*args, **kwargs) as entries:
                    list(entries)
            except OSError:
                pass
        elif name == "readlink" and str(args[0]).startswith("/proc/self/fd/"):
            # The link of a descriptor opened above: its number is the new one.
            fd = fds.get(int(str(args[0]).rsplit("/", 1)[1]))
            if fd is not None:
                os.readlink(f"/proc/self/fd/{fd}")
        else:
            try:
                getattr(os, name)(*args, **kwargs)
            except OSError:
                pass
    for fd in fds.values():  # a reader that left one open (none should)
        os.close(fd)


def count(operations: list[Operation]) -> int:
    """How many system calls the operations are (a listing is three: open, getdents, close)."""
    return sum(3 if name in ("listdir", "scandir") else 1 for name, _, _, _ in operations)
