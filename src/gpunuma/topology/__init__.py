"""Topology adapters: sysfs, NVML and the automatic combination of both."""
