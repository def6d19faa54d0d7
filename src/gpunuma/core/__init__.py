"""The pure core: frozen values, the ports, and the binding decision.

Nothing here reads files, the environment or the kernel: every function maps values to values,
so the planner runs the same in a test, a Ray actor or a replay of a captured machine.
"""
