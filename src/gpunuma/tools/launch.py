"""``python -m gpunuma.tools.launch --cpus=... --memory=... -- CMD``: bind this process as told, then exec CMD.

The command :func:`gpunuma.launch.exec_argv` writes for :func:`gpunuma.launch.run_bound`: a child that binds
itself in-process (no numactl needed), then replaces itself with the program.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.plan import BindingPlan
from gpunuma.core.policy import MemoryPolicy
from gpunuma.core.reasons import Reason
from gpunuma.errors import CpuSetParseError, GpunumaError
from gpunuma.launch import exec_bound
from gpunuma.tools.cli import exit_code_for
from gpunuma.tools.terminal import visible


def _plan_from_args(args: argparse.Namespace) -> BindingPlan:
    """The plan the options describe; :class:`ValueError` naming the option that is wrong."""
    def parsed(option: str, text: str) -> CpuSet:
        try:
            return CpuSet.parse_list(text)
        except CpuSetParseError as err:
            raise ValueError(f"argument {option}: {err.why} in {text[:100]!r}") from err

    cpus = parsed("--cpus", args.cpus)
    places = None if args.places is None else parsed("--places", args.places)
    nodes = tuple(sorted(parsed("--nodes", args.nodes).ids))
    memory_nodes = tuple(sorted(parsed("--memory-nodes", args.memory_nodes).ids))
    if not cpus:
        raise ValueError("argument --cpus: the CPU list is empty")
    memory = MemoryPolicy(args.memory)
    if memory is not MemoryPolicy.NONE and not memory_nodes:
        raise ValueError(f"argument --memory={memory.value} needs --memory-nodes")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"argument --threads: {args.threads} is not a positive count")
    if places is not None and not places <= cpus:
        raise ValueError(f"argument --places: {places.to_list()} is not within --cpus {cpus.to_list()}")
    return BindingPlan(
        gpus=(),
        nodes=nodes,
        cpus=cpus,
        memory_policy=memory,
        memory_nodes=memory_nodes,
        reasons=(Reason.of("launched"),),
        threads=args.threads,
        places=places,
    )


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """``python -m gpunuma.tools.launch --cpus=... --memory=... -- CMD``: bind, then exec CMD.

    Misuse is argparse's usage error (exit 2); a gpunuma error or a command that cannot run ends
    with one line on stderr and the exit status ``gpunuma exec`` gives it (:class:`~gpunuma.tools.cli.ExitCode`).
    """


    parser = argparse.ArgumentParser(prog="python -m gpunuma.tools.launch")
    parser.add_argument("--cpus", required=True)
    parser.add_argument("--nodes", default="")
    parser.add_argument("--memory", choices=[m.value for m in MemoryPolicy], default=MemoryPolicy.NONE.value)
    parser.add_argument("--memory-nodes", default="")
    parser.add_argument("--places", help="the CPUs of the children's OpenMP places (default: all; empty: none)")
    parser.add_argument("--threads", type=int, default=None, help="the children's OMP_NUM_THREADS")
    parser.add_argument("--strict", action="store_true", help="fail instead of running unbound (or GPUNUMA_STRICT=1)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    try:
        plan = _plan_from_args(args)
    except ValueError as err:  # a malformed or empty list, a memory policy without nodes
        parser.error(str(err))
    try:
        exec_bound(plan, command, strict=True if args.strict else None)
    except (GpunumaError, KeyboardInterrupt) as err:
        line = "interrupted (Ctrl-C)" if isinstance(err, KeyboardInterrupt) else f"error: {err}"
        print(visible(f"{parser.prog}: {line}"), file=sys.stderr)
        sys.exit(int(exit_code_for(err)))


if __name__ == "__main__":
    main()
