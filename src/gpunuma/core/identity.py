"""Which physical GPUs this process owns, from explicit ids, Ray, a launcher's rank, or the visibility variables.

Physical ids are :attr:`gpunuma.core.model.Gpu.index` values (NVML / ``nvidia-smi`` numbering, which
lists GPUs in PCI bus order). Local ids are the ``cuda:N`` ordinals the process sees after
``CUDA_VISIBLE_DEVICES``. In order: explicit physical ids, explicit local ids / UUIDs / bus ids, Ray's
assignment (a Ray worker that Ray gave no GPU owns none), ``LOCAL_RANK`` when the process sees several
GPUs (torchrun's convention: worker ``LOCAL_RANK`` drives ``cuda:LOCAL_RANK``), then every visible GPU.

CUDA device order: with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` CUDA numbers GPUs by ascending PCI bus
id. The default, ``FASTEST_FIRST``, is a heuristic; on a machine whose GPUs are all the same
model it also yields bus order, which is what gpunuma assumes. When the GPUs differ in name
and the order is not ``PCI_BUS_ID``, gpunuma still uses bus order and says so in the resolution's
warnings (which the entry points log: nothing here logs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from gpunuma.core.exposure import NVIDIA_VISIBLE_DEVICES
from gpunuma.core.model import Gpu, Topology
from gpunuma.core.numbers import decimal
from gpunuma.core.pci import BusId, bus_order
from gpunuma.core.reasons import Reason
from gpunuma.errors import GpuResolutionError

CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
CUDA_DEVICE_ORDER = "CUDA_DEVICE_ORDER"
ROCR_VISIBLE_DEVICES = "ROCR_VISIBLE_DEVICES"
HIP_VISIBLE_DEVICES = "HIP_VISIBLE_DEVICES"
ZE_AFFINITY_MASK = "ZE_AFFINITY_MASK"
RAY_NOSET_CVD = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"
LOCAL_RANK = "LOCAL_RANK"
LOCAL_WORLD_SIZE = "LOCAL_WORLD_SIZE"


@dataclass(frozen=True)
class Vendor:
    """A GPU vendor and the variables that say which of its GPUs a process sees."""

    name: str
    #: The process's own variables, in the order its runtime applies them (AMD's HIP reads
    #: ``CUDA_VISIBLE_DEVICES`` where ``HIP_VISIBLE_DEVICES`` is unset).
    variables: tuple[str, ...]
    #: The container runtime's variable: the host GPUs a container was given (None: the vendor has none).
    container: str | None = None


#: Every vendor gpunuma resolves GPUs of, in the order a machine with several vendors' GPUs is read.
VENDORS = (
    Vendor("nvidia", (CUDA_VISIBLE_DEVICES,), container=NVIDIA_VISIBLE_DEVICES),
    Vendor("amd", (ROCR_VISIBLE_DEVICES, HIP_VISIBLE_DEVICES)),
    Vendor("intel", (ZE_AFFINITY_MASK,)),
)
#: Every variable that chooses the GPUs a process sees -> the vendor whose runtime reads it.
VENDOR_OF = {variable: vendor.name for vendor in VENDORS for variable in vendor.variables}
#: Every variable that chooses the GPUs a process sees, each once.
VISIBILITY_VARIABLES = tuple(VENDOR_OF)

#: Values that mean "no GPU" rather than a mistake (Slurm writes ``NoDevFiles``).
_NO_GPU_VALUES = frozenset({"-1", "nodevfiles"})

_UUID_CHARS = frozenset("0123456789abcdefABCDEF-")


#: More GPU ids than any process can own (a machine's GPUs and their MIG instances): a longer list is misuse.
MAX_IDS = 1024


def id_list(given: object, variable: str = "gpus") -> list[int | str] | None:
    """One GPU id or several, as a list (None stays None), each an ``int`` or a ``str``.

    ``variable`` names the argument (``gpus``, ``physical``) in the :class:`~gpunuma.errors.GpuResolutionError`
    that anything else is: a ``float``, ``bool``, ``bytes`` or ``None`` id (iterating ``b"5"`` would give GPU 53),
    or more than :data:`MAX_IDS` ids (``range(10**12)`` is refused after reading that many, never listed).
    A wrong type is a programming error, raised whatever the mode; an id of the right type that names no GPU is
    the resolution's to judge.
    """
    if given is None:
        return None
    if isinstance(given, (str, bytes)) or not hasattr(given, "__iter__"):
        items: list[object] = [given]
    elif hasattr(given, "keys"):  # a mapping: its keys are no list of GPUs anyone meant
        raise GpuResolutionError(f"{variable}={_cut(given)}: a mapping is not a GPU id or a list of them",
                                 variable=variable, value=_cut(given))
    else:
        from itertools import islice

        try:
            items = list(islice(given, MAX_IDS + 1))
        except TypeError as err:  # __iter__ that is no iterator
            raise GpuResolutionError(f"{variable}={_cut(given)}: not a GPU id or a list of them",
                                     variable=variable, value=_cut(given)) from err
        if len(items) > MAX_IDS:
            raise GpuResolutionError(f"{variable}={_cut(given)}: more than {MAX_IDS} GPU ids", variable=variable,
                                     value=_cut(given))
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise GpuResolutionError(
                f"{variable}={_cut(given)}: {_cut(repr(item))} ({type(item).__name__}) is not a GPU id; expected an "
                "int index, or a str index, UUID or bus id", variable=variable, value=_cut(item),
            )
    return items  # type: ignore[return-value]


def _cut(value: object, most: int = 80) -> str:
    """A value for a message: a huge environment string is cut short, so one bad variable cannot flood a log."""
    text = str(value)
    return text if len(text) <= most else f"{text[:most]}... ({len(text)} characters)"


def _is_decimal(text: str) -> bool:
    """An ASCII decimal integer such as ``3`` or ``-1`` (what the runtime's ``strtol`` reads as an index)."""
    return decimal(text, signed=True) is not None


def _legacy_mig_parent(entry: str) -> str | None:
    """The parent ``GPU-`` UUID of a legacy ``MIG-GPU-<uuid>/<gi>/<ci>`` entry, else None."""
    if not entry.startswith("MIG-GPU-"):
        return None
    parent, *numbers = entry[4:].split("/")
    if len(numbers) != 2 or not all(decimal(number) is not None for number in numbers):
        return None
    return parent if len(parent) > 4 and _UUID_CHARS.issuperset(parent[4:]) else None


@dataclass(frozen=True, slots=True)
class GpuEnvironment:
    """What the process environment says about GPU ownership, read at the edge and passed in as a value.

    The visibility variables as set (None: unset), the GPU ids Ray assigned to this worker, whether
    the process is a Ray worker at all, and the launcher's ``LOCAL_RANK``/``LOCAL_WORLD_SIZE``.
    :func:`gpunuma.settings.read_gpu_environment` builds it from the process.
    """

    cuda_visible_devices: str | None = None
    rocr_visible_devices: str | None = None
    hip_visible_devices: str | None = None
    ze_affinity_mask: str | None = None
    cuda_device_order: str | None = None
    #: ``RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES=1``: Ray leaves ``CUDA_VISIBLE_DEVICES`` alone.
    ray_noset_visible_devices: bool = False
    #: ``ray.get_gpu_ids()`` in this worker: physical ids (ints or UUID strings).
    ray_gpu_ids: tuple[int | str, ...] = ()
    #: ``NVIDIA_VISIBLE_DEVICES``: the host GPUs a container was given (read only when its files say nothing).
    nvidia_visible_devices: str | None = None
    #: The process is a Ray worker (a task or an actor): its GPUs are exactly ``ray_gpu_ids``, so
    #: none means it holds none (``num_gpus=0``), whatever ``CUDA_VISIBLE_DEVICES`` says.
    ray_worker: bool = False
    #: ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` as a launcher (torchrun) set them; None when unset.
    local_rank: str | None = None
    local_world_size: str | None = None

    @classmethod
    def from_mapping(
        cls, env: Mapping[str, str], ray_gpu_ids: Sequence[int | str] = (), *, ray_worker: bool = False
    ) -> GpuEnvironment:
        """The GPU variables of an environment mapping (``os.environ``, ``/proc/<pid>/environ``, a test dict)."""
        return cls(
            cuda_visible_devices=env.get(CUDA_VISIBLE_DEVICES),
            rocr_visible_devices=env.get(ROCR_VISIBLE_DEVICES),
            hip_visible_devices=env.get(HIP_VISIBLE_DEVICES),
            ze_affinity_mask=env.get(ZE_AFFINITY_MASK),
            cuda_device_order=env.get(CUDA_DEVICE_ORDER),
            ray_noset_visible_devices=env.get(RAY_NOSET_CVD, "") == "1",
            ray_gpu_ids=tuple(ray_gpu_ids),
            nvidia_visible_devices=env.get(NVIDIA_VISIBLE_DEVICES),
            ray_worker=ray_worker or bool(ray_gpu_ids),
            local_rank=env.get(LOCAL_RANK),
            local_world_size=env.get(LOCAL_WORLD_SIZE),
        )

    @property
    def names_mig(self) -> bool:
        """Whether a visibility variable or Ray's ids name a MIG instance (``MIG-...``): only NVML knows those."""
        texts = (self.cuda_visible_devices, self.nvidia_visible_devices, *map(str, self.ray_gpu_ids))
        return any(text is not None and "MIG-" in text.upper() for text in texts)

    def get(self, variable: str) -> str | None:
        """The value of one visibility variable (``CUDA_VISIBLE_DEVICES``...), None when unset."""
        return {
            CUDA_VISIBLE_DEVICES: self.cuda_visible_devices,
            ROCR_VISIBLE_DEVICES: self.rocr_visible_devices,
            HIP_VISIBLE_DEVICES: self.hip_visible_devices,
            ZE_AFFINITY_MASK: self.ze_affinity_mask,
            CUDA_DEVICE_ORDER: self.cuda_device_order,
        }.get(variable)


#: What the functions below accept: the value, or a plain mapping read as :meth:`GpuEnvironment.from_mapping`.
EnvironmentLike: TypeAlias = GpuEnvironment | Mapping[str, str]


def _environment(env: EnvironmentLike) -> GpuEnvironment:
    return env if isinstance(env, GpuEnvironment) else GpuEnvironment.from_mapping(env)


@dataclass(frozen=True, slots=True)
class Resolution:
    """The physical GPUs this process owns, where that came from, and what was odd on the way.

    ``reasons`` has one line per GPU (``GPU 6 (0000:c3:00.0) from CUDA_VISIBLE_DEVICES=GPU-...``).
    """

    gpus: tuple[int, ...]
    source: str
    reasons: tuple[Reason, ...]
    warnings: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class Visibility:
    """The physical GPUs the process sees, in local (``cuda:N``) order, and how that was read."""

    gpus: tuple[int, ...]
    source: str
    #: ``VARIABLE=value`` text naming where the list came from, for reasons and errors.
    origin: str
    warnings: tuple[Reason, ...] = ()


# -- visibility -------------------------------------------------------------------------
def _vendor_gpus(topology: Topology) -> tuple[str, tuple[Gpu, ...]]:
    """The first vendor of :data:`VENDORS` with GPUs on the machine, and its GPUs in bus order (NVIDIA: none)."""
    for vendor in VENDORS:
        found = tuple(g for g in topology.gpus if g.vendor == vendor.name)
        if found:
            return vendor.name, tuple(sorted(found, key=lambda g: bus_order(g.pci_bus_id)))
    return "nvidia", ()


def _ze_devices(value: str) -> str:
    """``0.0,0.1,2`` -> ``0,2``: ZE_AFFINITY_MASK names tiles as ``device.tile``; a tile binds like its device."""
    devices: list[str] = []
    for entry in value.split(","):
        device = entry.strip().split(".", 1)[0]
        if device not in devices:
            devices.append(device)
    return ",".join(devices)


def _order_warning(gpus: Sequence[Gpu], env: GpuEnvironment) -> Reason | None:
    order = (env.cuda_device_order or "FASTEST_FIRST").strip().upper()
    names = {g.name for g in gpus if g.name}
    if order != "PCI_BUS_ID" and len(names) > 1:
        return Reason.of("device_order_mixed_models", order=order, models=", ".join(sorted(names)))
    return None


class _Unmatched(Exception):
    """An entry that names no GPU (CUDA stops reading the list there)."""


def _match_uuid(entry: str, gpus: Sequence[Gpu], variable: str, value: str) -> Gpu:
    """A ``GPU-`` UUID or unique prefix, or a ``MIG-`` UUID (current or legacy form) -> its GPU."""
    if any(g.uuid is None for g in gpus):
        advice = (
            "name AMD GPUs by index, as rocm-smi numbers them: gpunuma reads no AMD GPU UUIDs"
            if VENDOR_OF.get(variable) == "amd"
            else "read it with the nvml or auto source, or install the NVIDIA driver's procfs"
        )
        raise GpuResolutionError(
            f"{variable}={_cut(value)!r} names GPUs by UUID, but this topology has no UUIDs for every GPU ({advice})",
            variable=variable,
            value=value,
        )
    lowered = entry.lower()
    legacy = _legacy_mig_parent(entry)
    if legacy is not None:
        lowered = legacy.lower()
    if lowered.startswith("mig-"):
        hits = [g for g in gpus if any(m.uuid.lower().startswith(lowered) for m in g.mig_devices)]
        what = "MIG UUID"
    else:
        hits = [g for g in gpus if g.uuid is not None and g.uuid.lower().startswith(lowered)]
        exact = [g for g in hits if g.uuid is not None and g.uuid.lower() == lowered]
        hits = exact or hits
        what = "GPU UUID"
    if len(hits) > 1:
        labels = ", ".join(g.label for g in hits)
        raise GpuResolutionError(
            f"{variable}={_cut(value)!r}: {what} prefix {_cut(entry)!r} is ambiguous ({labels})",
            variable=variable,
            value=value,
        )
    if not hits:
        raise _Unmatched(f"unknown {what} {_cut(entry)!r}")
    return hits[0]


def _parse_list(
    value: str, variable: str, candidates: Sequence[Gpu], *, allow_uuid: bool
) -> tuple[tuple[Gpu, ...], tuple[Reason, ...]]:
    """Read a visibility list as the runtime does: the first entry that names no GPU ends it."""
    stripped = value.strip()
    if not stripped or stripped.lower() in _NO_GPU_VALUES:
        return (), ()
    chosen: list[Gpu] = []
    entries = [e.strip() for e in stripped.split(",")]
    for position, entry in enumerate(entries):
        try:
            if _is_decimal(entry):
                number = int(entry)
                if not 0 <= number < len(candidates):
                    raise _Unmatched(f"index {number} is not one of the {len(candidates)} GPUs")
                gpu = candidates[number]
            elif allow_uuid and entry.upper().startswith(("GPU-", "MIG-")):
                gpu = _match_uuid(entry, candidates, variable, value)
            else:
                raise _Unmatched(f"{_cut(entry)!r} is neither an index nor a GPU-/MIG- UUID")
            if gpu in chosen:
                raise _Unmatched(f"{gpu.label} is listed twice")
        except _Unmatched as err:
            if not chosen:
                raise GpuResolutionError(
                    f"{variable}={_cut(value)!r} names no GPU of this machine: {err}", variable=variable, value=value
                ) from None
            ignored = _cut(",".join(entries[position:]))
            warning = Reason.of("visible_list_truncated", variable=variable, value=_cut(value), problem=str(err),
                                ignored=ignored)
            return tuple(chosen), (warning,)
        chosen.append(gpu)
    return tuple(chosen), ()


def visible_gpus(topology: Topology, env: EnvironmentLike) -> Visibility:
    """The physical GPUs this process sees, ``visible.gpus[N]`` being ``cuda:N``.

    NVIDIA: ``CUDA_VISIBLE_DEVICES`` (indices, ``GPU-`` UUIDs and unique prefixes, ``MIG-``
    UUIDs mapped to their parent). AMD: ``ROCR_VISIBLE_DEVICES`` then ``HIP_VISIBLE_DEVICES``
    (or ``CUDA_VISIBLE_DEVICES``, which HIP also reads) over what ROCR left. Intel:
    ``ZE_AFFINITY_MASK`` (device indices in bus order; a ``device.tile`` entry counts as its
    device). Unset: all GPUs.
    """
    environ = _environment(env)
    vendor, gpus = _vendor_gpus(topology)
    warnings: list[Reason] = []
    if vendor == "intel":
        mask = environ.ze_affinity_mask
        if mask is None:
            return Visibility(tuple(g.index for g in gpus), "all", f"no {ZE_AFFINITY_MASK}")
        chosen, extra = _parse_list(_ze_devices(mask), ZE_AFFINITY_MASK, gpus, allow_uuid=False)
        return Visibility(tuple(g.index for g in chosen), ZE_AFFINITY_MASK, f"{ZE_AFFINITY_MASK}={mask}", extra)
    if vendor == "nvidia":
        order = _order_warning(gpus, environ)
        if order:
            warnings.append(order)
        value = environ.get(CUDA_VISIBLE_DEVICES)
        if value is None:
            return Visibility(tuple(g.index for g in gpus), "all", "no CUDA_VISIBLE_DEVICES", tuple(warnings))
        chosen, extra = _parse_list(value, CUDA_VISIBLE_DEVICES, gpus, allow_uuid=True)
        origin = f"{CUDA_VISIBLE_DEVICES}={value}"
        return Visibility(tuple(g.index for g in chosen), CUDA_VISIBLE_DEVICES, origin, (*warnings, *extra))
    origins: list[str] = []
    current = gpus
    hip_or_cuda = HIP_VISIBLE_DEVICES if environ.hip_visible_devices is not None else CUDA_VISIBLE_DEVICES
    for variable in (ROCR_VISIBLE_DEVICES, hip_or_cuda):
        value = environ.get(variable)
        if value is None:
            continue
        current, extra = _parse_list(value, variable, current, allow_uuid=True)
        warnings.extend(extra)
        origins.append(f"{variable}={value}")
    if not origins:
        return Visibility(tuple(g.index for g in current), "all", "no ROCR/HIP_VISIBLE_DEVICES", tuple(warnings))
    source = origins[-1].split("=", 1)[0]
    return Visibility(tuple(g.index for g in current), source, " then ".join(origins), tuple(warnings))


def local_to_physical(topology: Topology, local_index: int, env: EnvironmentLike) -> int:
    """The physical GPU index behind ``cuda:local_index`` in this process."""
    visible = visible_gpus(topology, env)
    if not 0 <= local_index < len(visible.gpus):
        variable = None if visible.source == "all" else visible.source
        value = None if variable is None else _environment(env).get(variable)
        raise GpuResolutionError(
            f"local GPU {local_index} does not exist: the process sees {len(visible.gpus)} GPU(s) "
            f"({visible.origin})",
            variable=variable,
            value=value,
        )
    return visible.gpus[local_index]


# -- explicit ids and Ray ---------------------------------------------------------------
def _by_string(topology: Topology, text: str, what: str) -> Gpu:
    """A GPU named by UUID (``GPU-``/``MIG-``, full or unique prefix; torch's bare form too) or bus id."""
    entry = text.strip()
    wanted = BusId.parse(entry)
    if wanted is not None:
        for gpu in topology.gpus:
            if BusId.parse(gpu.pci_bus_id) == wanted:
                return gpu
        raise GpuResolutionError(f"{what}: no GPU at PCI bus id {_cut(entry)!r}", variable=what, value=text)
    candidates = topology.gpus
    if not entry.upper().startswith(("GPU-", "MIG-")):
        entry = "GPU-" + entry  # torch's device UUID has no prefix
    try:
        return _match_uuid(entry, candidates, what, text)
    except _Unmatched as err:
        raise GpuResolutionError(f"{what}={_cut(text)!r}: {err}", variable=what, value=text) from None


def _physical_gpu(topology: Topology, physical: int, what: str, value: str) -> Gpu:
    gpu = topology.gpu(physical)
    if gpu is None:
        known = ",".join(str(g.index) for g in topology.gpus) or "none"
        raise GpuResolutionError(
            f"{what}={_cut(value)!r}: no physical GPU {physical} (GPUs: {known})", variable=what, value=value
        )
    return gpu


def _as_list(gpus: int | str | Sequence[int | str]) -> list[int | str]:
    if isinstance(gpus, (int, str)):
        return [gpus]
    return list(gpus)


def describe_resolution(
    topology: Topology,
    *,
    gpus: int | str | Sequence[int | str] | None = None,
    physical: int | str | Sequence[int | str] | None = None,
    env: EnvironmentLike,
) -> Resolution:
    """Resolve this process's GPUs and say why (the order is in the module docstring).

    ``physical`` holds physical ids (NVML / ``nvidia-smi`` numbering: ``ray.get_gpu_ids()`` under
    ``RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES``, NeMo RL's ``bind_to_gpu_numa(gpu_id)``). Ints in
    ``gpus`` (and decimal strings such as ``"3"``, and ``"cuda:N"``) are local ordinals mapped through
    the visibility list; other strings are UUIDs or PCI bus ids. Ray's ids (``env.ray_gpu_ids``) are
    physical ids. Nothing owned gives an empty ``gpus`` whose ``reasons`` say why, when it is known.
    """
    environ = _environment(env)
    if physical is not None:
        if gpus is not None:
            raise GpuResolutionError(
                f"gpus={gpus!r} and physical={physical!r}: name the GPU one way, not both", variable="physical"
            )
        return _physical(topology, _as_list(physical))
    if gpus is not None:
        return _explicit(topology, _as_list(gpus), environ)
    if environ.ray_gpu_ids:
        return _from_ray(topology, list(environ.ray_gpu_ids), environ)
    if environ.ray_worker:
        return Resolution((), "ray", (Reason.of("ray_worker_without_gpu"),))
    visible = visible_gpus(topology, environ)
    ignored: tuple[Reason, ...] = ()
    if environ.local_rank is not None and len(visible.gpus) > 1:
        ranked, ignored = _from_local_rank(topology, visible, environ)
        if ranked is not None:
            return ranked
    reasons = tuple(
        Reason.of("gpu_from_visibility", gpu=_label(topology, i), origin=visible.origin) for i in visible.gpus
    )
    return Resolution(visible.gpus, visible.source, reasons, (*visible.warnings, *ignored))


def resolve_gpus(
    topology: Topology,
    *,
    gpus: int | str | Sequence[int | str] | None = None,
    physical: int | str | Sequence[int | str] | None = None,
    env: EnvironmentLike,
) -> tuple[int, ...]:
    """The physical GPU indices this process owns (see :func:`describe_resolution`)."""
    return describe_resolution(topology, gpus=gpus, physical=physical, env=env).gpus


def _from_local_rank(
    topology: Topology, visible: Visibility, env: GpuEnvironment
) -> tuple[Resolution | None, tuple[Reason, ...]]:
    """The GPU ``cuda:LOCAL_RANK`` names, or None and why ``LOCAL_RANK`` is not used."""
    rank = (env.local_rank or "").strip()
    if (env.local_world_size or "").strip() == "1":
        return None, (Reason.of("local_rank_single_worker", rank=_cut(rank)),)
    if not _is_decimal(rank) or int(rank) < 0:
        return None, (Reason.of("local_rank_not_an_index", rank=_cut(rank)),)
    if int(rank) >= len(visible.gpus):
        return None, (Reason.of("local_rank_out_of_range", rank=rank, count=len(visible.gpus), origin=visible.origin),)
    gpu = visible.gpus[int(rank)]
    reason = Reason.of("gpu_from_local_rank", gpu=_label(topology, gpu), rank=rank, origin=visible.origin)
    return Resolution((gpu,), LOCAL_RANK, (reason,), visible.warnings), ()


def _physical(topology: Topology, items: list[int | str]) -> Resolution:
    """Physical ids as NVML and ``nvidia-smi`` number GPUs (PCI bus order), whatever is visible."""
    chosen: list[int] = []
    reasons: list[Reason] = []
    for item in items:
        text = str(item).strip()
        if isinstance(item, bool) or not _is_decimal(text):
            raise GpuResolutionError(
                f"physical={_cut(item)!r} is not a physical GPU index (nvidia-smi numbering)", variable="physical",
                value=str(item),
            )
        gpu = _physical_gpu(topology, int(text), "physical", text)
        if gpu.index not in chosen:
            chosen.append(gpu.index)
            reasons.append(Reason.of("gpu_physical", gpu=gpu.label, item=item))
    return Resolution(tuple(chosen), "physical", tuple(reasons))


def _label(topology: Topology, index: int) -> str:
    gpu = topology.gpu(index)
    return gpu.label if gpu is not None else f"GPU {index}"


def _local_ordinal(item: int | str) -> int | None:
    """The local ordinal an explicit id names (``3``, ``"3"``, ``"cuda:3"``), None for UUIDs and bus ids."""
    if isinstance(item, int):
        return item
    text = item.strip()
    # A decimal string is an index, never a UUID prefix: bind_to_gpu(os.environ["LOCAL_RANK"]) must work.
    if _is_decimal(text):
        return int(text)
    if text.startswith("cuda:") and decimal(text[5:]) is not None:
        return int(text[5:])
    return None


def _explicit(topology: Topology, items: list[int | str], env: GpuEnvironment) -> Resolution:
    chosen: list[int] = []
    reasons: list[Reason] = []
    warnings: tuple[Reason, ...] = ()
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, str)) or not str(item).strip():
            raise GpuResolutionError(
                f"gpus={_cut(item)!r} is not a GPU id: expected a local index, or a str index, UUID or bus id",
                variable="gpus", value=str(item),
            )
        local = _local_ordinal(item)
        if local is not None:
            visible = visible_gpus(topology, env)
            warnings = visible.warnings
            if not 0 <= local < len(visible.gpus):
                raise GpuResolutionError(
                    f"gpus={_cut(item)!r}: local GPU {local} does not exist; the process sees "
                    f"{len(visible.gpus)} GPU(s) ({visible.origin})",
                    variable="gpus" if visible.source == "all" else visible.source,
                    value=str(item) if visible.source == "all" else env.get(visible.source),
                )
            physical = visible.gpus[local]
            label = _label(topology, physical)
            if visible.source == "all":
                reasons.append(Reason.of("gpu_local_ordinal", gpu=label, item=item, local=local))
            else:
                reasons.append(
                    Reason.of("gpu_local_ordinal_through", gpu=label, item=item, local=local, origin=visible.origin)
                )
        else:
            gpu = _by_string(topology, str(item), "gpus")
            physical = gpu.index
            reasons.append(Reason.of("gpu_named", gpu=gpu.label, item=item))
        if physical not in chosen:
            chosen.append(physical)
    return Resolution(tuple(chosen), "explicit", tuple(reasons), warnings)


def _from_ray(topology: Topology, ids: list[int | str], env: GpuEnvironment) -> Resolution:
    chosen: list[int] = []
    reasons: list[Reason] = []
    code = "gpu_from_ray_noset" if env.ray_noset_visible_devices else "gpu_from_ray"
    shown = str([str(i) for i in ids])
    for raw in ids:
        text = str(raw).strip()
        if _is_decimal(text):
            gpu = _physical_gpu(topology, int(text), "ray.get_gpu_ids()", text)
        else:
            gpu = _by_string(topology, text, "ray.get_gpu_ids()")
        if gpu.index not in chosen:
            chosen.append(gpu.index)
            reasons.append(Reason.of(code, gpu=gpu.label, ids=shown))
    return Resolution(tuple(chosen), "ray", tuple(reasons))
