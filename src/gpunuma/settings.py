"""Configuration and the environment edge: the one place that reads the process environment.

:func:`configure` decides every switch of a binding into one frozen :class:`Options`, with one rule:
an explicit argument wins over a command-line flag, a flag over its ``GPUNUMA_*`` variable, a variable
over the default. :func:`read_gpu_environment` reads the GPU visibility variables and Ray's assignment
into a :class:`~gpunuma.core.identity.GpuEnvironment` value, which the pure resolution code receives.

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
                       or a snapshot path: read it through the
                       ``simulated`` source and bind through its
                       simulated kernel (CI)
``GPUNUMA_MIGRATE``    ``1`` moves the pages the process already    ``0``
                       has to the bound memory nodes after
                       binding (``migrate_pages(2)``)
=====================  ==========================================  =================

A value gpunuma does not understand is the same everywhere: in strict mode a
:class:`~gpunuma.errors.SettingsError`; in best-effort mode a warning, the default standing, and a reason of
code ``setting_not_understood`` in :attr:`Options.problems`. A bad command-line flag is always an error: the
user has just typed it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

from gpunuma.core.childenv import fill_in
from gpunuma.core.filetree import FileTree
from gpunuma.core.identity import GpuEnvironment, id_list
from gpunuma.core.numbers import decimal
from gpunuma.core.policy import CpuScope, Fallback, MemoryPolicy, Policy, Share
from gpunuma.core.ports import Binder, RayLike, TopologySource
from gpunuma.core.reasons import Reason
from gpunuma.core.rebind import OwnBinding, parse_record
from gpunuma.errors import GpuResolutionError, PolicyError, SettingsError, UnknownSourceError
from gpunuma.registry import SOURCE_NAMES

logger = logging.getLogger(__name__)

__all__ = [
    "CapturedTree", "Options", "Simulated", "configure", "hand_down", "in_ray_worker", "is_ray_worker",
    "read_gpu_environment",
]


# -- the machine the sources read ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CapturedTree:
    """A captured host's files, opened once (``--root PATH``, :func:`gpunuma.tools.archive.open_tree`): ``tree``
    holds ``sys/`` (and ``proc/``) as the kernel showed them, in memory or as a folder of this host read in place.
    The sources read it instead of this machine's files; this machine's NVML describes none of it.

    A tree in memory is rooted at the path the user gave, then ``:`` and the folder in the archive that holds
    ``sys/`` (``host.tar.gz:/host``), so its files are named as they are in the archive, never as this machine's.
    """

    tree: FileTree | str
    #: The path the user gave (a folder or an archive).
    origin: str = ""
    archive: bool = False
    #: What reading left out and why (links leaving the tree, device files...): reasons of code
    #: ``archive_members_skipped`` (values ``count``, ``why``: the ``archive_*`` reason, ``example``).
    notes: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class Simulated:
    """A simulated machine: a catalogue name (``gpunuma machines``) or a captured host's snapshot path.

    The registry's ``simulated`` source reads it (through the chosen source, so the production parsing runs),
    and the binding goes through its simulated kernel, so nothing on this machine changes.
    """

    name: str


# -- the one configuration value -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Options:
    """How to bind, decided once by :func:`configure`: the adapters, the machine, the policy and the switches.

    ``source``/``binder`` are registry names or adapter instances (``binder=None``: libnuma, else raw
    syscalls). ``machine`` is what named sources read: this machine (None), a :class:`CapturedTree` or a
    :class:`Simulated` machine. ``enabled=False`` (``GPUNUMA_BIND=0``) swaps in the no-op binder whatever was
    given. ``require`` raises :class:`~gpunuma.errors.NotBoundError` when nothing gets bound; ``require_local``
    also when the binding would not be on the GPU's own node (the plan's ``elsewhere``), binding nothing then.
    ``problems`` are the values not understood and replaced by their defaults (best-effort mode).
    """

    source: str | TopologySource = "auto"
    binder: str | Binder | None = None
    machine: CapturedTree | Simulated | None = None
    policy: Policy = Policy()
    strict: bool = False
    enabled: bool = True
    require: bool = False
    require_local: bool = False
    #: Hand the binding's environment to the children a launcher starts (``GPUNUMA_CHILD_ENV``).
    child_env: bool = True
    #: Move the process's existing pages to the bound memory nodes after a binding that holds (``GPUNUMA_MIGRATE``).
    migrate: bool = False
    label: str | None = None
    problems: tuple[Reason, ...] = ()

    @property
    def method(self) -> str:
        """The name reports give the binder before it is built."""
        if not self.enabled:
            return "noop"
        if self.binder is None:
            return "libnuma"
        return self.binder if isinstance(self.binder, str) else str(getattr(self.binder, "name", "?"))


# -- reading one value -------------------------------------------------------------------------------
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _flag(text: str) -> bool:
    value = text.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def _choice(enum: type[Enum]) -> Callable[[str], Enum]:
    def read(text: str) -> Enum:
        try:
            return enum(text.lower())
        except ValueError:
            raise ValueError(f"expected one of {', '.join(str(member.value) for member in enum)}") from None

    return read


def _source(text: str) -> str:
    if text.lower() not in SOURCE_NAMES:
        raise ValueError(f"expected one of {', '.join(SOURCE_NAMES)}")
    return text.lower()


def _require(text: str) -> bool | str:
    """``GPUNUMA_REQUIRE``: a flag, or ``local`` (required, and on the GPU's own node)."""
    if text.lower() == "local":
        return "local"
    try:
        return _flag(text)
    except ValueError:
        raise ValueError("expected 1/0 (or true/false, yes/no, on/off) or local") from None


def _cores(text: str) -> int:
    cores = decimal(text) if len(text) <= 6 else None
    if cores is None:
        raise ValueError("expected a whole number of cores, 0 or more")
    return cores


@dataclass(frozen=True, slots=True)
class Setting:
    """One switch: the field of :class:`Options` (or of its :class:`Policy`) it sets, its variable and flag,
    how its text is read (``ValueError`` saying what was expected), and its default."""

    name: str
    variable: str | None
    flag: str | None
    read: Callable[[str], Any]
    default: Any
    #: A switch of binding: commands that bind nothing (``gpunuma topo``, ``check``) neither read nor check it.
    binding: bool = True


#: Every switch, in the order they are decided (and their problems listed).
SETTINGS = (
    Setting("enabled", "GPUNUMA_BIND", None, _flag, True),
    Setting("strict", "GPUNUMA_STRICT", "--strict", _flag, False, binding=False),
    Setting("source", "GPUNUMA_SOURCE", "--source", _source, "auto", binding=False),
    Setting("machine", "GPUNUMA_SIMULATE", "--simulate", Simulated, None, binding=False),
    Setting("require", "GPUNUMA_REQUIRE", None, _require, False),
    Setting("child_env", "GPUNUMA_CHILD_ENV", None, _flag, True),
    Setting("migrate", "GPUNUMA_MIGRATE", None, _flag, False),
    Setting("cpu_scope", "GPUNUMA_CPU_SCOPE", "--scope", _choice(CpuScope), CpuScope.NODE),
    Setting("memory", "GPUNUMA_MEMORY", "--memory", _choice(MemoryPolicy), MemoryPolicy.PREFERRED),
    Setting("on_disallowed", None, "--on-disallowed", _choice(Fallback), Fallback.NEAREST),
    Setting("override_affinity", "GPUNUMA_OVERRIDE", "--override-affinity", _flag, False),
    Setting("spread_unknown", "GPUNUMA_SPREAD", "--spread-unknown", _flag, False),
    Setting("share", "GPUNUMA_SHARE", "--share", Share.parse, None),
    Setting("reserve", "GPUNUMA_RESERVE", "--reserve", _cores, 0),
)
#: The switches that make up a :class:`Policy`: a caller's own policy gives them all.
POLICY_FIELDS = tuple(item.name for item in fields(Policy))


def configure(
    env: Mapping[str, str] | None = None,
    *,
    flags: Mapping[str, object] | None = None,
    binding: bool = True,
    warn: bool = True,
    source: str | TopologySource | None = None,
    binder: str | Binder | None = None,
    machine: CapturedTree | Simulated | None = None,
    policy: Policy | None = None,
    strict: bool | None = None,
    require: bool | None = None,
    require_local: bool | None = None,
    child_env: bool | None = None,
    label: str | None = None,
    share: Share | None = None,
    reserve: int | None = None,
    migrate: bool | None = None,
) -> Options:
    """The one :class:`Options` of a call: each switch from its explicit argument, else its command-line flag
    (``flags``, by :data:`SETTINGS` name: text, or a value the parser already made), else its ``GPUNUMA_*``
    variable in ``env`` (default ``os.environ``), else its default. None means not given.

    A value that decides a switch is the only one read: a variable a flag or an argument replaces is not read
    at all, so a bad value there is no mistake. ``policy`` gives every policy switch; ``share``/``reserve`` give
    one (a check of a process started with ``--share``); ``require_local=True`` is ``require`` on the GPU's own node
    (``GPUNUMA_REQUIRE=local``). ``binding=False`` (a command that binds nothing) reads
    no switch of binding. A bad flag raises :class:`~gpunuma.errors.SettingsError`; a bad variable raises it in
    strict mode, else it logs a warning (unless ``warn=False``: another process's environment) and the default
    stands, said in :attr:`Options.problems`.
    """
    check_arguments(
        source=source, binder=binder, policy=policy, strict=strict, require=require, label=label,
        require_local=require_local, child_env=child_env, migrate=migrate,
    )
    env = environment(env)
    given: dict[str, object] = {name: getattr(policy, name) for name in POLICY_FIELDS} if policy is not None else {}
    # require_local is require on the GPU's own node: either given decides both.
    required = "local" if require_local else None if require is None and require_local is None else bool(require)
    explicit = {"source": source, "machine": machine, "strict": strict, "require": required,
                "child_env": child_env, "share": share, "reserve": reserve, "migrate": migrate}
    given.update((name, value) for name, value in explicit.items() if value is not None)
    problems: list[Reason] = []
    values = {item.name: _decide(item, given, flags or {}, env, binding, problems) for item in SETTINGS}
    if problems:
        if values["strict"]:
            raise SettingsError("; ".join(problems))
        for problem in problems if warn else ():
            logger.warning("%s; using the default (best-effort mode)", problem)
    return Options(
        source=values["source"],
        binder=binder,
        machine=values["machine"],
        policy=Policy(**{name: values[name] for name in POLICY_FIELDS}),
        strict=values["strict"],
        enabled=values["enabled"],
        require=values["require"] is not False,
        require_local=values["require"] == "local",
        child_env=values["child_env"],
        migrate=values["migrate"],
        label=label,
        problems=tuple(problems),
    )


def _decide(
    setting: Setting,
    given: Mapping[str, object],
    flags: Mapping[str, object],
    env: Mapping[str, str],
    binding: bool,
    problems: list[Reason],
) -> Any:
    """One switch: explicit argument > command-line flag > variable > default."""
    if setting.name in given:
        return given[setting.name]
    flag = flags.get(setting.name)
    if flag is not None and flag is not False:
        if not isinstance(flag, str):
            return flag
        try:
            return setting.read(flag.strip())
        except ValueError as err:
            raise SettingsError(f"argument {setting.flag}: {err}") from None
    raw = env.get(setting.variable) if setting.variable is not None and (binding or not setting.binding) else None
    if raw is None or not raw.strip():
        return setting.default
    try:
        return setting.read(raw.strip())
    except ValueError as err:
        problem = f"{setting.variable}={_shown(raw)}: {err}"
        problems.append(Reason.of("setting_not_understood", variable=setting.variable, problem=problem))
        return setting.default


def check_arguments(
    *,
    source: object = None,
    binder: object = None,
    policy: object = None,
    strict: object = None,
    require: object = None,
    label: object = None,
    root: object = "/",
    require_local: object = None,
    child_env: object = None,
    migrate: object = None,
) -> None:
    """A wrong kind of argument is a typed error naming it, before anything reads it (``policy="exclusive"``).

    The entry points' keyword arguments have their checks here: adapters (:class:`UnknownSourceError`), the
    policy (:class:`PolicyError`), the switches, the label and the root (:class:`SettingsError`). A wrong kind is
    a programming error: it raises whatever the mode, where a problem of the machine is best-effort.
    """
    switches = (("strict", strict), ("require_bound", require), ("require_local", require_local),
                ("child_env", child_env), ("migrate", migrate))
    for name, switch in switches:
        if switch is not None and not isinstance(switch, bool):
            raise SettingsError(f"{name}={switch!r:.80}: expected True, False or None (None: its GPUNUMA_* variable)")
    if label is not None and not isinstance(label, str):
        raise SettingsError(f"label={label!r:.80}: expected text naming this process in the log, or None")
    if not isinstance(root, (str, os.PathLike, FileTree, CapturedTree)):
        raise SettingsError(f"root={root!r:.80}: expected a path, such as '/' (this machine), or a captured tree")
    if policy is not None and not isinstance(policy, Policy):
        raise PolicyError(f"policy={policy!r:.80}: expected a Policy, e.g. Policy(cpu_scope='exclusive')")
    if source is not None and not isinstance(source, str) and not (
        callable(getattr(source, "read", None)) and callable(getattr(source, "allowed", None))
    ):
        raise UnknownSourceError(f"source={source!r:.80}: expected a name or an object with read() and allowed()")
    if binder is not None and not isinstance(binder, str) and not callable(getattr(binder, "apply", None)):
        raise UnknownSourceError(f"binder={binder!r:.80}: expected a binder name or an object with apply(plan)")


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
