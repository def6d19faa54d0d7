"""Start programs and Python workers already bound: bind in-process, then exec or run the target.

CPU affinity and memory policy survive ``execve`` and are inherited by children, so binding
before exec binds the new program from its first instruction. No wrapper script is written
anywhere (a ``noexec`` /tmp cannot break it).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, cast

from gpunuma.cpuset import CpuSet
from gpunuma.errors import BindError
from gpunuma.plan import BindingPlan
from gpunuma.policy import MemoryPolicy
from gpunuma.ports import Binder, Launcher
from gpunuma.report import BindingReport

if TYPE_CHECKING:
    from multiprocessing.context import ForkContext, ForkServerContext, SpawnContext

logger = logging.getLogger("gpunuma")


def _bind(plan: BindingPlan, binder: Binder | None, strict: bool) -> BindingReport | None:
    if binder is None:
        from gpunuma.binder.libnuma import default_binder

        binder = default_binder()
    try:
        report = binder.apply(plan)
    except BindError as err:
        if strict:
            raise
        logger.warning("gpunuma: not bound (%s binder), running anyway: %s", binder.name, err)
        return None
    logger.info("gpunuma: %s", report.summary())
    for mismatch in report.mismatches:
        logger.warning("gpunuma: read-back differs from the plan: %s", mismatch)
    return report


def exec_bound(
    plan: BindingPlan, argv: Sequence[str], binder: Binder | None = None, *, strict: bool = False
) -> NoReturn:
    """Bind this whole process per ``plan``, then replace it with ``argv`` (``os.execvp``).

    A failed bind raises :class:`BindError` when ``strict``, else runs ``argv`` unbound with a warning.
    """
    if not argv:
        raise ValueError("exec_bound needs a command to run")
    _bind(plan, binder, strict)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], list(argv))


def _bound_trampoline(
    plan: BindingPlan,
    binder: Binder | None,
    strict: bool,
    target: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> None:
    """Runs in the child: bind first, then call the target."""
    _bind(plan, binder, strict)
    target(*args, **kwargs)


def start_bound_process(
    plan: BindingPlan,
    target: Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    binder: Binder | None = None,
    *,
    strict: bool = False,
    context: str = "spawn",
) -> multiprocessing.process.BaseProcess:
    """Start a ``spawn`` (or ``forkserver``) child that binds itself first thing, then runs ``target``.

    ``target``, its arguments and ``binder`` must be picklable; the started process is returned.
    """
    # get_context(str) is typed BaseContext, which lacks Process; every start method's context has it.
    ctx = cast("SpawnContext | ForkServerContext | ForkContext", multiprocessing.get_context(context))
    process = ctx.Process(
        target=_bound_trampoline,
        args=(plan, binder, strict, target, tuple(args), dict(kwargs or {})),
    )
    process.start()
    return process


def exec_argv(plan: BindingPlan, argv: Sequence[str]) -> list[str]:
    """``python -m gpunuma.launch ... -- argv``: a child that binds in-process, then execs ``argv``."""
    options = [
        f"--cpus={plan.cpus.to_list()}",
        f"--nodes={','.join(str(n) for n in plan.nodes)}",
        f"--memory={plan.memory_policy.value}",
        f"--memory-nodes={','.join(str(n) for n in plan.memory_nodes)}",
    ]
    return [sys.executable, "-m", "gpunuma.launch", *options, "--", *argv]


def bound_command(plan: BindingPlan, argv: Sequence[str], launcher: Launcher | None = None) -> list[str]:
    """The argv that starts ``argv`` bound: through ``launcher`` (numactl) or in-process then exec."""
    if not plan.binds:
        return list(argv)
    if launcher is not None:
        return launcher.command(plan, argv)
    return exec_argv(plan, argv)


def run_bound(
    plan: BindingPlan, argv: Sequence[str], *, launcher: Launcher | None = None, **run_kwargs: Any
) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run`` of ``argv`` started bound per ``plan`` (no shell, no preexec_fn)."""
    return subprocess.run(bound_command(plan, argv, launcher), **run_kwargs)


def _plan_from_args(args: argparse.Namespace) -> BindingPlan:
    def ids(text: str) -> tuple[int, ...]:
        return tuple(sorted(CpuSet.parse_list(text).ids))

    return BindingPlan(
        gpus=(),
        nodes=ids(args.nodes),
        cpus=CpuSet.parse_list(args.cpus),
        memory_policy=MemoryPolicy(args.memory),
        memory_nodes=ids(args.memory_nodes),
        reasons=("started by gpunuma.launch",),
    )


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """``python -m gpunuma.launch --cpus=... --memory=... -- CMD``: bind, then exec CMD."""
    parser = argparse.ArgumentParser(prog="python -m gpunuma.launch")
    parser.add_argument("--cpus", required=True)
    parser.add_argument("--nodes", default="")
    parser.add_argument("--memory", choices=[m.value for m in MemoryPolicy], default=MemoryPolicy.NONE.value)
    parser.add_argument("--memory-nodes", default="")
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    exec_bound(_plan_from_args(args), command, strict=args.strict)


if __name__ == "__main__":
    main()
