"""The ``gpunuma`` command: see the topology, the plan, check a running process, exec bound.

``--simulate NAME`` (or ``GPUNUMA_SIMULATE=NAME``) runs the same commands against a machine of the
simulated catalogue (``gpunuma machines`` lists them), so a laptop shows what would happen on a DGX;
``--simulate PATH`` against a captured host (``gpunuma snapshot``). ``--root PATH`` reads a captured
host's kernel files (a folder or an archive) instead of this machine's. Exit statuses: :class:`ExitCode`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NoReturn, TextIO

from gpunuma import compose, metrics
from gpunuma.compose import make_source
from gpunuma.core.model import nearest_nics
from gpunuma.core.numbers import decimal, integer, natural
from gpunuma.core.planner import gpu_nodes
from gpunuma.core.policy import CpuScope, Fallback, MemoryPolicy
from gpunuma.core.report import BindingReport
from gpunuma.errors import (
    CommandError,
    CpuSetParseError,
    GpunumaError,
    MissingDependencyError,
    NotBoundError,
    PolicyError,
    SettingsError,
    UnknownSourceError,
)
from gpunuma.launch import exec_bound, exec_command
from gpunuma.registry import SOURCE_NAMES, topology_source_class
from gpunuma.settings import SETTINGS, CapturedTree, Options, Simulated, configure
from gpunuma.tools.archive import open_tree
from gpunuma.tools.check import Verdict, check_process
from gpunuma.tools.fleet import DEFAULT_TIMEOUT, check_fleet
from gpunuma.tools.snapshot import SNAPSHOT_SUFFIXES, write_snapshot
from gpunuma.tools.terminal import visible

logger = logging.getLogger(__name__)


class ExitCode(IntEnum):
    """Every exit status of the ``gpunuma`` command, in one place (docs/cli.md lists them).

    Commands that add a status add it here, with a number not used before.
    """

    #: Done; ``check``: the process holds what is expected.
    OK = 0
    #: ``check``: the process is not bound as expected (each difference is printed); ``exec --strict``
    #: (``GPUNUMA_STRICT=1``): the command would run unbound, so it was not run.
    NOT_AS_EXPECTED = 1
    #: A usage error: an unknown option or a bad value, on the command line or in a ``GPUNUMA_*`` variable; an
    #: option whose optional dependency is not installed (``--prometheus`` without ``gpunuma[metrics]``).
    USAGE = 2
    #: ``check``: what the process should hold cannot be told (its GPU is unknown, or it runs with GPUNUMA_BIND=0).
    CANNOT_TELL = 3
    #: ``exec`` on a simulated or captured machine without ``--dry-run``: the command was shown, not run.
    NOT_RUN = 4
    #: An error gpunuma raised: a GPU the machine lacks, a missing process, unreadable kernel files, a failed bind.
    ERROR = 5
    #: ``exec``: the command exists but cannot be executed (a directory, no execute permission), as in a shell.
    NOT_EXECUTABLE = 126
    #: ``exec``: the command was not found, as in a shell.
    NOT_FOUND = 127
    #: Interrupted (``Ctrl-C``, ``SIGINT``): 128 + 2, as a shell reports it; temporary work was removed.
    INTERRUPTED = 130
    #: Terminated (``SIGTERM``): 128 + 15, as a shell reports it; temporary work was removed.
    TERMINATED = 143


def exit_code_for(err: BaseException) -> ExitCode:
    """The exit status an error ends the command with: one table for ``gpunuma`` and its launch child."""

    if isinstance(err, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(err, Terminated):
        return ExitCode.TERMINATED
    if isinstance(err, CommandError):
        return ExitCode.NOT_FOUND if err.not_found else ExitCode.NOT_EXECUTABLE
    if isinstance(err, NotBoundError):
        # Stopped by an error of its own (a GPU the machine lacks, unreadable kernel files): that error's status.
        cause = err.__cause__
        return exit_code_for(cause) if isinstance(cause, GpunumaError) else ExitCode.NOT_AS_EXPECTED
    if isinstance(err, (SettingsError, PolicyError, UnknownSourceError, CpuSetParseError, UsageError,
                        MissingDependencyError)):
        return ExitCode.USAGE
    return ExitCode.ERROR


def _show_lines(level: int) -> Callable[[], None]:
    """Send the ``gpunuma`` logger's records at ``level`` and above to stderr as ``gpunuma: <message>`` for the
    command's time; the returned function puts the logger back (``main`` runs in-process in tests and tools)."""
    log = logging.getLogger("gpunuma")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(compose.LINE_FORMAT))
    handler.setLevel(level)
    before = log.level
    log.addHandler(handler)
    if log.getEffectiveLevel() > level:
        log.setLevel(level)

    def restore() -> None:
        log.removeHandler(handler)
        log.setLevel(before)

    return restore


class UsageError(Exception):
    """A usage error (argparse's, raised instead of printed, or the command's own): one line, :attr:`ExitCode.USAGE`."""


class Terminated(BaseException):
    """``SIGTERM`` while a command runs, raised in the main thread as ``Ctrl-C`` raises ``KeyboardInterrupt``:
    ``with`` blocks and ``finally`` clauses remove temporary work, then the command exits :attr:`ExitCode.TERMINATED`.
    """


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated("terminated (SIGTERM)")


def _catch_sigterm() -> object:
    """Make ``SIGTERM`` raise :class:`Terminated` while the command runs; what to put back (None: nothing changed).

    Only where the process would otherwise die at once (the default action): a program that runs :func:`main`
    with its own ``SIGTERM`` handler keeps it, and off the main thread no handler can be set.
    """
    try:
        if signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
            return None
        return signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        return None


def _release_sigterm(previous: object) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]


_SOURCE_HELP = "where the topology comes from (default: GPUNUMA_SOURCE, else auto = NVML + sysfs)"
_ROOT_HELP = (
    "read the kernel files of a captured host instead of this machine's: a folder holding sys/ and proc/, "
    "or a .tar.gz/.tar.bz2/.tar.xz archive (gpunuma snapshot, hwloc-gather-topology); default: /"
)


def _options(args: argparse.Namespace) -> Options:
    """The command's options, decided once (:func:`~gpunuma.settings.configure`): its flags over ``GPUNUMA_*``.

    A bad flag is a usage error; a bad ``GPUNUMA_*`` value is one in strict mode, before anything runs (in
    best-effort mode a warning, and the default stands). ``topo`` and ``check`` bind nothing: they read no
    switch of binding. ``--root`` is the captured tree :func:`_run` opened; ``--simulate`` wins over it.
    """
    flags = {item.name: getattr(args, item.flag[2:].replace("-", "_"), None) for item in SETTINGS if item.flag}
    if flags["machine"] is None:
        flags["machine"] = getattr(args, "captured", None)
    return configure(flags=flags, binding=hasattr(args, "scope"))


def _check_gpu_flags(args: argparse.Namespace) -> None:
    """Misuse of the GPU flags is a usage error, before anything is read: an empty ``--gpu``, both forms."""
    if args.gpu and any(not g.strip() for g in args.gpu):
        raise UsageError("argument --gpu: expected a local index, a UUID or a bus id, got an empty value")
    if args.gpu and args.physical_gpu:
        raise UsageError("name the GPU one way: --gpu or --physical-gpu, not both")


def _gpus(args: argparse.Namespace) -> list[int | str] | None:
    if not args.gpu:
        return None
    return [number if (number := decimal(g)) is not None else g for g in args.gpu]


def _physical(args: argparse.Namespace) -> list[int] | None:
    return list(args.physical_gpu) if args.physical_gpu else None


# -- printing -------------------------------------------------------------------------------
def _netdevs(nic: Any) -> str:
    return ", ".join(visible(name) for name in nic.netdevs) or "no net interface"


def _nic(nic: Any) -> str:
    """A NIC by its RDMA name and its interfaces' names, each escaped: a captured tree can name them anything."""
    return f"{visible(nic.name)} ({_netdevs(nic)})"


def _print_topology(topology: Any, nodes: dict[int, int | None]) -> None:
    gpu_nics = {gpu.index: nearest_nics(topology, gpu) for gpu in topology.gpus}
    print(f"Topology (source: {topology.source})")
    print(f"NUMA nodes: {len(topology.nodes)}")
    for node in topology.nodes:
        cpus = f"CPUs {node.cpus.to_list()} ({len(node.cpus)})" if node.has_cpus else "no CPUs"
        memory = f"{node.memory_mb} MB" if node.memory_mb is not None else ("memory" if node.has_memory else "")
        if not node.has_memory:
            memory = "no memory"
        distances = " ".join(str(d) for _, d in sorted(node.distances.items()))
        print(f"  node {node.id}: {cpus}, {memory}, distances {distances}")
    print(f"GPUs: {len(topology.gpus)}")
    for gpu in topology.gpus:
        planned = nodes.get(gpu.index)
        node = "unknown" if planned is None else str(planned)
        if planned is not None and gpu.numa_node != planned:  # found from its local CPUs, or the nearest with CPUs
            node += f" (numa_node {-1 if gpu.numa_node is None else gpu.numa_node})"
        local = gpu.local_cpus.to_list() if gpu.local_cpus is not None else "unknown"
        extra = ""
        if gpu.memory_node is not None:
            extra += f", GPU memory node {gpu.memory_node}"
        if gpu.mig_devices:
            extra += f", {len(gpu.mig_devices)} MIG devices"
        uuid = visible(gpu.uuid) if gpu.uuid else "-"
        print(f"  GPU {gpu.index}  {gpu.pci_bus_id}  {uuid}  node {node}  local CPUs {local}{extra}")
        nearest = gpu_nics.get(gpu.index, ())
        if nearest:
            names = ", ".join(_nic(near.nic) for near in nearest)
            print(f"      nearest NICs ({nearest[0].distance.value}): {names}")
        if gpu.numa_node is None:  # the notes say why the node is unknown
            for note in gpu.notes:
                print(f"      note: {note}")
    if topology.caches:
        sizes = sorted({len(cache.cpus) for cache in topology.caches})
        print(f"L{topology.caches[0].level} caches: {len(topology.caches)}, {'/'.join(map(str, sizes))} CPUs each")
    if topology.nics:
        print(f"RDMA NICs: {len(topology.nics)}")
        for nic in topology.nics:
            node = "unknown" if nic.numa_node is None else str(nic.numa_node)
            layer = visible(nic.link_layer) if nic.link_layer else "-"
            print(f"  {visible(nic.name)}  {nic.pci_bus_id}  {_netdevs(nic)}  node {node}  {layer}")
    for note in topology.notes:
        print(f"note: {note}")


def _print_plan(plan: Any) -> None:
    gpus = ", ".join(map(visible, plan.gpu_labels)) or ", ".join(f"GPU {g}" for g in plan.gpus) or "no GPU"
    print(f"Plan for {gpus}: {plan.summary()}")
    if plan.nics:
        print(f"  nearest NICs: {', '.join(_nic(nic) for nic in plan.nics)}")
    for reason in plan.reasons:
        print(f"  - {reason}")


def _print_report(report: Any) -> None:
    print(report.summary())
    for reason in report.reasons:
        print(f"  - {reason}")
    for mismatch in report.mismatches:
        print(f"  ! {mismatch}")


# -- commands --------------------------------------------------------------------------------
def _print_json(data: object, file: TextIO | None = None) -> None:
    print(json.dumps(data, indent=2), file=file)


def _error_json(err: BaseException, code: ExitCode, message: str | None = None) -> dict[str, object]:
    """The JSON an error prints under ``--json``: ``{"error": {"type", "message", "exit_code"}}``."""
    return {"error": {"type": type(err).__name__, "message": str(err) if message is None else message,
                      "exit_code": int(code)}}


def cmd_topo(args: argparse.Namespace) -> int:
    options = _options(args)
    topology = make_source(options.source, machine=options.machine).read()
    # The node each GPU's plan starts from (planner rule 1), so topo and plan never disagree on it.
    nodes = {index: choice.node for index, choice in gpu_nodes(topology).items()}
    if args.json:
        shape = topology.to_dict()
        for gpu in shape["gpus"]:
            gpu["cpu_node"] = nodes.get(gpu["index"])
        _print_json(shape)
    else:
        _print_topology(topology, nodes)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    options = _options(args)
    plan = _plan(args, options)
    if args.env:
        _print_env(plan.env(), args.json)
    elif args.json:
        _print_json(plan.to_dict())
    else:
        _print_plan(plan)
    return 0


def _print_env(env: dict[str, str], as_json: bool) -> None:
    """``NAME=value`` lines quoted for a shell (``eval "$(gpunuma plan --env)"``), or a JSON object."""
    if as_json:
        _print_json(env)
        return

    for name, value in env.items():
        print(f"export {name}={shlex.quote(value)}")


def _plan(args: argparse.Namespace, options: Options) -> Any:
    _check_gpu_flags(args)
    gpus, physical = _gpus(args), _physical(args)
    environment = compose.gpu_environment(gpus if physical is None else physical, args.node)
    return compose.plan(options, gpus=gpus, physical=physical, node=args.node, environment=environment)


def cmd_exec(args: argparse.Namespace) -> int:
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("give the command after --, e.g. gpunuma exec --gpu 0 -- python app.py")
    # A bad GPUNUMA_* value is a mistake to report (exit 2), never a reason to run unbound.
    options = _options(args)
    # A simulated or captured machine is never this one: the command is shown, not run.
    machine = options.machine
    shown = machine is not None or args.dry_run

    try:
        plan = _plan(args, options)
    except GpunumaError as err:
        if options.strict or shown:
            raise
        # Best-effort, like the library: the command still runs, unbound, and says why.
        if args.json:
            _print_json({"command": argv, "executed": True, "where": "this machine", "plan": None, "report": None,
                         "error": str(err)}, file=sys.stderr)
        else:
            print(f"gpunuma exec: not binding: {err}; running {argv[0]!r} unbound", file=sys.stderr)
        exec_command(argv)
    if options.strict and options.enabled and not plan.binds:
        # Strict means never run unbound: a plan that binds nothing stops here, shown or not.

        raise NotBoundError(BindingReport.not_bound(plan, "exec", ()))
    if shown:
        where = "this machine"
        if isinstance(machine, Simulated):
            where = f"simulated {machine.name}"
        elif machine is not None:
            where = f"captured {machine.origin}"
        if args.json:
            _print_json({"command": argv, "executed": False, "where": where, "plan": plan.to_dict()})
        else:
            print(f"would run {argv!r} on {where} bound as follows (nothing executed):")
            _print_plan(plan)
        if args.dry_run:
            return ExitCode.OK
        # A CI step built on `exec --simulate` must not pass as if the command had run.
        print(
            f"gpunuma exec: {argv[0]!r} was NOT run: {where} is not this machine; "
            f"add --dry-run to ask for only the plan (exit {int(ExitCode.OK)}), exit {int(ExitCode.NOT_RUN)} otherwise",
            file=sys.stderr,
        )
        return ExitCode.NOT_RUN

    def announce(report: BindingReport) -> None:
        # On stderr: the command's stdout stays its own.
        _print_json({"command": argv, "executed": True, "where": "this machine", "plan": plan.to_dict(),
                     "report": report.to_dict()}, file=sys.stderr)

    exec_bound(plan, argv, strict=options.strict, before_exec=announce if args.json else None,
               child_env=False if args.no_child_env else None)
    return ExitCode.OK  # exec_bound only returns when exec failed, which raises


def cmd_check(args: argparse.Namespace) -> int:
    options = _options(args)  # its --share and --reserve: what the process was started with
    _check_gpu_flags(args)
    machine = options.machine
    result = check_process(
        args.pid, source=options.source, gpus=_gpus(args), physical=_physical(args), node=args.node,
        share=options.policy.share, reserve=args.reserve,
        root=machine if isinstance(machine, CapturedTree) else "/",
        simulate=machine.name if isinstance(machine, Simulated) else None,
    )
    if args.prometheus:
        labels = metrics.worker_labels(host=visible(socket.gethostname()), pid=result.view.pid, gpus=result.gpus)
        print(metrics.prometheus_text(metrics.worker_samples(result, labels)), end="")
    elif args.json:
        _print_json(result.to_dict())
    else:
        print(result.render())
    return _VERDICT_CODES[result.verdict]


#: ``check``'s and ``fleet``'s exit status for each verdict.
_VERDICT_CODES = {
    Verdict.AS_EXPECTED: ExitCode.OK,
    Verdict.NOT_AS_EXPECTED: ExitCode.NOT_AS_EXPECTED,
    Verdict.CANNOT_TELL: ExitCode.CANNOT_TELL,
}


def cmd_fleet(args: argparse.Namespace) -> int:
    report = check_fleet(address=args.address, timeout=args.timeout)
    if args.prometheus:
        print(metrics.prometheus_text(report.samples()), end="")
    elif args.json:
        _print_json(report.to_dict())
    else:
        print(report.render())
    return _VERDICT_CODES[report.verdict]


def cmd_snapshot(args: argparse.Namespace) -> int:
    name = os.path.basename(args.output)
    if not name.endswith(SNAPSHOT_SUFFIXES) or name in SNAPSHOT_SUFFIXES:
        names = ", FILE".join(SNAPSHOT_SUFFIXES)
        raise UsageError(f"argument -o/--output: name the snapshot FILE{names}; got {args.output!r}")
    summary = write_snapshot(args.output)
    nvml = f"NVML: {summary.gpus} GPU(s)" if summary.nvml_error is None else f"NVML: {summary.nvml_error}"
    print(f"wrote {summary.path} ({summary.files} files, {summary.size} bytes; {nvml})")
    print("attach it to a bug report: `gpunuma plan --root FILE` and `gpunuma plan --simulate FILE` replay it")
    return 0


def cmd_machines(args: argparse.Namespace) -> int:
    simulated = topology_source_class("simulated")
    if args.render is not None:
        if args.name is None:
            raise UsageError("machines --render DIR: name the machine to render (gpunuma machines NAME --render DIR)")
        try:
            count = simulated.render(args.name, args.render)
        except LookupError as err:
            raise UsageError(str(err)) from err
        except FileExistsError as err:
            raise UsageError(str(err)) from err
        except OSError as err:
            raise GpunumaError(f"{args.render}: cannot write the machine's files: {err.strerror or err}") from err
        print(f"{args.name}: {count} files and links written to {args.render}")
        return 0
    for name, description in simulated.catalogue():
        if args.name is None or name == args.name:
            print(f"{name:24} {description}")
    if args.name is not None and args.name not in dict(simulated.catalogue()):
        raise UsageError(f"unknown simulated machine {args.name!r}; `gpunuma machines` lists them")
    return 0


# -- options -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Option:
    """One ``--option`` shared by several commands, as ``argparse`` is told it."""

    flag: str
    help: str
    kind: str = "text"  # text, int, count (int >= 0), switch (no value), append (repeatable text), ints (repeatable)
    choices: tuple[str, ...] = ()
    default: object = None
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        extra: dict[str, Any] = {"help": self.help}
        if self.kind == "switch":
            extra["action"] = "store_true"
        elif self.kind == "append":
            extra["action"] = "append"
        elif self.kind == "ints":
            extra["action"] = "append"
            extra["type"] = natural
        elif self.kind == "int":
            extra["type"] = integer
        elif self.kind == "count":
            extra["type"] = natural
        if self.choices:
            extra["choices"] = self.choices
        if self.default is not None:
            extra["default"] = self.default
        if self.metavar is not None:
            extra["metavar"] = self.metavar
        parser.add_argument(self.flag, **extra)


_SOURCE_OPTIONS = (
    _Option("--source", _SOURCE_HELP, choices=SOURCE_NAMES),
    _Option("--simulate", "use a simulated machine (see: gpunuma machines) or a captured host: a gpunuma "
            "snapshot archive or tree, with its recorded NVML answers", metavar="NAME|PATH"),
    _Option("--root", _ROOT_HELP, default="/"),
    _Option("--json", "print the stable JSON shape", kind="switch"),
)
_PHYSICAL_OPTION = _Option(
    "--physical-gpu", "physical GPU index as nvidia-smi and NVML number them (PCI bus order), whatever "
    "CUDA_VISIBLE_DEVICES says; repeat for several; not with --gpu", kind="ints", metavar="N",
)
_POLICY_OPTIONS = (
    _Option("--gpu", "local GPU index (cuda:N), UUID or bus id; repeat for several; default: from Ray, "
            "LOCAL_RANK or CUDA_VISIBLE_DEVICES", kind="append", metavar="GPU"),
    _PHYSICAL_OPTION,
    _Option("--node", "bind to this NUMA node explicitly", kind="int"),
    _Option("--scope", "CPU scope (default node)", choices=tuple(s.value for s in CpuScope)),
    _Option("--memory", "memory policy (default preferred)", choices=tuple(m.value for m in MemoryPolicy)),
    _Option("--on-disallowed", "when the cgroup allows none of the node: nearest allowed node, or none",
            choices=tuple(f.value for f in Fallback)),
    _Option("--override-affinity", "rebind even if the CPU affinity was already narrowed (taskset, numactl, Slurm)",
            kind="switch"),
    _Option("--spread-unknown", "when GPUs report no locality, spread them over all nodes by rank", kind="switch"),
    _Option("--share", "take part I (from 0) of N equal parts of the planned CPUs, whole cores (default: "
            "GPUNUMA_SHARE, else all of them)", metavar="I/N"),
    _Option("--reserve", "keep the first K cores of every node out of the plan (default: GPUNUMA_RESERVE, else 0)",
            kind="count", metavar="K"),
)
_EXEC_OPTIONS = (
    *_SOURCE_OPTIONS,
    *_POLICY_OPTIONS,
    _Option("--dry-run", "print the plan, run nothing", kind="switch"),
    _Option("--strict", "fail instead of running unbound", kind="switch"),
    _Option("--no-child-env", "hand the command none of the binding's variables (OMP_*, GPUNUMA_NODE/CPUS, "
            "NCCL_IB_HCA, UCX_NET_DEVICES); default: GPUNUMA_CHILD_ENV, else hand them down", kind="switch"),
)


def _add(parser: argparse.ArgumentParser, options: tuple[_Option, ...]) -> None:
    for option in options:
        option.add_to(parser)


def _pid(text: str) -> str:
    """``check --pid``: ``self`` or a positive decimal process id, never a path under ``/proc``."""
    number = decimal(text)
    if text != "self" and (number is None or number < 1):
        raise argparse.ArgumentTypeError(f"expected a process id (a positive whole number) or self, got {text!r}")
    return text


def _seconds(text: str) -> float:
    """``fleet --timeout``: seconds, a finite number of 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds (a number of 0 or more), got {text!r}")
    return value


def _add_output(parser: argparse.ArgumentParser) -> None:
    """``--json`` or ``--prometheus``: the two machine-readable outputs of ``check`` and ``fleet``."""
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the stable JSON shape")
    output.add_argument("--prometheus", action="store_true",
                        help="print the figures in Prometheus's text format (needs gpunuma[metrics]: "
                             "prometheus_client)")


def build_parser() -> argparse.ArgumentParser:
    class Parser(argparse.ArgumentParser):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            # No abbreviations (--js for --json): main tells JSON mode from argv before argparse reads it.
            kwargs.setdefault("allow_abbrev", False)
            super().__init__(*args, **kwargs)

        def error(self, message: str) -> NoReturn:
            raise UsageError(message)

    from gpunuma import __version__

    parser = Parser(prog="gpunuma", description="Bind GPU worker processes to the NUMA node and CPUs of their GPU: "
                    "see the topology and the plan, check a running process, start a program bound.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what gpunuma does")
    parser.add_argument("--version", action="version", version=f"gpunuma {__version__}")
    sub = parser.add_subparsers(dest="command_name", required=True)

    topo = sub.add_parser("topo", help="print NUMA nodes, CPUs and GPUs with their locality")
    _add(topo, _SOURCE_OPTIONS)
    topo.set_defaults(func=cmd_topo)

    plan = sub.add_parser("plan", help="print the binding plan for a GPU, with its reasons")
    _add(plan, (*_SOURCE_OPTIONS, *_POLICY_OPTIONS))
    plan.add_argument("--env", action="store_true",
                      help="print the environment a child of the bound process gets (OMP_*, GPUNUMA_NODE/CPUS, "
                           "NCCL_IB_HCA, UCX_NET_DEVICES) as shell exports, or JSON with --json")
    plan.set_defaults(func=cmd_plan)

    run = sub.add_parser("exec", help="bind this process to the GPU's node, then exec the command")
    _add(run, _EXEC_OPTIONS)
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    run.set_defaults(func=cmd_exec)

    check = sub.add_parser("check", help="is this process bound right? read the kernel's view of a process")
    check.add_argument("--pid", default="self", type=_pid, help="process id (default: this process)")
    check.add_argument("--gpu", action="append", metavar="GPU",
                       help="the GPU it should be bound to: its local cuda:N, a UUID or bus id (default: from its "
                            "CUDA_VISIBLE_DEVICES or LOCAL_RANK)")
    _PHYSICAL_OPTION.add_to(check)
    check.add_argument("--node", type=integer, metavar="N",
                       help="the NUMA node it should be bound to (a process started with gpunuma exec --node N; "
                            "default: its GPU's, else what gpunuma bound it to before it started)")
    for option in _POLICY_OPTIONS:
        if option.flag in ("--share", "--reserve"):  # what the process was started with, when not in its environment
            option.add_to(check)
    check.add_argument("--source", choices=SOURCE_NAMES, help=_SOURCE_HELP)
    check.add_argument("--simulate", metavar="NAME|PATH",
                       help="the process runs on this simulated machine (GPUNUMA_SIMULATE): read its simulated kernel")
    check.add_argument("--root", default="/", help=_ROOT_HELP)
    _add_output(check)
    check.set_defaults(func=cmd_check)

    fleet = sub.add_parser("fleet", help="check every GPU worker of a Ray cluster, each on its own node")
    fleet.add_argument("--address", metavar="ADDR",
                       help="the Ray cluster (default: RAY_ADDRESS, else auto: the cluster this host runs)")
    fleet.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="S",
                       help="seconds to wait for the nodes' answers; a node silent by then is listed as such "
                            "(default: %(default)g)")
    _add_output(fleet)
    fleet.set_defaults(func=cmd_fleet)

    snapshot = sub.add_parser(
        "snapshot", help="write this host's kernel files and NVML answers to a small archive for a bug report"
    )
    snapshot.add_argument("-o", "--output", default="gpunuma-snapshot.tar.gz", metavar="FILE",
                          help="the archive to write: .tar.gz, .tar.bz2 or .tar.xz (default: %(default)s)")
    snapshot.set_defaults(func=cmd_snapshot)

    machines = sub.add_parser("machines", help="list the simulated machines for --simulate")
    machines.add_argument("name", nargs="?", metavar="NAME", help="one machine only")
    machines.add_argument("--render", metavar="DIR",
                          help="write NAME's kernel files (sys/, proc/, dev/) into DIR, a new or empty folder")
    machines.set_defaults(func=cmd_machines)
    return parser


def _run(args: Any) -> int:
    """The command; ``--root PATH`` other than ``/`` is a captured tree (a folder or an archive), read into memory."""
    command: Callable[[Any], int] = args.func
    root = getattr(args, "root", "/")
    if root == "/":
        return int(command(args))
    args.captured = open_tree(root)
    for note in args.captured.notes:
        logger.info("%s: %s", root, note)
    return int(command(args))


class _OutputError(GpunumaError):
    """The command's output cannot be written (a full disk): one line and :attr:`ExitCode.ERROR`."""


class _Output:
    """This command's stdout: a reader that left early (``| head``) is no error and changes no exit
    status (later output is dropped); any other failed write (``ENOSPC``) is an :class:`_OutputError`.
    Text output (``escape``) reaches the terminal through :func:`~gpunuma.tools.terminal.visible`."""

    def __init__(self, stream: Any, *, escape: bool = True) -> None:
        self.stream = stream
        self.escape = escape
        self.gone = stream is None  # stdout closed (>&-): nowhere to write

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self.stream.write(visible(text, "\n\t") if self.escape else text)
            except BrokenPipeError:
                self._reader_left()
            except OSError as err:
                raise _OutputError(f"cannot write the output: {err.strerror or err}") from err
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._reader_left()
            except OSError as err:
                raise _OutputError(f"cannot write the output: {err.strerror or err}") from err

    def _reader_left(self) -> None:
        self.gone = True
        try:  # what Python still holds for stdout would fail again at exit: send it nowhere
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())
        except (OSError, ValueError, AttributeError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class _Diagnostics:
    """This command's stderr (its error line, warnings and ``-v`` logging): text from others escaped as on
    stdout; a stderr that is closed (``2>&-``) or cannot take a line (``2>/dev/full``) drops it and leaves the
    exit status to say what happened."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        if self.stream is not None:
            try:
                self.stream.write(visible(text, "\n\t"))
            except (OSError, ValueError):  # ValueError: a stream already closed
                pass
        return len(text)

    def flush(self) -> None:
        if self.stream is not None:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every outcome is an :class:`ExitCode`, every error one line on stderr.

    Under ``--json`` an error is also a JSON object on stdout (:func:`_error_json`), so a script
    piping into ``jq`` gets the reason.
    """
    words = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in words[: words.index("--") if "--" in words else len(words)]
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = _Output(stdout, escape=not as_json)  # JSON escapes every control character itself
    sys.stderr = _Diagnostics(stderr)
    previous = _catch_sigterm()
    try:
        try:
            return _main(words, as_json)
        except (KeyboardInterrupt, Terminated) as err:
            # The command stopped where it was; `with` blocks and `finally` clauses removed what it had made.
            line = "interrupted (Ctrl-C)" if isinstance(err, KeyboardInterrupt) else str(err)
            return _fail(err, f"gpunuma: {line}", as_json, message=line)
        finally:
            try:
                sys.stdout.flush()
            except _OutputError as err:
                _say(f"gpunuma: error: {err}")
    finally:
        _release_sigterm(previous)
        sys.stdout, sys.stderr = stdout, stderr


def _main(words: list[str], as_json: bool) -> int:
    try:
        args = build_parser().parse_args(words)
    except UsageError as err:
        return _fail(err, f"gpunuma: error: {err}{_help_hint(words)}", as_json)
    except _OutputError as err:  # -h or --version into a full disk or a closed pipe
        return _fail(err, f"gpunuma: error: {err}", False)
    # gpunuma's lines on stderr, each "gpunuma: ..." (the messages carry no prefix): warnings, and with -v what it does.
    shown = _show_lines(logging.INFO if args.verbose else logging.WARNING)
    try:
        code = _run(args)
        sys.stdout.flush()
        return code
    except UsageError as err:
        return _fail(err, f"gpunuma: error: {err}{_help_hint(words)}", as_json)
    except (GpunumaError, LookupError) as err:
        prefix = "gpunuma exec" if isinstance(err, CommandError) else "gpunuma: error"
        return _fail(err, f"{prefix}: {err}", bool(getattr(args, "json", False)))
    finally:
        shown()


def _help_hint(words: Sequence[str]) -> str:
    command = next((w for w in words if w in _COMMANDS), None)
    return f" (gpunuma {command} -h for help)" if command else " (gpunuma -h for help)"


_COMMANDS = ("topo", "plan", "exec", "check", "fleet", "snapshot", "machines")


def _fail(err: BaseException, line: str, as_json: bool, *, message: str | None = None) -> int:
    """Say why in one line on stderr (and as JSON on stdout under ``--json``); the exit status that fits ``err``."""
    code = exit_code_for(err)
    if as_json and not isinstance(err, _OutputError):
        try:
            _print_json(_error_json(err, code, message))
            sys.stdout.flush()
        except _OutputError as output:
            _say(f"gpunuma: error: {output}")
    _say(line)
    return code


def _say(line: str) -> None:
    """One line on stderr, anything in it that would break the line escaped; a stderr that is closed (``2>&-``)
    or cannot take it (``2>/dev/full``) leaves the exit status to say it."""
    if sys.stderr is None:  # print(file=None) would write to stdout
        return
    try:
        print(visible(line), file=sys.stderr)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
