"""An ``hwloc-gather-topology`` archive shaped like hwloc's test ``256ppc-8n8s4t.tar.bz2`` (an IBM POWER7 host).

hwloc keeps that archive in its repository as binary; the bench builds one of the same shape instead: 256 CPUs
(64 single-core packages of 4 threads), 8 NUMA nodes with sparse ids (0, 1, 4, 5, 8, 9, 12, 13; distances
10/20/40 as hwloc prints them), four cache levels per CPU with every attribute file a kernel of its time writes,
the node and CPU lists, ``proc/cpuinfo`` and ``proc/meminfo``, under one top folder as hwloc-gather lays it out:
~12,900 members, ~0.3 MB compressed with bzip2.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

NAME = "256ppc-8n8s4t"
NODES = (0, 1, 4, 5, 8, 9, 12, 13)
CPUS = 256
THREADS = 4
#: Cache index -> (level, type, size, line, ways).
CACHES = {0: (1, "Data", "32K", 128, 8), 1: (1, "Instruction", "32K", 128, 4), 2: (2, "Unified", "256K", 128, 8),
          3: (3, "Unified", "4096K", 128, 8)}


def _mask(cpus: range | list[int]) -> str:
    """A kernel hex cpumask of ``cpus`` over 256 CPUs: 32-bit words, most significant first."""
    value = 0
    for cpu in cpus:
        value |= 1 << cpu
    words = [(value >> (32 * w)) & 0xFFFFFFFF for w in reversed(range(CPUS // 32))]
    return ",".join(f"{word:08x}" for word in words)


def _list(cpus: range) -> str:
    return f"{cpus.start}-{cpus.stop - 1}" if len(cpus) > 1 else str(cpus.start)


def members() -> dict[str, str]:
    """Every file of the tree by its path below the top folder."""
    files: dict[str, str] = {}
    cpu = "sys/devices/system/cpu"
    for name in ("online", "possible", "present"):
        files[f"{cpu}/{name}"] = f"0-{CPUS - 1}\n"
    files[f"{cpu}/offline"] = "\n"
    files[f"{cpu}/kernel_max"] = "1023\n"
    for n in range(CPUS):
        core = range(n - n % THREADS, n - n % THREADS + THREADS)
        files[f"{cpu}/cpu{n}/online"] = "1\n"
        top = f"{cpu}/cpu{n}/topology"
        files[f"{top}/physical_package_id"] = f"{n // THREADS}\n"
        files[f"{top}/core_id"] = f"{n // THREADS * 4}\n"
        files[f"{top}/thread_siblings"] = _mask(core) + "\n"
        files[f"{top}/thread_siblings_list"] = _list(core) + "\n"
        files[f"{top}/core_siblings"] = _mask(core) + "\n"
        files[f"{top}/core_siblings_list"] = _list(core) + "\n"
        for index, (level, kind, size, line, ways) in CACHES.items():
            cache = f"{cpu}/cpu{n}/cache/index{index}"
            shared = core
            files[f"{cache}/level"] = f"{level}\n"
            files[f"{cache}/type"] = f"{kind}\n"
            files[f"{cache}/size"] = f"{size}\n"
            files[f"{cache}/coherency_line_size"] = f"{line}\n"
            files[f"{cache}/ways_of_associativity"] = f"{ways}\n"
            files[f"{cache}/number_of_sets"] = "32\n"
            files[f"{cache}/physical_line_partition"] = "1\n"
            files[f"{cache}/shared_cpu_map"] = _mask(shared) + "\n"
            files[f"{cache}/shared_cpu_list"] = _list(shared) + "\n"
    node = "sys/devices/system/node"
    ids = ",".join(str(i) for i in NODES)
    for name in ("online", "possible", "has_cpu", "has_normal_memory"):
        files[f"{node}/{name}"] = f"{ids}\n"
    per_node = CPUS // len(NODES)
    for k, node_id in enumerate(NODES):
        cpus = range(k * per_node, (k + 1) * per_node)
        folder = f"{node}/node{node_id}"
        files[f"{folder}/cpumap"] = _mask(cpus) + "\n"
        files[f"{folder}/cpulist"] = _list(cpus) + "\n"
        files[f"{folder}/distance"] = " ".join(
            "10" if other == k else "20" if other // 2 == k // 2 else "40" for other in range(len(NODES))
        ) + "\n"
        kb = 58458112 + 1048576 * k
        files[f"{folder}/meminfo"] = (
            f"Node {node_id} MemTotal:       {kb} kB\nNode {node_id} MemFree:        {kb // 2} kB\n"
        )
        files[f"{folder}/numastat"] = "numa_hit 1\nnuma_miss 0\nnuma_foreign 0\n"
    files["proc/cpuinfo"] = "".join(
        f"processor\t: {n}\ncpu\t\t: POWER7 (architected), altivec supported\nclock\t\t: 3864.000000MHz\n"
        f"revision\t: 2.1 (pvr 003f 0201)\n\n" for n in range(CPUS)
    ) + "timebase\t: 512000000\nplatform\t: pSeries\nmodel\t\t: IBM,9179-MHB\n"
    files["proc/meminfo"] = "MemTotal:       516423680 kB\nMemFree:        258211840 kB\n"
    files["proc/mounts"] = "sysfs /sys sysfs rw 0 0\nproc /proc proc rw 0 0\n"
    return files


def write(path: Path) -> Path:
    """The archive at ``path`` (``.tar.bz2``), members in path order under ``NAME/``, folders first."""
    files = members()
    folders = sorted({"/".join(name.split("/")[:depth]) for name in files for depth in range(1, name.count("/") + 1)})
    with tarfile.open(path, "w:bz2") as tar:
        for folder in [""] + folders:
            info = tarfile.TarInfo(f"{NAME}/{folder}".rstrip("/"))
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name in sorted(files):
            data = files[name].encode()
            info = tarfile.TarInfo(f"{NAME}/{name}")
            info.size = len(data)
            info.mode = 0o444
            tar.addfile(info, io.BytesIO(data))
    return path
