"""The environment edge: the one place that reads the process environment for binding decisions.

:class:`Settings` holds the ``GPUNUMA_*`` switches; :func:`read_gpu_environment` holds the GPU
visibility variables and Ray's assignment as a :class:`~gpunuma.core.identity.GpuEnvironment` value,
which the pure resolution code receives as an argument.

=====================  ==========================================  =================
variable               meaning                                     default
=====================  ==========================================  =================
``GPUNUMA_BIND``       ``0``/``false``/``off`` disables binding     ``1`` (enabled)
                       (a no-op binder records the plan)
``GPUNUMA_STRICT``     ``1`` raises when binding fails; else a      ``0`` (best-effort)
                       warning and a "not bound" report
``GPUNUMA_CPU_SCOPE``  ``node``, ``socket``, ``exclusive`` or      ``node``
                       ``cache``
``GPUNUMA_MEMORY``     ``preferred``, ``bind`` or ``none``          ``preferred``
``GPUNUMA_SOURCE``     ``auto``, ``nvml`` or ``sysfs``              ``auto``
``GPUNUMA_OVERRIDE``   ``1`` rebinds an already narrowed affinity   ``0``
``GPUNUMA_SPREAD``     ``1`` spreads GPUs that report no locality   ``0``
                       over every node by rank (else: not bound)
``GPUNUMA_REQUIRE``    ``1`` raises ``NotBoundError`` when nothing  ``0``
                       gets bound, whatever the reason; ``local``
                       also when the binding would not be on the
                       GPU's own node (nothing is bound then)
``GPUNUMA_SHARE``      ``i/n``: part ``i`` (from 0) of ``n`` equal    unset (all of it)
                       parts of the planned CPUs, whole cores
``GPUNUMA_RESERVE``    ``K``: the first K cores of every node stay  ``0``
                       out of every plan
``GPUNUMA_CHILD_ENV``  ``0`` hands children none of the binding's    ``1``
                       variables (``OMP_*``, ``GPUNUMA_NODE/CPUS``,
                       ``NCCL_IB_HCA``, ``UCX_NET_DEVICES``)
``GPUNUMA_SIMULATE``   a catalogue machine (``gpunuma machines``)   unset (this machine)
                       or a snapshot path: read it and bind
                       through its simulated kernel (CI)
=====================  ==========================================  =================
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar, cast

from gpunuma.core.childenv import fill_in
from gpunuma.core.identity import GpuEnvironment, id_list
from gpunuma.core.numbers import decimal
from gpunuma.core.policy import CpuScope, MemoryPolicy, Policy, Share
from gpunuma.core.ports import RayLike
from gpunuma.core.reasons import Reason
from gpunuma.core.rebind import OwnBinding, parse_record
from gpunuma.errors import GpuResolutionError, SettingsError
from gpunuma.registry import SOURCE_NAMES

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_E = TypeVar("_E", bound=Enum)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name}={_shown(raw)}: expected one of 1/0, true/false, yes/no, on/off")


__all__ = ["Settings", "SettingsError", "hand_down", "in_ray_worker", "is_ray_worker", "read_gpu_environment"]


def _choice(env: Mapping[str, str], name: str, enum: type[_E], default: str) -> _E:
    raw = env.get(name, "")
    try:
        return enum(raw.strip().lower() or default)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in enum)
        raise SettingsError(f"{name}={_shown(raw)}: expected one of {allowed}") from None


def _share(env: Mapping[str, str]) -> Share | None:
    raw = env.get("GPUNUMA_SHARE", "").strip()
    if not raw:
        return None
    try:
        return Share.parse(raw)
    except ValueError as err:  # PolicyError: the text or the numbers
        raise SettingsError(f"GPUNUMA_SHARE={_shown(raw)}: {err}") from None


def _reserve(env: Mapping[str, str]) -> int:
    raw = env.get("GPUNUMA_RESERVE", "").strip()
    if not raw:
        return 0
    cores = decimal(raw) if len(raw) <= 6 else None
    if cores is None:
        raise SettingsError(f"GPUNUMA_RESERVE={_shown(raw)}: expected a whole number of cores, 0 or more")
    return cores


@dataclass(frozen=True, slots=True)
class Settings:
    """The binding settings that ``GPUNUMA_*`` variables give, with the library's defaults."""

    enabled: bool = True
    strict: bool = False
    source: str = "auto"
    policy: Policy = Policy()
    #: Raise when nothing gets bound (``GPUNUMA_REQUIRE``).
    require: bool = False
    #: Raise, binding nothing, when the binding would not be on the GPU's own node (``GPUNUMA_REQUIRE=local``).
    require_local: bool = False
    #: Hand the binding's environment to children started bound (``GPUNUMA_CHILD_ENV``).
    child_env: bool = True
    #: The simulated machine or captured host to run on instead of this one (``GPUNUMA_SIMULATE``).
    simulate: str | None = None
    #: Values not understood, each replaced by its default (best-effort mode): reasons of code
    #: ``setting_not_understood`` (values ``variable``, ``problem``), whose text is the error's.
    problems: tuple[str, ...] = ()

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        strict: bool | None = None,
        ignore: Collection[str] = (),
        warn: bool = True,
    ) -> Settings:
        """Read the ``GPUNUMA_*`` variables once (``env`` defaults to ``os.environ``).

        A value gpunuma does not understand raises :class:`SettingsError` in strict mode (``strict``,
        else ``GPUNUMA_STRICT``); in best-effort mode it logs a warning and the default stands.
        ``ignore`` names variables not to read at all: a caller's own argument (a command-line flag)
        wins over them, so a bad value there is no mistake. ``warn=False`` (another process's
        environment, read by ``gpunuma check``) logs nothing: :attr:`problems` still says what was replaced.
        """
        env = environment(env)
        problems: list[str] = []

        def read(name: str, parse: Callable[[], _T], default: _T) -> _T:
            if name in ignore:
                return default
            try:
                return parse()
            except SettingsError as err:
                problems.append(Reason.of("setting_not_understood", variable=name, problem=str(err)))
                return default

        policy = Policy(
            cpu_scope=read("GPUNUMA_CPU_SCOPE", lambda: _choice(env, "GPUNUMA_CPU_SCOPE", CpuScope, "node"),
                           CpuScope.NODE),
            memory=read("GPUNUMA_MEMORY", lambda: _choice(env, "GPUNUMA_MEMORY", MemoryPolicy, "preferred"),
                        MemoryPolicy.PREFERRED),
            override_affinity=read("GPUNUMA_OVERRIDE", lambda: _flag(env, "GPUNUMA_OVERRIDE", False), False),
            spread_unknown=read("GPUNUMA_SPREAD", lambda: _flag(env, "GPUNUMA_SPREAD", False), False),
            share=read("GPUNUMA_SHARE", lambda: _share(env), None),
            reserve=read("GPUNUMA_RESERVE", lambda: _reserve(env), 0),
        )
        required = read("GPUNUMA_REQUIRE", lambda: _require(env), cast("bool | str", False))
        settings = cls(
            enabled=read("GPUNUMA_BIND", lambda: _flag(env, "GPUNUMA_BIND", True), True),
            strict=read("GPUNUMA_STRICT", lambda: _flag(env, "GPUNUMA_STRICT", False), False),
            source=read("GPUNUMA_SOURCE", lambda: _source(env), "auto"),
            policy=policy,
            require=required is not False,
            require_local=required == "local",
            child_env=read("GPUNUMA_CHILD_ENV", lambda: _flag(env, "GPUNUMA_CHILD_ENV", True), True),
            simulate=None if "GPUNUMA_SIMULATE" in ignore else (env.get("GPUNUMA_SIMULATE", "").strip() or None),
            problems=tuple(problems),
        )
        if problems:
            if settings.strict if strict is None else strict:
                raise SettingsError("; ".join(problems))
            for problem in problems if warn else ():
                logger.warning("gpunuma: %s; using the default (best-effort mode)", problem)
        return settings


def _require(env: Mapping[str, str]) -> bool | str:
    """``GPUNUMA_REQUIRE``: a flag, or ``local`` (required, and on the GPU's own node)."""
    if env.get("GPUNUMA_REQUIRE", "").strip().lower() == "local":
        return "local"
    try:
        return _flag(env, "GPUNUMA_REQUIRE", False)
    except SettingsError:
        raise SettingsError(f"GPUNUMA_REQUIRE={_shown(env['GPUNUMA_REQUIRE'])}: expected 1/0 (or true/false, yes/no, "
                            "on/off) or local") from None


def _source(env: Mapping[str, str]) -> str:
    raw = env.get("GPUNUMA_SOURCE", "")
    source = raw.strip().lower() or "auto"
    if source not in SOURCE_NAMES:  # the message quotes the value as it was set, not as it was lowered
        raise SettingsError(f"GPUNUMA_SOURCE={_shown(raw)}: expected one of {', '.join(SOURCE_NAMES)}")
    return source


def _shown(raw: str) -> str:
    """A variable's value for a message: quoted, and cut short when it is huge."""
    return repr(raw if len(raw) <= 60 else raw[:60] + "...")


def _ray_in_this_process() -> Any | None:
    # Only a Ray that this process already imported and initialised counts: never import it here.
    ray = sys.modules.get("ray")
    if ray is None:
        return None
    try:
        return ray if ray.is_initialized() else None
    except AttributeError:
        return None


def is_ray_worker(ray: Any) -> bool:
    """Whether this process is a Ray worker (a task or an actor), not the driver that started Ray.

    A driver's GPUs come from its own environment; a worker's are exactly those Ray assigned it.
    """
    try:
        return bool(ray.get_runtime_context().worker.mode == ray.WORKER_MODE)
    except AttributeError:  # a Ray without the worker mode on its runtime context: cannot tell, say driver
        return False


def in_ray_worker() -> bool:
    """Whether this process is a Ray worker that already imported and initialised Ray (never imports it)."""
    found = _ray_in_this_process()
    return found is not None and is_ray_worker(found)


def read_gpu_environment(
    env: Mapping[str, str] | None = None, ray: RayLike | None = None, *, ask_ray: bool = True
) -> GpuEnvironment:
    """The GPU visibility variables of ``env`` (default ``os.environ``), ``LOCAL_RANK``, and the GPUs Ray assigned.

    ``ray`` is the Ray API of a Ray worker (its ``get_gpu_ids()`` are the worker's whole assignment);
    left out, the Ray this process initialised counts when this process is a Ray worker. ``ask_ray=False``
    (a caller that names its GPUs explicitly) leaves Ray unasked.
    """
    environ = environment(env)
    if ray is not None and not callable(getattr(ray, "get_gpu_ids", None)):
        raise GpuResolutionError(f"ray={ray!r:.80}: expected the ray module (or an object with get_gpu_ids())",
                                 variable="ray")
    if not ask_ray:
        return GpuEnvironment.from_mapping(environ)
    api: Any = ray
    if api is None:
        found = _ray_in_this_process()
        api = found if found is not None and is_ray_worker(found) else None
    if api is None:
        return GpuEnvironment.from_mapping(environ)
    return GpuEnvironment.from_mapping(environ, tuple(id_list(api.get_gpu_ids(), "ray") or ()), ray_worker=True)


def environment(env: object) -> Mapping[str, str]:
    """The environment a caller passed (``env=``), checked; None is this process's (``os.environ``).

    Anything but a mapping of ``str`` to ``str`` is a :class:`SettingsError` naming ``env`` (and the entry):
    a programming error, raised whatever the mode, as ``subprocess`` refuses such an environment.
    """
    if env is None:
        return os.environ
    items = getattr(env, "items", None)
    if not callable(items) or not callable(getattr(env, "get", None)):
        raise SettingsError(f"env={env!r:.80}: expected a mapping of variable names to values (str to str)")
    for name, value in items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise SettingsError(
                f"env[{name!r:.60}]={value!r:.60}: expected str to str, got {type(name).__name__} to "
                f"{type(value).__name__}"
            )
    return env  # type: ignore[return-value]


def runtime_directory(env: Mapping[str, str] | None = None) -> str | None:
    """The session's private folder, ``$XDG_RUNTIME_DIR`` of ``env`` (default ``os.environ``), when it is set to an
    absolute path; else None."""
    folder = (os.environ if env is None else env).get("XDG_RUNTIME_DIR", "")
    return folder if os.path.isabs(folder) else None


#: The binding gpunuma applied before it exec'd this program (:func:`gpunuma.core.rebind.format_record`).
OWN_BINDING = "GPUNUMA_OWN"


def worker_rank(env: Mapping[str, str] | None = None) -> str | None:
    """This worker's rank as launchers set it (``RANK``, else ``LOCAL_RANK``), for the label of its lines."""
    environ = os.environ if env is None else env
    return environ.get("RANK") or environ.get("LOCAL_RANK") or None


def ray_address(env: Mapping[str, str] | None = None) -> str:
    """The Ray cluster a driver of gpunuma's joins: ``RAY_ADDRESS`` of ``env`` (default ``os.environ``), else ``auto``
    (the cluster this host runs). Never empty: an empty address would make ``ray.init`` start a new cluster."""
    return (os.environ if env is None else env).get("RAY_ADDRESS", "").strip() or "auto"


def inherited_own_binding(env: Mapping[str, str] | None = None) -> OwnBinding | None:
    """The record of the binding a gpunuma launcher applied before it exec'd this process; None when there is
    none or it is malformed (then the inherited affinity reads as anyone else's narrowing)."""
    text = (os.environ if env is None else env).get(OWN_BINDING)
    return parse_record(text) if text else None


def hand_down_own_binding(text: str | None) -> None:
    """Tell a program about to be exec'd which binding is gpunuma's own: set, replaced or removed."""
    if text is None:
        os.environ.pop(OWN_BINDING, None)
    else:
        os.environ[OWN_BINDING] = text


def hand_down(variables: Mapping[str, str]) -> None:
    """Add ``variables`` to this process's environment for its children, never overwriting one already set."""
    os.environ.update(fill_in(os.environ, variables))
