"""``gpunuma check``: is a running process bound right? The kernel's view against the plan.

Reads every thread's affinity and the memory policy back from procfs, finds the GPU the
process uses from its ``CUDA_VISIBLE_DEVICES`` (when its environment is readable), plans
what it should hold and lists the differences in plain words.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gpunuma.errors import GpunumaError
from gpunuma.plan import BindingPlan
from gpunuma.policy import Policy
from gpunuma.ports import TopologySource
from gpunuma.report import KernelView


@dataclass(frozen=True)
class CheckResult:
    """What the kernel holds for a process, the plan for its GPU(s), and how they differ."""

    view: KernelView
    gpus: tuple[int, ...]
    plan: BindingPlan | None
    mismatches: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True unless a plan that binds disagrees with what the kernel holds."""
        return not self.mismatches

    def render(self) -> str:
        view = self.view
        lines = [f"process {view.pid}: CPUs allowed {view.cpus_allowed.to_list()}, "
                 f"memory nodes allowed {','.join(str(n) for n in sorted(view.mems_allowed))}, "
                 f"memory policy {view.mempolicy or 'unreadable'}"
                 + (f" {','.join(str(n) for n in view.mempolicy_nodes)}" if view.mempolicy_nodes else "")]
        groups: dict[str, list[str]] = {}
        for thread in view.threads:
            groups.setdefault(thread.cpus.to_list(), []).append(f"{thread.tid} ({thread.name})")
        for cpus, threads in groups.items():
            lines.append(f"  {len(threads)} thread(s) on CPUs {cpus}: {', '.join(threads[:6])}"
                         + (" ..." if len(threads) > 6 else ""))
        if self.plan is not None:
            lines.append(f"expected: {self.plan.summary()}")
            lines.extend(f"  - {reason}" for reason in self.plan.reasons)
        lines.extend(f"note: {note}" for note in self.notes)
        if self.mismatches:
            lines.append("NOT bound as planned:")
            lines.extend(f"  ! {m}" for m in self.mismatches)
        elif self.plan is not None and self.plan.binds:
            lines.append("OK: every thread is bound as planned")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.view.pid,
            "ok": self.ok,
            "gpus": list(self.gpus),
            "cpus_allowed": self.view.cpus_allowed.to_list(),
            "mems_allowed": sorted(self.view.mems_allowed),
            "mempolicy": self.view.mempolicy,
            "mempolicy_nodes": list(self.view.mempolicy_nodes),
            "threads": [{"tid": t.tid, "name": t.name, "cpus": t.cpus.to_list()} for t in self.view.threads],
            "plan": self.plan.to_dict() if self.plan is not None else None,
            "mismatches": list(self.mismatches),
            "notes": list(self.notes),
        }


def process_environ(pid: int | str, root: str | Path = "/") -> dict[str, str] | None:
    """The environment a process started with (``/proc/<pid>/environ``), None when unreadable."""
    try:
        raw = (Path(root) / "proc" / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    env = {}
    for entry in raw.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def check_process(
    pid: int | str = "self",
    *,
    source: str | TopologySource = "auto",
    root: str | Path = "/",
    policy: Policy | None = None,
) -> CheckResult:
    """Read a process's binding back and compare it with the plan for the GPU(s) it uses."""
    from gpunuma.api import make_source
    from gpunuma.identity import resolve_gpus
    from gpunuma.planner import plan_binding
    from gpunuma.readback import compare, read_kernel_view
    from gpunuma.topology.sysfs import SysfsTopology

    view = read_kernel_view(pid, proc_root=Path(root) / "proc")
    notes: list[str] = []
    env = process_environ(pid, root)
    if env is None:
        notes.append(f"the environment of process {pid} is unreadable: its GPU is unknown")
        return CheckResult(view=view, gpus=(), plan=None, mismatches=(), notes=tuple(notes))
    if not any(key in env for key in ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")):
        notes.append("the process sets no CUDA_VISIBLE_DEVICES: it may use every GPU, so no single node is expected")
        return CheckResult(view=view, gpus=(), plan=None, mismatches=(), notes=tuple(notes))
    try:
        topology = make_source(source, root=root).read()
        gpus = resolve_gpus(topology, env=env)
        if not gpus:
            notes.append("the process sees no GPU")
            return CheckResult(view=view, gpus=(), plan=None, mismatches=(), notes=tuple(notes))
        # The process's own cgroup; its affinity is what we check, so a narrowed one must not stop the plan.
        allowed = SysfsTopology(root=root, pid=view.pid).allowed()
        allowed = replace(allowed, affinity=allowed.cpus)
        plan = plan_binding(topology, gpus, allowed, replace(policy or Policy(), override_affinity=True))
    except GpunumaError as err:
        notes.append(f"no plan to compare with: {err}")
        return CheckResult(view=view, gpus=(), plan=None, mismatches=(), notes=tuple(notes))
    return CheckResult(view=view, gpus=tuple(gpus), plan=plan, mismatches=compare(plan, view), notes=tuple(notes))
