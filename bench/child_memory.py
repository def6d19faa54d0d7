"""Child process of the numa-maps and migrate rows: holds ``--gib`` GiB of touched memory.

``--pages base``: 4 KiB pages (``MADV_NOHUGEPAGE``: the most ``numa_maps`` lines and page-table entries the
kernel walks); ``--pages huge``: transparent huge pages where the kernel gives them (``MADV_HUGEPAGE``). Prints
``ready`` once every page is touched, then waits for one line on stdin.
"""

from __future__ import annotations

import argparse
import mmap
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--pages", choices=("base", "huge"), default="base")
    args = parser.parse_args()

    size = int(args.gib * (1 << 30))
    area = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    area.madvise(mmap.MADV_NOHUGEPAGE if args.pages == "base" else mmap.MADV_HUGEPAGE)
    step = mmap.PAGESIZE
    for offset in range(0, size, step):  # one write per page: every page is resident
        area[offset] = 1
    print("ready", flush=True)
    sys.stdin.readline()
    area.close()


if __name__ == "__main__":
    main()
