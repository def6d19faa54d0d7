"""The environment a bound process hands its children: thread counts, CPU places, nearest NICs.

Pure: the values come from a plan or a report; :func:`fill_in` adds them to an environment without
overwriting a variable the user already set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.model import Nic

#: Every variable :func:`child_env` may set, in the order it sets them.
VARIABLES = (
    "OMP_NUM_THREADS",
    "OMP_PLACES",
    "OMP_PROC_BIND",
    "GPUNUMA_NODE",
    "GPUNUMA_CPUS",
    "NCCL_IB_HCA",
    "UCX_NET_DEVICES",
)


def omp_places(cpus: CpuSet) -> str:
    """One OpenMP place per CPU, runs written as ``{first}:count``: ``{0}:56,{112}:56``."""
    runs = cpus.ranges()
    return ",".join(f"{{{first}}}" if first == last else f"{{{first}}}:{last - first + 1}" for first, last in runs)


def _ports(nic: Nic) -> list[str]:
    return [f"{nic.name}:{port}" for port in nic.ports] or [nic.name]


def child_env(
    cpus: CpuSet, nodes: Sequence[int], nics: Sequence[Nic], threads: int | None = None, places: CpuSet | None = None
) -> dict[str, str]:
    """The variables for a child bound to ``cpus`` on ``nodes`` whose GPUs are nearest ``nics``.

    CPU variables only when there are CPUs (a plan that binds); NIC variables only when there are NICs.
    ``OMP_NUM_THREADS`` is ``threads`` (this process's part of CPUs other GPUs' processes share), else one per CPU.
    ``OMP_PLACES`` (one place per CPU) and ``OMP_PROC_BIND=close`` cover ``places``, this process's own part of
    ``cpus`` (None: all of them), so processes sharing a node never pack their threads onto the same CPUs;
    empty ``places`` (siblings unknown) hands down neither and leaves OpenMP's threads free within ``cpus``.
    ``NCCL_IB_HCA`` starts with ``=`` so NCCL matches names exactly (``mlx5_1`` is not ``mlx5_10``);
    ``UCX_NET_DEVICES`` names each ``device:port``.
    """
    env: dict[str, str] = {}
    if cpus:
        own = cpus if places is None else places & cpus
        count = len(own) if own else len(cpus)
        env["OMP_NUM_THREADS"] = str(min(threads, count) if threads else count)
        if own:
            env["OMP_PLACES"] = omp_places(own)
            env["OMP_PROC_BIND"] = "close"
        if nodes:
            env["GPUNUMA_NODE"] = ",".join(str(node) for node in nodes)
        env["GPUNUMA_CPUS"] = cpus.to_list()
    if nics:
        ports = [port for nic in nics for port in _ports(nic)]
        env["NCCL_IB_HCA"] = "=" + ",".join(ports)
        env["UCX_NET_DEVICES"] = ",".join(ports)
    return env


def fill_in(environ: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``extra`` that ``environ`` does not set yet: a user's own value always wins."""
    return {name: value for name, value in extra.items() if name not in environ}
