"""The bench rows, in table order. Each module exposes ``KEY``, ``WHAT``, ``TARGET`` and
``run(ctx) -> list[RowResult]`` (one result per tree of ``ctx.trees``, in that order)."""

ORDER = (
    "import_cost",
    "cold_bind",
    "exec_cmd",
    "sysfs_dgx",
    "sysfs_scaling",
    "plan",
    "sim_bind",
    "sim_plan",
    "archive_read",
    "bind_threads",
    "verify",
    "numa_maps",
    "migrate",
    "numactl",
    "ray_actors",
    "fleet",
    "nvml",
    "suite",
)
