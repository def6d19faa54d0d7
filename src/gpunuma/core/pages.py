"""Where a process's memory is: the pages on each NUMA node, read from ``/proc/<pid>/numa_maps`` (pure: no I/O).

Each ``numa_maps`` line is one mapping: its address, its memory policy, then ``key=value`` fields and bare words
(``heap``, ``stack``, ``huge``). ``N<node>=<count>`` says how many of the mapping's pages are on that node,
``kernelpagesize_kB`` how big those pages are:

    7f3a1c000000 default anon=33 dirty=33 active=0 N0=30 N1=3 kernelpagesize_kB=4
    7f3a00000000 bind:1 file=/dev/hugepages/kv huge dirty=2 N1=2 kernelpagesize_kB=2048

Transparent huge pages are counted in base pages already (their mapping shows the base size); hugetlbfs
mappings count huge pages. :func:`parse_numa_maps` counts everything in **base pages** (the smallest
``kernelpagesize_kB`` of the file: 4 KiB on x86, 64 KiB on a Grace kernel), so a 2 MiB huge page is 512 pages
and the counts of every mapping add up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gpunuma.core.cpuset import node_list
from gpunuma.core.numbers import decimal

#: The base page when a file names no page size at all (kernels before 2.6.29): 4 KiB.
DEFAULT_PAGE_KB = 4


@dataclass(frozen=True, slots=True)
class Pages:
    """The pages of a process on each NUMA node, in base pages of ``page_size`` bytes.

    ``by_node`` lists (node, pages) by node id, nodes without pages left out. ``mappings`` is how many
    ``numa_maps`` lines were read; ``truncated`` says the file was longer than the reader takes, so the counts
    cover its first mappings only.
    """

    by_node: tuple[tuple[int, int], ...]
    page_size: int
    mappings: int = 0
    truncated: bool = False

    @property
    def pages_by_node(self) -> dict[int, int]:
        """Node -> pages on it (base pages)."""
        return dict(self.by_node)

    @property
    def total(self) -> int:
        """Every page counted, on any node."""
        return sum(pages for _, pages in self.by_node)

    def on(self, nodes: Iterable[int]) -> int:
        """The pages on ``nodes``."""
        wanted = set(nodes)
        return sum(pages for node, pages in self.by_node if node in wanted)

    def local_fraction(self, nodes: Iterable[int]) -> float | None:
        """The share of the pages that are on ``nodes`` (0.0-1.0); None when no page was counted or no node given."""
        wanted = tuple(nodes)
        total = self.total
        if not total or not wanted:
            return None
        return self.on(wanted) / total

    def describe(self, nodes: Iterable[int] = ()) -> str:
        """``97% on node 1 (12,345 pages; node 0: 382, node 1: 11,963)``; without ``nodes`` the split alone."""
        wanted = tuple(nodes)
        split = ", ".join(f"node {node}: {pages:,}" for node, pages in self.by_node)
        more = " (first mappings only: numa_maps was cut short)" if self.truncated else ""
        fraction = self.local_fraction(wanted)
        if fraction is None:
            return f"{self.total:,} pages" + (f" ({split})" if split else "") + more
        head = f"{percent(fraction)} on node {node_list(wanted)} ({self.total:,} pages"
        return head + (f"; {split})" if len(self.by_node) > 1 else ")") + more

    def to_dict(self, nodes: Iterable[int] = ()) -> dict[str, Any]:
        """The JSON shape: pages by node (keys are node ids as text), base page size, the local fraction."""
        return {
            "pages_by_node": {str(node): pages for node, pages in self.by_node},
            "page_size": self.page_size,
            "total_pages": self.total,
            "local_fraction": self.local_fraction(nodes),
            "truncated": self.truncated,
        }


def percent(fraction: float | None) -> str:
    """A share as a whole percent, never rounded up to 100% or down to 0% while it is not; ``unknown`` for None."""
    if fraction is None:
        return "unknown"
    percent = round(fraction * 100)
    if percent == 100 and fraction < 1:
        percent = 99
    elif percent == 0 and fraction > 0:
        percent = 1
    return f"{percent}%"


def parse_numa_maps(text: str, *, truncated: bool = False) -> Pages:
    """The pages on each node that a ``numa_maps`` text shows, in base pages (see the module's text).

    Only ``N<node>=<count>`` and ``kernelpagesize_kB=<kB>`` fields are read; anything else on a line (file names,
    policies, flags a later kernel adds) is skipped, and a field that is not ASCII digits is not counted. A last
    line without its newline is a line cut short by a bounded read: it is left out and ``truncated`` set.
    """
    lines = text.split("\n")
    if lines and lines[-1]:
        truncated = True
    lines = lines[:-1]  # the empty string after the last newline, or the cut line
    counted: list[tuple[dict[int, int], int]] = []
    sizes: set[int] = set()
    for line in lines:
        nodes: dict[int, int] = {}
        size_kb = 0
        for field in line.split(" ")[1:]:
            key, sep, value = field.partition("=")
            if not sep:
                continue
            if key[:1] == "N":
                node, count = decimal(key[1:]), decimal(value)
                if node is not None and count is not None:
                    nodes[node] = nodes.get(node, 0) + count
            elif key == "kernelpagesize_kB":
                size_kb = decimal(value) or 0
        if size_kb:
            sizes.add(size_kb)
        counted.append((nodes, size_kb))
    base_kb = min(sizes) if sizes else DEFAULT_PAGE_KB
    totals: dict[int, int] = {}
    for nodes, size_kb in counted:
        scale = (size_kb or base_kb) // base_kb
        for node, count in nodes.items():
            totals[node] = totals.get(node, 0) + count * scale
    return Pages(
        by_node=tuple(sorted((node, pages) for node, pages in totals.items() if pages)),
        page_size=base_kb * 1024,
        mappings=len(lines),
        truncated=truncated,
    )

