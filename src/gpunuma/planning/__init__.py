"""Helpers of the pure planner (:mod:`gpunuma.planner`): GPU locality, cgroup fallback, cores, memory.

Nothing here does I/O; every function maps frozen values to frozen values.
"""
