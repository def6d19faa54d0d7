"""``gpunuma topo --root ARCHIVE`` of an ``hwloc-gather-topology`` archive shaped like hwloc's 256ppc-8n8s4t
(:mod:`rows.hwloc_tree`) against Python's ``tarfile`` only listing the archive's members
(``tarfile.open(ARCHIVE).getnames()``): CPU time of each child, alternated, compared round by round."""

from __future__ import annotations

import tarfile

from harness import Context, ProcessTimes, RowResult, Tree, alternate_processes, cpu_stats, fmt_ns, paired_ratio

from rows import hwloc_tree

KEY = "archive"
WHAT = f"`gpunuma topo --root {hwloc_tree.NAME}.tar.bz2` against tarfile listing its members (CPU, paired)"
TARGET = "<= 3x listing the members"
LIMIT = 3.0
LIST = "python -c 'tarfile.open(ARCHIVE).getnames()'"
TOPO = "gpunuma topo --root ARCHIVE"


def run(ctx: Context) -> list[RowResult]:
    archive = hwloc_tree.write(ctx.workdir / f"{hwloc_tree.NAME}.tar.bz2")
    with tarfile.open(archive) as tar:
        members = len(tar.getnames())
    code = "import sys, tarfile; tarfile.open(sys.argv[1]).getnames()"
    sides: dict[str, tuple[list[str], dict[str, str]]] = {
        LIST: ([ctx.current.python, "-c", code, str(archive)], ctx.current.env()),
    }
    for tree in ctx.trees:
        sides[f"{TOPO} [{tree.label}]"] = ([tree.script("gpunuma"), "topo", "--root", str(archive)], tree.env())
    samples = alternate_processes(sides, rounds=ctx.budget.reps(15, 1), warmup=0 if ctx.budget.quick else 1)
    return [_result(tree, samples, members, archive.stat().st_size) for tree in ctx.trees]


def _result(tree: Tree, samples: dict[str, list[ProcessTimes]], members: int, size: int) -> RowResult:
    listed, read = samples[LIST], samples[f"{TOPO} [{tree.label}]"]
    ratio = paired_ratio(read, listed)
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=((f"{LIST} (CPU)", cpu_stats(listed)), (f"{TOPO} (CPU)", cpu_stats(read))),
        headline=f"{ratio:.2f}x listing its {members} members (CPU, paired); {fmt_ns(cpu_stats(read).median_ns)}",
        verdict="met" if ratio <= LIMIT else "missed",
        derived={"ratio_cpu_paired": ratio, "members": members, "archive_bytes": size},
        notes=(
            "hwloc keeps 256ppc-8n8s4t.tar.bz2 as a binary the bench cannot fetch; rows/hwloc_tree.py builds one of "
            "its shape (256 CPUs, 8 sparse nodes, 4 threads per core, every cache attribute)",
        ),
        tree=tree.label,
    )
