"""The bench rows, in table order. Each module exposes ``KEY``, ``WHAT``, ``TARGET`` and
``run(budget, workdir) -> RowResult``."""

ORDER = (
    "import_cost",
    "sysfs_dgx",
    "sysfs_scaling",
    "plan",
    "bind_threads",
    "numactl",
    "ray_actors",
    "nvml",
)
