"""``split_host(n)``: this host's own CPUs as n simulated nodes, so the real binders move real threads here.

The shape tests read a rendered catalogue machine as "the host" (``root=``), so their numbers are
fixed; the binding tests read this CI machine and bind a spawned child with the real binders.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from dataclasses import replace
from typing import Any

import pytest

from gpunuma.adapters.procfs import read_thread_affinities
from gpunuma.api import bind_to_gpu
from gpunuma.core.cpuset import CpuSet
from gpunuma.errors import GpunumaError
from gpunuma_fakes import HostTooSmallError, machine, split_host


def host_cpus() -> CpuSet:
    return CpuSet.of(os.sched_getaffinity(0))


def test_a_rendered_dgx_as_the_host_splits_into_four_contiguous_runs(rendered):
    four = split_host(4, gpus_per_node=2, root=str(rendered("dgx-h100")))

    assert [n.cpus for n in four.nodes] == ["0-55", "56-111", "112-167", "168-223"]
    assert [n.memory_mb > 0 for n in four.nodes] == [True, False, False, False]
    assert four.expected_nodes == {0: 0, 1: 0, 2: 1, 3: 1, 4: 2, 5: 2, 6: 3, 7: 3}
    topology = four.topology()
    assert [g.numa_node for g in topology.gpus] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_the_source_answers_from_the_tree_so_a_narrowed_process_is_modelled_by_its_affinity(rendered, tmp_path):
    """The source reads the rendered tree, not the live process: a test that taskset-narrows its runner does
    not change what the source allows. A narrowed process is ``replace(host, affinity=...)``, as on every
    catalogue machine, and then the plan leaves it alone."""
    from gpunuma.api import plan_for

    host = split_host(2, gpus_per_node=1, root=str(rendered("dgx-h100")))
    assert plan_for(0, source=host.source(tmp_path / "whole"), env={}).nodes == (0,)

    narrowed = replace(host, affinity="1")
    plan = plan_for(0, source=narrowed.source(tmp_path / "narrowed"), env={})
    assert plan.nodes == () and "affinity_narrowed" in plan.reason_codes


def test_cpus_outside_the_cgroup_stay_in_the_tree_but_out_of_the_split(rendered):
    # The container may use 0-47,112-159 of the DGX: only those are shared out.
    two = split_host(2, root=str(rendered("container-dgx-h100")))

    assert two.allowed().cpus == CpuSet.parse_list("0-47,112-159")
    usable = [CpuSet.parse_list(n.cpus) & two.allowed().cpus for n in two.nodes]
    assert usable == [CpuSet.parse_list("0-47"), CpuSet.parse_list("112-159")]
    assert CpuSet.parse_list(two.nodes[0].cpus) | CpuSet.parse_list(two.nodes[1].cpus) == CpuSet.range(0, 223)


def test_on_this_host_the_nodes_cover_the_usable_cpus_and_memory_is_node_0():
    nodes = min(2, len(host_cpus()))
    simulated = split_host(nodes)

    covered = CpuSet()
    for node in simulated.nodes:
        covered = covered | CpuSet.parse_list(node.cpus)
    assert host_cpus() <= covered
    assert simulated.allowed().cpus == host_cpus() and simulated.allowed().mems == frozenset({0})


def test_more_nodes_than_usable_cpus_is_refused_with_the_count():
    with pytest.raises(HostTooSmallError, match=rf"use {len(host_cpus())} CPU"):
        split_host(len(host_cpus()) + 1)


def test_a_host_without_memory_on_node_0_is_refused(render):
    snc = machine("snc")
    nodes = tuple(replace(n, memory_mb=0) if n.id == 0 else n for n in snc.nodes)

    with pytest.raises(HostTooSmallError, match="no memory on node 0"):
        split_host(2, root=str(render(replace(snc, nodes=nodes))))


# -- the real binders, on real threads ---------------------------------------------------------------
def _bind_in_child(gpu: int, binder: str, root: str, queue: Any) -> None:
    """In a spawned child with three threads: bind to ``gpu`` of the split host, then read the kernel."""
    stop = threading.Event()
    extra = [threading.Thread(target=stop.wait) for _ in range(2)]
    for thread in extra:
        thread.start()
    try:
        simulated = split_host(2)
        report = bind_to_gpu(gpu, source=simulated.source(root), binder=binder, env={}, strict=True)
        queue.put((report, read_thread_affinities()))
    except GpunumaError as err:
        queue.put(err)
    finally:
        stop.set()
        for thread in extra:
            thread.join()


@pytest.mark.parametrize("binder", ["libnuma", "syscall"])
def test_the_real_binder_moves_every_real_thread_to_the_gpus_simulated_node(binder, tmp_path):
    if len(host_cpus()) < 2:
        pytest.skip("needs two usable CPUs to split")
    simulated = split_host(2)
    ctx = multiprocessing.get_context("spawn")
    for gpu in (0, 1):
        queue = ctx.Queue()
        child = ctx.Process(target=_bind_in_child, args=(gpu, binder, str(tmp_path / f"tree-{gpu}"), queue))
        child.start()
        outcome = queue.get(timeout=120)
        child.join()
        if isinstance(outcome, GpunumaError) and binder == "libnuma":
            pytest.skip(f"no usable libnuma here: {outcome}")
        assert not isinstance(outcome, Exception), outcome
        report, threads = outcome

        planned = CpuSet.parse_list(simulated.nodes[gpu].cpus) & host_cpus()
        assert report.bound and report.method == binder and report.plan.nodes == (gpu,)
        assert report.cpus == planned and report.mismatches == ()
        assert report.memory_policy == "preferred" and report.memory_nodes == (0,)
        assert len(threads) >= 3 and set(threads.values()) == {planned}, "every real thread, read from /proc"
        assert {t.tid for t in report.kernel.threads} <= set(threads)


@pytest.mark.parametrize("arguments", [{"nodes": "2"}, {"nodes": 2.0}, {"gpus_per_node": True}])
def test_an_argument_that_is_no_int_is_named(arguments):
    with pytest.raises(TypeError, match=next(iter(arguments))):
        split_host(**arguments)
