"""The ``gpunuma`` logger, without importing ``logging`` for records nobody could see.

``logging`` costs ~15 ms of CPU to import on a small VM, paid by every bound worker for the one INFO
line a bind writes. Until a process imports ``logging`` (any handler or level set up imports it), the
``gpunuma`` logger has neither, and the root logger's default WARNING level drops INFO and DEBUG: such
records are skipped without importing it. Warnings always go through ``logging`` (its last-resort
handler prints them when nothing is configured).
"""

from __future__ import annotations

import sys

#: The logger every gpunuma record goes to.
NAME = "gpunuma"


def _log(level: str, message: object, args: tuple[object, ...]) -> None:
    import logging

    getattr(logging.getLogger(NAME), level)(message, *args, stacklevel=3)


def warning(message: object, *args: object) -> None:
    """Log a warning on the ``gpunuma`` logger (``logging.Logger.warning``)."""
    _log("warning", message, args)


def info(message: object, *args: object) -> None:
    """Log at INFO, unless no one imported ``logging`` (then nothing could show it)."""
    if "logging" in sys.modules:
        _log("info", message, args)


def debug(message: object, *args: object) -> None:
    """Log at DEBUG, unless no one imported ``logging`` (then nothing could show it)."""
    if "logging" in sys.modules:
        _log("debug", message, args)
