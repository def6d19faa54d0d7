"""Text made safe for a terminal: the one escaping function for what the ``gpunuma`` command prints as text.

Much of what gpunuma shows was named by others: thread names (any process names its threads), RDMA devices and
network interfaces (a captured tree can name them anything), GPU names and UUIDs (NVML, or a recorded snapshot),
file names and contents quoted in notes and errors. Printed raw, ``ESC ]0;...BEL`` retitles the terminal of whoever
runs the command, ``ESC [2J`` clears it, a C1 control (``U+009B``) does the same on some terminals, and a bidi
override (``U+202E``) shows a line in another order than it holds. :func:`visible` turns every such character into
a visible escape (``\\x1b``, ``\\u202e``), as Python's ``repr`` writes it. The command's text output and its lines
on stderr pass through it; its JSON output is left alone (``json.dumps`` already writes every control and
non-ASCII character as ``\\uXXXX``).
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def visible(text: str, keep: str = "") -> str:
    """``text`` with every character a terminal would act on or hide written as a visible escape.

    Escaped: what Python counts as not printable (control characters C0 and C1, ``DEL``, format characters such
    as the bidi overrides and isolates, line and paragraph separators, lone surrogates from undecodable file
    names, unassigned code points), except the characters in ``keep`` (``"\\n\\t"`` for whole lines of output).
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or char in keep else _escape(char) for char in text)
