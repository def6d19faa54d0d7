"""Typed errors: every failure gpunuma raises is a subclass of :class:`GpunumaError`.

Each class also inherits the builtin that fits it, so callers that catch
``ValueError`` or ``LookupError`` keep working.
"""

from __future__ import annotations


class GpunumaError(Exception):
    """Base class of every error raised by gpunuma.

    Every subclass pickles whatever its ``__init__`` takes (Ray and process pools send errors between
    processes): the message, the attributes and, for the ``OSError`` ones, ``errno``/``strerror``/``filename``
    travel as they are, and ``__init__`` is not run again.
    """

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        fields = (self.errno, self.strerror, self.filename) if isinstance(self, OSError) else None
        return _rebuilt, (type(self), self.args, dict(vars(self)), fields)


def _rebuilt(
    cls: type[GpunumaError], args: tuple[object, ...], state: dict[str, object], fields: tuple[object, ...] | None
) -> GpunumaError:
    """An error unpickled: built without its ``__init__``, from what :meth:`GpunumaError.__reduce__` kept."""
    # The OSError ones are laid out as OSError: only its __new__ may build them (attribute lookup finds another).
    err = OSError.__new__(cls, *args) if issubclass(cls, OSError) else cls.__new__(cls, *args)
    BaseException.__init__(err, *args)
    # Only the fields that were set: OSError's message shows a filename of None when one is assigned.
    for name, value in zip(("errno", "strerror", "filename"), fields or (None, None, None), strict=True):
        if value is not None:
            setattr(err, name, value)
    vars(err).update(state)
    return err


#: Bad content is quoted up to this many characters: a 45 kB line must not flood every worker's log.
QUOTE_LIMIT = 100


def quoted(text: object) -> str:
    """``repr(text)``, cut to :data:`QUOTE_LIMIT` characters with ``...`` when longer."""
    shown = repr(text[: QUOTE_LIMIT + 1] if isinstance(text, (str, bytes)) else text)
    return shown if len(shown) <= QUOTE_LIMIT else shown[:QUOTE_LIMIT] + "..."


class CpuSetParseError(GpunumaError, ValueError):
    """Text that should be a cpulist, a hex CPU mask or NVML words is malformed."""

    def __init__(self, text: object, why: str) -> None:
        self.text = text
        self.why = why
        super().__init__(f"cannot parse CPU set {quoted(text)}: {why}")


class BusIdError(GpunumaError, ValueError):
    """Text that should be a PCI bus id (``0000:c3:00.0``, ``00000000:C3:00.0``, ``c3:00.0``) is not one."""

    def __init__(self, text: object) -> None:
        self.text = text
        super().__init__(f"{quoted(text)} is not a PCI bus id ([DOMAIN:]BUS:DEVICE.FUNCTION in hex)")


class TopologyError(GpunumaError, RuntimeError):
    """The machine's topology could not be read or is inconsistent."""


class SysfsFormatError(TopologyError, ValueError):
    """A sysfs (or procfs) file holds text the kernel never writes."""

    def __init__(self, path: object, text: str, why: str) -> None:
        self.path = path
        self.text = text
        super().__init__(f"{path}: unexpected content {quoted(text)}: {why}")


class SysfsReadError(TopologyError, OSError):
    """A sysfs (or procfs) file exists but cannot be read: a directory or a symlink loop in its place, EACCES, EIO."""

    def __init__(self, path: object, err: OSError) -> None:
        super().__init__(f"{path}: cannot read it: {err.strerror or err}")
        self.path = path
        self.errno, self.strerror, self.filename = err.errno, err.strerror, str(path)

    def __str__(self) -> str:
        return str(self.args[0])


class TopologyUnavailableError(TopologyError):
    """A topology source cannot answer on this machine (no sysfs, no NVML)."""


class NvmlError(TopologyUnavailableError):
    """NVML failed as a whole (library missing, driver not loaded, init refused)."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        self.code = code
        super().__init__(message)


class SnapshotError(GpunumaError, ValueError):
    """A captured tree or archive (``--root``, ``--simulate PATH``) cannot be opened safely or holds no tree."""


class FileWriteError(GpunumaError, OSError):
    """A file gpunuma writes (``gpunuma snapshot -o FILE``, a rendered tree) cannot be put in place: a folder or
    a link holds its name, or its folder cannot take it (missing, read-only, full). Nothing was changed there."""

    def __init__(self, path: object, why: str) -> None:
        super().__init__(f"cannot write {path}: {why}")
        self.path = path
        self.why = why
        self.filename = str(path)

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownSourceError(GpunumaError, LookupError):
    """A topology source, binder or simulated machine name that gpunuma does not know."""


class GpuResolutionError(GpunumaError, LookupError):
    """The GPU(s) this process owns could not be identified."""

    def __init__(self, message: str, *, variable: str | None = None, value: str | None = None) -> None:
        self.variable = variable
        self.value = value
        super().__init__(message)


class SettingsError(GpunumaError, ValueError):
    """A ``GPUNUMA_*`` variable holds a value gpunuma does not understand."""


class PolicyError(GpunumaError, ValueError):
    """A policy value out of range: a share that is not ``0 <= index < count``, a negative reserve."""


class PlanError(GpunumaError, ValueError):
    """The binding request cannot be planned (an invalid explicit node, an unknown GPU)."""


class InvalidNodeError(PlanError):
    """An explicitly requested NUMA node does not exist, has no CPUs or is not allowed."""

    def __init__(self, node: object, why: str) -> None:
        self.node = node
        self.why = why
        super().__init__(f"NUMA node {quoted(node)} cannot be used: {why}")


class BindError(GpunumaError, OSError):
    """Applying a plan failed; the process was restored to its previous state."""


class HalfBoundError(BindError):
    """Applying a plan failed and undoing it did not fully succeed: ``unrestored`` names the threads that may
    still hold the new CPUs (the kernel refused them, or they were born faster than they could be found), and
    ``memory_restored`` says whether the calling thread's memory policy is back. The message says why.
    """

    def __init__(self, message: str, unrestored: tuple[int, ...] = (), *, memory_restored: bool = True) -> None:
        super().__init__(message)
        self.unrestored = unrestored
        self.memory_restored = memory_restored


class LibraryNotFoundError(BindError):
    """A shared library (libnuma, libc) or a program (numactl) the binder needs is missing."""


class NotBoundError(GpunumaError, RuntimeError):
    """Binding was required (``strict``, ``GPUNUMA_STRICT=1``, ``require_bound=True``, ``GPUNUMA_REQUIRE=1``)
    and nothing got bound.

    ``report`` is the "not bound" report: the process is as it was, and its reasons say why.
    """

    def __init__(self, report: object) -> None:
        self.report = report
        reasons = getattr(report, "reasons", ())
        mismatches = getattr(report, "mismatches", ())
        if getattr(report, "bound", False) and mismatches:
            what = f"the process is not bound as planned: {mismatches[0]}"
        else:
            what = f"nothing was bound: {reasons[-1] if reasons else 'no reason recorded'}"
        super().__init__(f"binding is required (strict or require_bound) and {what}")


class CommandError(GpunumaError, OSError):
    """The command to run bound could not be started (``gpunuma exec``, ``python -m gpunuma.tools.launch``).

    ``not_found`` tells "no such program" (the shell's exit 127) from "not executable" (126).
    """

    def __init__(self, command: str, why: str, *, not_found: bool) -> None:
        self.command = command
        self.why = why
        self.not_found = not_found
        super().__init__(f"cannot run {quoted(command)}: {why}")


class MissingDependencyError(GpunumaError, ImportError):
    """An optional dependency a feature needs is not installed: ``extra`` names the ``gpunuma[...]`` extra that
    brings it (``pip install 'gpunuma[metrics]'`` for ``--prometheus``, ``gpunuma[ray]`` for ``gpunuma fleet``)."""

    def __init__(self, module: str, extra: str, feature: str) -> None:
        self.module = module
        self.extra = extra
        self.feature = feature
        super().__init__(f"{feature} needs {module}, which is not installed: pip install 'gpunuma[{extra}]'")


class FleetError(GpunumaError, RuntimeError):
    """``gpunuma fleet`` cannot reach the Ray cluster, or the cluster does not say which workers hold GPUs."""
