"""The last-level cache domains, from ``/sys/devices/system/cpu/cpuN/cache/indexM/{level,shared_cpu_list}``.

One ``shared_cpu_list`` read per domain, not per CPU: the ``indexM`` holding the highest level is
found once (on the first online CPU), and CPUs already covered by a domain are skipped. A 384-CPU
EPYC host with 24 CCDs costs about 30 reads.
"""

from __future__ import annotations

from gpunuma.adapters.files import HOST
from gpunuma.adapters.procfs import parse_cpulist, parse_int, read_value
from gpunuma.core.cpuset import CpuSet
from gpunuma.core.model import CacheDomain
from gpunuma.core.ports import KernelFiles
from gpunuma.core.reasons import Reason


def _last_level_index(cache_dir: str, files: KernelFiles) -> tuple[str, int] | None:
    """``("index3", 3)``: the cache index directory of the highest level under ``cache_dir``."""
    listed = files.listdir(cache_dir)
    if listed is None:
        return None
    names = [name for name in listed if name.startswith("index")]
    best: tuple[str, int] | None = None
    for name in sorted(names):
        path = f"{cache_dir}/{name}/level"
        text = read_value(path, files)
        if text is None:
            continue
        level = parse_int(path, text)
        if best is None or level > best[1]:
            best = (name, level)
    return best


def read_last_level_caches(
    cpu_dir: str, online: CpuSet, notes: list[str], files: KernelFiles = HOST
) -> tuple[CacheDomain, ...]:
    """The domains of CPUs sharing the last-level cache, ordered by lowest CPU; () with a note when unknown."""
    if not online:
        return ()
    first = min(online.ids)
    found = _last_level_index(f"{cpu_dir}/cpu{first}/cache", files)
    if found is None:
        notes.append(Reason.of("sysfs_no_cache_levels", path=f"{cpu_dir}/cpu{first}/cache"))
        return ()
    index, level = found
    covered: set[int] = set()
    domains: list[CacheDomain] = []
    missing: list[int] = []
    for cpu in sorted(online.ids):
        if cpu in covered:
            continue
        path = f"{cpu_dir}/cpu{cpu}/cache/{index}/shared_cpu_list"
        text = read_value(path, files)
        if text is None:
            missing.append(cpu)
            continue
        # Offline siblings still appear in the list; the domain keeps the online ones and the CPU itself.
        shared = (parse_cpulist(path, text) & online) | CpuSet.of([cpu])
        covered.update(shared.ids)
        domains.append(CacheDomain(level, shared))
    if missing:
        cpus = CpuSet.of(missing).to_list()
        notes.append(Reason.of("sysfs_cache_files_missing", index=index, level=level, cpus=cpus))
    return tuple(domains)
