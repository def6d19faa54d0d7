"""Adapters: everything that touches the machine (sysfs, procfs, NVML, syscalls, libnuma, numactl).

Topology sources (:mod:`.sysfs`, :mod:`.nvml`, :mod:`.auto`, :mod:`.static`) implement
:class:`gpunuma.core.ports.TopologySource`; binders (:mod:`.libnuma`, :mod:`.syscall`,
:mod:`.noop`) implement :class:`gpunuma.core.ports.Binder`; :mod:`.numactl` is a launcher.
"""
