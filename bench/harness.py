"""Timing primitives and result values shared by every bench row.

Every row measures with ``time.perf_counter_ns``, warms up first and reports n, min, median and
max of its samples; A/B rows alternate their two sides so drift on a noisy host hits both.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
    """How many repetitions a row runs: ``quick`` shrinks every count for the smoke test."""

    quick: bool = False

    def reps(self, full: int, quick: int) -> int:
        return quick if self.quick else full


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "what": self.what,
            "target": self.target,
            "series": [{"label": label, **stats.as_dict()} for label, stats in self.series],
            "headline": self.headline,
            "verdict": self.verdict,
            "derived": dict(self.derived),
            "notes": list(self.notes),
        }


def skipped(key: str, what: str, target: str, why: str) -> RowResult:
    """A row that could not run here, saying why."""
    return RowResult(key=key, what=what, target=target, series=(), headline=why, verdict=f"skipped: {why}")


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
