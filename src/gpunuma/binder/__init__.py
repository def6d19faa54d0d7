"""Binder adapters: libnuma in-process, raw syscalls, numactl launcher and no-op."""
