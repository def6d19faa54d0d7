"""Child of ``run.py --compare``: one row's ``sample`` from the tree first on ``PYTHONPATH``, as JSON.

``python bench/probe.py ROW_MODULE --workdir DIR [--quick] [--share N]`` prints
``{"series": {label: [ns, ...]}, "info": {...}}`` on its last line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Budget  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("module", help="a module of bench/rows with a sample(budget, workdir) function")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--share", type=int, default=1)
    args = parser.parse_args()
    row = importlib.import_module(f"rows.{args.module}")
    print(json.dumps(row.sample(Budget(quick=args.quick, share=args.share), args.workdir)))


if __name__ == "__main__":
    main()
