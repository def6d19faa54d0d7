"""Late binds on a simulated DGX H100: ``migrate=True`` / ``GPUNUMA_MIGRATE=1`` moves the pages a process touched
before it bound to the bound memory node, and says how many and where the memory was before and after.

GPU 5 is on node 1. A process that ran on every CPU touches its first pages on node 0 (its lowest CPU's node).
"""

from __future__ import annotations

import pytest

import gpunuma
from gpunuma.adapters.noop import NoopBinder
from gpunuma.core.policy import MemoryPolicy, Policy
from gpunuma.errors import SettingsError
from gpunuma_fakes import machine
from gpunuma_fakes.kernel import SimulatedKernel


@pytest.fixture
def dgx() -> tuple[object, SimulatedKernel]:
    simulated = machine("dgx-h100")
    return simulated.source(), simulated.kernel()


def late_bind(dgx, **options: object) -> tuple[gpunuma.BindingReport, SimulatedKernel]:
    """Weights loaded before the bind (3,000 pages on node 0), then bound to GPU 5."""
    source, kernel = dgx
    kernel.touch(3_000)
    env = options.pop("env", {})
    return gpunuma.bind_to_gpu(5, source=source, binder=kernel, env=env, **options), kernel  # type: ignore[arg-type]


def test_a_late_bind_with_migrate_moves_what_was_touched_before_to_the_gpus_node(dgx) -> None:
    report, kernel = late_bind(dgx, migrate=True)

    migration = report.migration
    assert report.ok and migration is not None
    assert (migration.nodes, migration.pages_moved, migration.pages_not_moved) == ((1,), 3_000, 0)
    assert (migration.local_before, migration.local_after, migration.page_size) == (0.0, 1.0, 4096)
    assert report.reason_codes[-1] == "migrate_pages_moved"
    assert report.reasons[-1].values | {"ms": 0} == {
        "moved": 3_000, "nodes": "1", "ms": 0, "before": "0%", "after": "100%", "left": 0,
    }
    assert kernel.pages().pages_by_node == {1: 3_000}
    assert gpunuma.last_report() is report, "the binding in force carries its migration"
    assert gpunuma.verify().local_fraction == 1.0
    assert report.to_dict()["migration"]["pages_moved"] == 3_000


@pytest.mark.parametrize(("env", "moved"), [({"GPUNUMA_MIGRATE": "1"}, True), ({"GPUNUMA_MIGRATE": "0"}, False),
                                            ({}, False)])
def test_gpunuma_migrate_switches_it_on_and_it_is_off_by_default(dgx, env, moved) -> None:
    report, kernel = late_bind(dgx, env=env)

    assert (report.migration is not None) is moved
    assert kernel.pages().pages_by_node == ({1: 3_000} if moved else {0: 3_000})
    assert "migrate_pages_moved" not in report.reason_codes or moved


def test_an_explicit_argument_wins_over_gpunuma_migrate(dgx) -> None:
    report, kernel = late_bind(dgx, migrate=False, env={"GPUNUMA_MIGRATE": "1"})

    assert report.migration is None and kernel.pages().pages_by_node == {0: 3_000}


def test_without_a_memory_policy_pages_are_not_moved_and_the_reason_says_why(dgx) -> None:
    report, kernel = late_bind(dgx, migrate=True, policy=Policy(memory=MemoryPolicy.NONE))

    assert report.ok and report.migration is None
    assert report.reason_codes[-1] == "migrate_without_memory_policy"
    assert report.reasons[-1].values == {"policy": "none", "nodes": "1"}
    assert kernel.pages().pages_by_node == {0: 3_000}


def test_a_memory_policy_the_kernel_refused_moves_no_pages_either() -> None:
    simulated = machine("dgx-h100")
    kernel = simulated.kernel(fail="mempolicy_eperm")
    kernel.touch(100)

    report = gpunuma.bind_to_gpu(5, source=simulated.source(), binder=kernel, env={}, migrate=True)

    assert report.bound and report.memory_policy is None and report.migration is None
    assert report.reasons[-1].code == "migrate_without_memory_policy"
    assert report.reasons[-1].values["policy"] == "refused by the kernel"


def test_migrate_pages_refused_by_a_seccomp_profile_keeps_the_binding_and_says_so() -> None:
    simulated = machine("dgx-h100")
    kernel = simulated.kernel(fail="migrate_eperm")
    kernel.touch(100)

    report = gpunuma.bind_to_gpu(5, source=simulated.source(), binder=kernel, env={}, migrate=True, strict=True)

    assert report.ok and report.migration is None
    assert (report.reasons[-1].code, report.reasons[-1].values) == ("migrate_pages_refused", {"errno": "EPERM"})
    assert kernel.pages().pages_by_node == {0: 100}


def test_a_worker_that_touched_nothing_moves_nothing(dgx) -> None:
    source, kernel = dgx

    report = gpunuma.bind_to_gpu(5, source=source, binder=kernel, env={}, migrate=True)

    assert report.migration is not None and report.migration.pages_moved == 0
    assert report.migration.local_before is None and report.migration.local_after is None
    assert report.migration.gigabytes_per_second is None


def test_bind_to_node_moves_them_too() -> None:
    simulated = machine("dgx-h100")
    kernel = simulated.kernel()
    kernel.touch(1_000)  # on node 0

    report = gpunuma.bind_to_node(1, source=simulated.source(), binder=kernel, env={}, migrate=True)

    assert report.migration is not None and report.migration.local_after == 1.0


def test_migrate_that_is_no_bool_is_a_typed_error_whatever_the_mode(dgx) -> None:
    source, kernel = dgx
    with pytest.raises(SettingsError, match="migrate="):
        gpunuma.bind_to_gpu(5, source=source, binder=kernel, env={}, migrate="yes")  # type: ignore[arg-type]


def test_a_gpunuma_migrate_value_not_understood_is_off_with_a_reason_in_best_effort(dgx, caplog) -> None:
    report, _ = late_bind(dgx, env={"GPUNUMA_MIGRATE": "sometimes"})

    assert report.ok and report.migration is None
    assert any("GPUNUMA_MIGRATE='sometimes'" in record.getMessage() for record in caplog.records)


def test_the_noop_binder_records_a_migration_and_moves_nothing() -> None:
    binder = NoopBinder()

    assert binder.migrate([1]) == 0 and binder.migrations == [(1,)]
