"""``gpunuma.verify()``: is this process still bound as gpunuma bound it, and where is its memory? Put it back.

Libraries change a process's affinity after it was bound (a communicator library pinning its threads and
restoring another mask, an OpenMP runtime placing its team, a second binder un-pinning every thread). verify
compares every thread with the binding in force (:func:`gpunuma.last_report`, through the binder that applied
it) and classifies each (:class:`~gpunuma.core.readback.Drift`); ``repair=True`` sets the drifted ones back
through that same binder.
"""

from __future__ import annotations

import logging

from gpunuma import compose
from gpunuma.core.kernel_policy import Mempolicy, Mode
from gpunuma.core.plan import BindingPlan
from gpunuma.core.ports import Binder
from gpunuma.core.readback import Drift, Repair, compare, cpu_drift, drift, narrowed_within, policy_drift
from gpunuma.core.reasons import Reason
from gpunuma.core.report import KernelView
from gpunuma.errors import GpunumaError
from gpunuma.settings import configure
from gpunuma.tools.check import CheckResult

logger = logging.getLogger(__name__)


def verify(*, repair: bool = False, include_narrowed: bool = False) -> CheckResult:
    """Compare every thread of this process with the binding in force; with ``repair``, put it back where it drifted.

    Returns what :func:`~gpunuma.check_process` returns: the kernel's view, the binding in force as ``plan``,
    each thread's ``drift`` (None, ``narrowed``, ``moved``, ``widened``, ``policy``), the mismatches (moved,
    widened, policy), where the process's pages are (``memory``, ``local_fraction``) and a verdict.
    ``repair=True`` sets moved and widened threads back to the bound CPUs and the calling thread's memory policy
    back to the bound one (only the calling thread's policy can be read or set), through the binder that bound
    the process; ``include_narrowed=True`` also widens narrowed threads back to the whole binding (by default a
    narrowing within it, such as an OpenMP runtime placing its threads, is the program's choice). The result
    shows the process after the repair and lists each thread repaired with the drift it had (``repaired``).
    Nothing bound in this process (no binding held yet): no plan, verdict "cannot tell", a note says why.
    """
    in_force = compose.binding_in_force()
    if in_force is None:
        return _nothing_in_force()
    report, binder = in_force
    expected = report.in_force()
    view = binder.read_back()
    repaired: tuple[Repair, ...] = ()
    notes: list[Reason] = []
    if repair:
        repaired, refused = _repair(binder, expected, view, report.memory_policy, include_narrowed)
        if refused is not None:
            notes.append(refused)
        if repaired:
            view = binder.read_back()
            logger.info("put the binding back on %d thread(s): %s", len(repaired),
                        ", ".join(f"{r.tid} ({r.drift.value})" for r in repaired))
    return CheckResult(
        view=view,
        gpus=expected.gpus,
        plan=expected,
        mismatches=compare(expected, view, within=True),
        notes=(*notes, *narrowed_within(expected, view)),
        drift=drift(expected, view),
        memory=binder.pages(),
        repaired=repaired,
    )


def _repair(
    binder: Binder, expected: BindingPlan, view: KernelView, held_word: str | None, include_narrowed: bool
) -> tuple[tuple[Repair, ...], Reason | None]:
    """Set the drifted threads back; each thread set with the drift it had, and why the policy was not set back."""
    found = dict(zip((t.tid for t in view.threads), drift(expected, view), strict=True))
    wanted = {Drift.MOVED, Drift.WIDENED, *((Drift.NARROWED,) if include_narrowed else ())}
    cpus_to_set = [t.tid for t in view.threads if cpu_drift(expected.cpus, t.cpus) in wanted]
    policy = policy_drift(expected, view)
    mempolicy = None
    if held_word is not None and (policy is Drift.POLICY or (policy is Drift.NARROWED and include_narrowed)):
        mempolicy = Mempolicy(Mode[held_word.upper()], expected.memory_nodes)
    if not cpus_to_set and mempolicy is None:
        return (), None
    refused: Reason | None = None
    done = set(binder.repair(cpus_to_set, expected.cpus)) if cpus_to_set else set()
    if mempolicy is not None:
        try:
            binder.repair((), expected.cpus, mempolicy)
        except GpunumaError as err:
            mempolicy = None
            refused = Reason.of("verify_policy_not_repaired", error=str(err))
    repaired = []
    for thread in view.threads:
        what = (*(("cpus",) if thread.tid in done else ()),
                *(("mempolicy",) if mempolicy is not None and thread.tid == view.mempolicy_thread else ()))
        had = found.get(thread.tid)
        if what and had is not None:
            repaired.append(Repair(thread.tid, had, what))
    return tuple(repaired), refused


def _nothing_in_force() -> CheckResult:
    """This process as the kernel holds it, with no binding to compare with, and why."""
    machine = configure(binding=False, strict=False, warn=False).machine
    view, _ = compose.process_state("self", machine)
    latest = compose.last_report()
    why = latest.reasons[-1] if latest is not None and latest.reasons else "no binding was attempted"
    return CheckResult(
        view=view,
        gpus=(),
        plan=None,
        mismatches=(),
        notes=(Reason.of("verify_nothing_in_force", why=why),),
        memory=compose.process_pages("self", machine),
    )
