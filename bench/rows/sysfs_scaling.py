"""SysfsTopology.read() of generated 256-, 512- and 1024-CPU trees: the cost and its slope per CPU."""

from __future__ import annotations

from pathlib import Path

from compat import load
from harness import Budget, Context, RowResult, Samples, Stats, fmt_ns, sample_trees, time_calls, verdict

from rows.machines import generated, rendered

KEY = "sysfs-1024"
WHAT = "sysfs topology read, generated 16-node, 1024-CPU, 16-GPU tree (+ 256/512-CPU variants)"
TARGET = "< 20 ms at 1024 CPUs; linear in CPUs"
LIMIT_NS = 20_000_000
#: t(1024)/t(512) above this means worse than linear (2.0 is exactly linear; fixed costs push it lower).
SUPERLINEAR_RATIO = 2.3
SOCKETS = (2, 4, 8)


def _slope(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares (slope ns/CPU, intercept ns) of median time against CPU count."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx
    return slope, mean_y - slope * mean_x


def _label(cpus: int) -> str:
    return f"{cpus} CPUs, {cpus // 64} nodes, {cpus // 64} GPUs"


def prepare(workdir: Path) -> None:
    """Render the simulated trees this row reads (``--compare``: once, by this checkout, for every tree)."""
    for sockets in SOCKETS:
        rendered(generated(sockets), workdir)


def sample(budget: Budget, workdir: Path) -> Samples:
    sources = {}
    for sockets in SOCKETS:
        simulated, root = rendered(generated(sockets), workdir)
        source = load("SysfsTopology")(root=root)
        topology = source.read()
        assert len(topology.cpus) == simulated.cpu_count and len(topology.nodes) == 2 * sockets, "tree misread"
        assert len(topology.gpus) == 2 * sockets, "tree misread"
        sources[simulated.cpu_count] = source
    samples: dict[int, list[int]] = {cpus: [] for cpus in sources}
    # Interleave the three sizes so drift on the host hits each equally.
    for _ in range(budget.reps(40, 3)):
        for cpus, source in sources.items():
            samples[cpus].extend(time_calls(source.read, reps=2 if budget.quick else 5, warmup=1))
    return {"series": {_label(cpus): values for cpus, values in samples.items()}}


def run(ctx: Context) -> list[RowResult]:
    return [_result(tree, samples) for tree, samples in sample_trees(ctx, "sysfs_scaling", sample).items()]


def _result(tree: str, samples: Samples) -> RowResult:
    stats = {cpus: Stats.of(samples["series"][_label(cpus)]) for cpus in (256, 512, 1024)}
    slope, intercept = _slope([(cpus, s.median_ns) for cpus, s in stats.items()])
    t256, t512, t1024 = (stats[c].median_ns for c in (256, 512, 1024))
    ratio_1024_512 = t1024 / t512
    met = t1024 < LIMIT_NS and ratio_1024_512 <= SUPERLINEAR_RATIO
    return RowResult(
        key=KEY,
        what=WHAT,
        target=TARGET,
        series=tuple((_label(cpus), s) for cpus, s in stats.items()),
        headline=(
            f"1024 CPUs {fmt_ns(t1024)}; {slope / 1000:.2f} µs/CPU + {fmt_ns(intercept)}; "
            f"t1024/t512 {ratio_1024_512:.2f}, t512/t256 {t512 / t256:.2f} (2.00 = linear)"
        ),
        verdict=verdict(met),
        derived={
            "median_ns_by_cpus": {str(c): s.median_ns for c, s in stats.items()},
            "slope_ns_per_cpu": slope,
            "intercept_ns": intercept,
            "ratio_1024_over_512": ratio_1024_512,
            "ratio_512_over_256": t512 / t256,
        },
        tree=tree,
    )
