"""Timing primitives and result values shared by every bench row.

Every row measures with ``time.perf_counter_ns`` (child processes also by their CPU time, from
``wait4``), warms up first and reports n, min, median and max of its samples; A/B rows alternate their
sides so drift on a noisy host hits both, and ``--compare`` alternates the source trees the same way.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The child that takes one row's samples from another tree (``--compare``).
PROBE = Path(__file__).resolve().parent / "probe.py"


@dataclass(frozen=True)
class Stats:
    """Summary of one series of samples, in nanoseconds."""

    n: int
    min_ns: int
    median_ns: float
    max_ns: int

    @classmethod
    def of(cls, samples_ns: Sequence[int]) -> Stats:
        """Stats of a non-empty list of samples."""
        if not samples_ns:
            raise ValueError("no samples")
        return cls(len(samples_ns), min(samples_ns), float(statistics.median(samples_ns)), max(samples_ns))

    def as_dict(self) -> dict[str, float]:
        return {"n": self.n, "min_ns": self.min_ns, "median_ns": self.median_ns, "max_ns": self.max_ns}


@dataclass(frozen=True)
class Budget:
    """How many repetitions a row runs: ``quick`` shrinks every count for the smoke test.

    ``share`` splits the counts over that many alternated chunks (``--compare`` runs each tree in turns).
    """

    quick: bool = False
    share: int = 1

    def reps(self, full: int, quick: int) -> int:
        return max(1, (quick if self.quick else full) // self.share)


@dataclass(frozen=True)
class Tree:
    """One source tree under test, installed the way a wheel installs it (see ``trees.py``).

    ``label`` names it in the tables (``current``, ``before``); ``python`` is the interpreter of its own
    virtual environment (non-editable install); ``paths`` are its import roots (``src``, ``fakes``), put on
    ``PYTHONPATH`` for the in-process rows run by ``probe.py`` under the bench's interpreter.
    """

    label: str
    source: Path
    python: str
    bin: Path
    paths: tuple[str, ...]

    def script(self, name: str) -> str:
        """A console script of the install (``gpunuma``)."""
        return str(self.bin / name)

    def env(self) -> dict[str, str]:
        """The environment of a child started from the install: its own bytecode, nothing of the bench's."""
        drop = {"PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "PYTHONPATH"}
        return {k: v for k, v in os.environ.items() if k not in drop}


@dataclass(frozen=True)
class Context:
    """What a row runs with: repetition counts, a scratch directory and the trees to measure (current last)."""

    budget: Budget
    workdir: Path
    trees: tuple[Tree, ...]

    @property
    def current(self) -> Tree:
        return self.trees[-1]

    @property
    def comparing(self) -> bool:
        return len(self.trees) > 1


@dataclass(frozen=True)
class RowResult:
    """One row of the table: its series side by side, the derived headline and the verdict.

    ``verdict`` is ``met``, ``missed``, ``reported`` (no target, a ratio to read) or
    ``skipped: <why>``; ``derived`` holds the numbers behind the headline for the JSON.
    """

    key: str
    what: str
    target: str
    series: tuple[tuple[str, Stats], ...]
    headline: str
    verdict: str
    derived: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    #: The tree measured (``current``, ``before``).
    tree: str = "current"

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "tree": self.tree,
            "what": self.what,
            "target": self.target,
            "series": [{"label": label, **stats.as_dict()} for label, stats in self.series],
            "headline": self.headline,
            "verdict": self.verdict,
            "derived": dict(self.derived),
            "notes": list(self.notes),
        }


def skipped(key: str, what: str, target: str, why: str, *, tree: str = "current") -> RowResult:
    """A row that could not run here, saying why."""
    return RowResult(key=key, what=what, target=target, series=(), headline=why, verdict=f"skipped: {why}", tree=tree)


def verdict(met: bool) -> str:
    return "met" if met else "missed"


def time_calls(fn: Callable[[], object], *, reps: int, warmup: int) -> list[int]:
    """``reps`` timed calls of ``fn`` after ``warmup`` untimed ones; one sample per call."""
    return time_batched(fn, reps=reps, batch=1, warmup=warmup)


def time_batched(fn: Callable[[], object], *, reps: int, batch: int, warmup: int) -> list[int]:
    """Like :func:`time_calls` but each sample is the mean of ``batch`` calls (sub-µs work)."""
    for _ in range(warmup):
        fn()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(reps):
        start = clock()
        for _ in range(batch):
            fn()
        samples.append((clock() - start) // batch)
    return samples


def alternate(sides: Mapping[str, Callable[[], int]], *, rounds: int, warmup: int = 1) -> dict[str, list[int]]:
    """Run each side once per round in A B A B order (one warm-up round first); samples per side."""
    for _ in range(warmup):
        for run in sides.values():
            run()
    samples: dict[str, list[int]] = {label: [] for label in sides}
    for _ in range(rounds):
        for label, run in sides.items():
            samples[label].append(run())
    return samples


def child_env(workdir: Path) -> dict[str, str]:
    """The environment for timed child interpreters: bytecode cached under ``workdir``.

    An installed wheel ships compiled bytecode; a checkout run with PYTHONDONTWRITEBYTECODE=1
    (as this CI sets) would recompile every module in every child and time the compiler instead.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env


def timed_process(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Wall time in ns from spawning ``argv`` to its exit; raises if it fails."""
    start = time.perf_counter_ns()
    done = subprocess.run(list(argv), env=dict(env) if env is not None else None, capture_output=True)
    elapsed = time.perf_counter_ns() - start
    if done.returncode != 0:
        raise RuntimeError(f"{argv!r} exited {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


@dataclass(frozen=True)
class ProcessTimes:
    """One child process: wall time from spawn to exit and the CPU time (user + system) it used."""

    wall_ns: int
    cpu_ns: int


def run_process(argv: Sequence[str], env: Mapping[str, str] | None = None) -> ProcessTimes:
    """Run ``argv`` to completion (output discarded); raises if it fails.

    CPU time is the child's own ``rusage`` (``wait4``): what the process cost, whatever else the host ran.
    """
    start = time.perf_counter_ns()
    child = subprocess.Popen(
        list(argv), env=dict(env) if env is not None else None, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert child.stderr is not None
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter_ns() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    child.stderr.close()
    if child.returncode != 0:
        raise RuntimeError(f"{list(argv)!r} exited {child.returncode}: {err.decode(errors='replace')[-2000:]}")
    return ProcessTimes(wall, round((usage.ru_utime + usage.ru_stime) * 1e9))


def alternate_processes(
    sides: Mapping[str, tuple[Sequence[str], Mapping[str, str] | None]], *, rounds: int, warmup: int = 2
) -> dict[str, list[ProcessTimes]]:
    """Each side's command once per round in A B A B order (``warmup`` untimed rounds first)."""
    for _ in range(warmup):
        for argv, env in sides.values():
            run_process(argv, env)
    samples: dict[str, list[ProcessTimes]] = {label: [] for label in sides}
    for _ in range(rounds):
        for label, (argv, env) in sides.items():
            samples[label].append(run_process(argv, env))
    return samples


def paired_ratio(numerator: Sequence[ProcessTimes], denominator: Sequence[ProcessTimes]) -> float:
    """Median of the round-by-round CPU-time ratios of two alternated sides (paired runs)."""
    return float(statistics.median(a.cpu_ns / b.cpu_ns for a, b in zip(numerator, denominator, strict=True)))


def paired_difference_ns(minuend: Sequence[ProcessTimes], subtrahend: Sequence[ProcessTimes]) -> float:
    """Median of the round-by-round CPU-time differences of two alternated sides (paired runs)."""
    return float(statistics.median(a.cpu_ns - b.cpu_ns for a, b in zip(minuend, subtrahend, strict=True)))


def cpu_stats(samples: Sequence[ProcessTimes]) -> Stats:
    return Stats.of([s.cpu_ns for s in samples])


def wall_stats(samples: Sequence[ProcessTimes]) -> Stats:
    return Stats.of([s.wall_ns for s in samples])


#: What a row's ``sample`` returns: ``{"series": {label: [ns, ...]}, "info": {...}}`` (JSON-ready).
Samples = dict[str, Any]


def sample_trees(
    ctx: Context, module: str, sample: Callable[[Budget, Path], Samples], *, chunks: int = 3
) -> dict[str, Samples]:
    """``sample(budget, workdir)`` for every tree, by tree label.

    A lone current tree is sampled in this process (the bench imports it). With ``--compare`` each tree
    runs in ``probe.py`` children with its packages first on ``PYTHONPATH``, the trees taking turns in
    ``chunks`` so drift on the host hits each alike; the series of the chunks are joined.
    """
    if not ctx.comparing:
        return {ctx.current.label: sample(ctx.budget, ctx.workdir)}
    # Every tree reads the same files: the simulated machines rendered here, by this checkout's fakes.
    prepare = getattr(sys.modules[sample.__module__], "prepare", None)
    if prepare is not None:
        prepare(ctx.workdir)
    share = Budget(quick=ctx.budget.quick, share=chunks)
    merged: dict[str, Samples] = {tree.label: {"series": {}, "info": {}} for tree in ctx.trees}
    for _ in range(chunks):
        for tree in ctx.trees:
            part = _probe(tree, module, share, ctx.workdir)
            for label, values in part["series"].items():
                merged[tree.label]["series"].setdefault(label, []).extend(values)
            merged[tree.label]["info"].update(part.get("info", {}))
    return merged


def _probe(tree: Tree, module: str, budget: Budget, workdir: Path) -> Samples:
    env = child_env(workdir)
    env["PYTHONPATH"] = os.pathsep.join([*tree.paths, *filter(None, [os.environ.get("PYTHONPATH")])])
    argv = [sys.executable, str(PROBE), module, "--share", str(budget.share), "--workdir", str(workdir)]
    if budget.quick:
        argv.append("--quick")
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"probe {module} on {tree.label} exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fmt_ns(ns: float) -> str:
    """A duration with a unit that keeps 3 significant figures readable (negative: a saving)."""
    if ns < 0:
        return "-" + fmt_ns(-ns)
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.1f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    return f"{ns / 1_000_000_000:.2f} s"
