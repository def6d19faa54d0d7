"""Start programs and Python workers already bound: bind in-process, then exec or run the target.

CPU affinity and memory policy survive ``execve`` and are inherited by children, so binding
before exec binds the new program from its first instruction. No wrapper script is written
anywhere (a ``noexec`` /tmp cannot break it).
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from itertools import islice
from multiprocessing.context import ForkContext, ForkServerContext, SpawnContext
from typing import Any, NoReturn, cast

from gpunuma import compose
from gpunuma.core.cpuset import node_list
from gpunuma.core.plan import BindingPlan
from gpunuma.core.ports import Binder, Launcher
from gpunuma.core.report import BindingReport
from gpunuma.errors import CommandError
from gpunuma.settings import configure, hand_down


def exec_bound(
    plan: BindingPlan,
    argv: Sequence[str],
    binder: str | Binder | None = None,
    *,
    strict: bool | None = None,
    before_exec: Callable[[BindingReport], object] | None = None,
    child_env: bool | None = None,
) -> NoReturn:
    """Bind this whole process per ``plan``, then replace it with ``argv`` (``os.execvp``).

    A failed bind raises :class:`~gpunuma.errors.BindError` when ``strict`` (``None``: ``GPUNUMA_STRICT``),
    else runs ``argv`` unbound with a warning; ``GPUNUMA_BIND=0`` runs it unbound on purpose.
    ``argv`` starts with the report's environment (:meth:`~gpunuma.core.report.BindingReport.env`:
    ``OMP_*``, ``GPUNUMA_NODE``/``GPUNUMA_CPUS``, ``NCCL_IB_HCA``/``UCX_NET_DEVICES``) added to this
    process's, a variable already set keeping its value; ``child_env=False`` (``None``: ``GPUNUMA_CHILD_ENV``)
    hands none of them down. ``before_exec`` is called with the binding's report last thing before the exec
    (``gpunuma exec --json`` prints its record there).
    """
    plan, argv = compose.check_plan(plan), command_words(argv)
    check_runnable(argv)  # before binding: a caller that catches the error is left as it was
    report, hand = _apply(plan, binder, strict, child_env)
    _hand_down(report, hand)

    compose.hand_down_own_binding()
    if before_exec is not None:
        before_exec(report)
    exec_command(argv)


#: More words than a command line holds (Linux takes at most MAX_ARG_STRINGS, 0x7FFFFFFF, but ARG_MAX bytes first).
MAX_WORDS = 1 << 17


def command_words(argv: object) -> list[str]:
    """``argv`` as the list of words it must be (``["python", "app.py"]``), read no further than :data:`MAX_WORDS`.

    Anything else is a :class:`CommandError` before anything changes: a bare ``str`` (``"python app.py"`` is no
    list of words; a shell would split it), an empty command, a word that is no ``str``, too many words.
    """
    if isinstance(argv, (str, bytes)) or not hasattr(argv, "__iter__") or hasattr(argv, "keys"):
        shown = argv if isinstance(argv, str) else repr(argv)
        raise CommandError(shown, "expected the command as a list of words, e.g. ['python', 'app.py']",
                           not_found=False)
    words = list(islice(argv, MAX_WORDS + 1))
    if not words or len(words) > MAX_WORDS:
        raise CommandError(repr(argv), f"expected 1 to {MAX_WORDS} words", not_found=not words)
    if not all(isinstance(word, str) for word in words):
        raise CommandError(repr(words), "every word of a command is a str", not_found=False)
    return words


def check_runnable(argv: Sequence[str]) -> None:
    """Raise :class:`CommandError` when ``argv[0]`` cannot be executed: missing, a directory, no execute bit.

    What ``execvp`` would refuse, found before anything is changed; ``exec_command`` still reports a
    refusal this cannot foresee (a bad binary, a race).
    """
    name = argv[0] if argv else ""
    if not name:
        raise CommandError(name, "no command given" if not argv else "the command name is empty", not_found=True)
    if "/" not in name:
        # The folders execvp searches (shutil.which would cost the exec path ~2 ms of imports).
        for folder in os.get_exec_path():
            candidate = os.path.join(folder, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return
        raise CommandError(name, "not found on PATH", not_found=True)
    if os.path.isdir(name):
        raise CommandError(name, "Is a directory", not_found=False)
    if not os.path.exists(name):
        parent = os.path.dirname(name)
        through_a_file = bool(parent) and os.path.exists(parent) and not os.path.isdir(parent)
        raise CommandError(name, "Not a directory" if through_a_file else "No such file or directory",
                           not_found=not through_a_file)
    if not os.access(name, os.X_OK):
        raise CommandError(name, "Permission denied", not_found=False)


def exec_command(argv: Sequence[str]) -> NoReturn:
    """Replace this process with ``argv`` (searched on ``PATH``), or raise :class:`CommandError` saying why not.

    A missing program (or an empty name) is ``not_found`` (the shell's 127); a directory, a file
    without execute permission or a bad binary is not (126), as ``env`` and ``numactl`` tell them apart.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    name = argv[0] if argv else ""
    if not name:
        raise CommandError(name, "the command name is empty", not_found=True)
    try:
        os.execvp(name, list(argv))
    except ValueError as err:  # a NUL byte in an argument
        raise CommandError(name, str(err), not_found=False) from err
    except OSError as err:
        # A path through a file (file/x) is ENOTDIR: the shell's 126; searched on PATH, it means not found.
        not_found = err.errno == errno.ENOENT or (err.errno == errno.ENOTDIR and "/" not in name)
        raise CommandError(name, err.strerror or str(err), not_found=not_found) from err


def _bound_trampoline(
    plan: BindingPlan,
    binder: str | Binder | None,
    strict: bool | None,
    target: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    report_kwarg: str | None = None,
    child_env: bool | None = None,
) -> None:
    """Runs in the child: bind first, hand the binding's environment down, then call the target."""
    report, hand = _apply(plan, binder, strict, child_env)
    _hand_down(report, hand)
    extra = {report_kwarg: report} if report_kwarg else {}
    target(*args, **kwargs, **extra)


def _apply(
    plan: BindingPlan, binder: str | Binder | None, strict: bool | None, child_env: bool | None
) -> tuple[BindingReport, bool]:
    """The one apply path (``GPUNUMA_*`` switches of this process, best effort, logging) of the root, and whether
    the binding's environment goes to the children (``child_env``, else ``GPUNUMA_CHILD_ENV``)."""
    options = configure(binder=binder, strict=strict, child_env=child_env)
    return compose.apply(options, plan), options.child_env


def _hand_down(report: BindingReport, wanted: bool) -> None:
    """Add the report's environment for children to this process's, never overwriting a set variable.

    ``GPUNUMA_OWN`` goes down whatever ``wanted`` says (:func:`gpunuma.compose.hand_down_own_binding`): it is no
    tuning for the children but gpunuma's record of its own binding, without which a child's own bind would take
    the inherited CPUs for a user's narrowing and leave them alone.
    """
    if wanted:
        hand_down(report.env())


def start_bound_process(
    plan: BindingPlan,
    target: Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    binder: str | Binder | None = None,
    *,
    strict: bool | None = None,
    context: str = "spawn",
    report_kwarg: str | None = None,
    child_env: bool | None = None,
) -> multiprocessing.process.BaseProcess:
    """Start a ``spawn`` (or ``forkserver``) child that binds itself first thing, then runs ``target``.

    ``target``, its arguments and ``binder`` must be picklable; the started process is returned.
    The child reads ``GPUNUMA_BIND``/``GPUNUMA_STRICT``/``GPUNUMA_REQUIRE`` from its own environment
    (``strict=None``), and gets the binding's environment (as :func:`exec_bound` hands it down) before
    ``target`` runs, unless ``child_env=False`` (``None``: the child's ``GPUNUMA_CHILD_ENV``).
    ``report_kwarg="numa"`` passes the child's binding report to the target as ``numa=report``; it is also
    ``gpunuma.last_report()`` in the child.
    """
    plan = compose.check_plan(plan)
    if not callable(target):
        raise CommandError(repr(target), "target is not callable", not_found=False)
    # get_context(str) is typed BaseContext, which lacks Process; every start method's context has it.
    ctx = cast("SpawnContext | ForkServerContext | ForkContext", multiprocessing.get_context(context))
    process = ctx.Process(
        target=_bound_trampoline,
        args=(plan, binder, strict, target, tuple(args), dict(kwargs or {}), report_kwarg, child_env),
    )
    process.start()
    return process


def exec_argv(plan: BindingPlan, argv: Sequence[str]) -> list[str]:
    """``python -m gpunuma.tools.launch ... -- argv``: a child that binds in-process, then execs ``argv``."""
    plan, argv = compose.check_plan(plan), command_words(argv)
    options = [
        f"--cpus={plan.cpus.to_list()}",
        f"--nodes={node_list(plan.nodes)}",
        f"--memory={plan.memory_policy.value}",
        f"--memory-nodes={node_list(plan.memory_nodes)}",
    ]
    if plan.places is not None:  # the child hands its own children these OpenMP places and thread count
        options.append(f"--places={plan.places.to_list()}")
    if plan.threads:
        options.append(f"--threads={plan.threads}")
    return [sys.executable, "-m", "gpunuma.tools.launch", *options, "--", *argv]


def bound_command(plan: BindingPlan, argv: Sequence[str], launcher: Launcher | None = None) -> list[str]:
    """The argv that starts ``argv`` bound: through ``launcher`` (numactl) or in-process then exec."""
    plan, argv = compose.check_plan(plan), command_words(argv)
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
