"""OpenMP children of processes that share a node: each gets its own places, never its siblings'.

A real OpenMP program (compiled here with ``gcc -fopenmp``, run by libgomp) reports the CPU and the affinity of
each of its threads; two of them are started the way gpunuma starts rank 0 and rank 1 of a node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gpunuma.core.cpuset import CpuSet
from gpunuma.core.planner import plan_binding
from gpunuma.core.policy import CpuScope, MemoryPolicy, Policy
from gpunuma.launch import exec_argv
from gpunuma_fakes import build, machine

DGX = machine("dgx-h100")  # node 0: cores 0-55 (siblings +112), GPUs 0-3; node 1: cores 56-111, GPUs 4-7

#: Each thread of the team: its number, the CPU it runs on and the CPUs it may run on.
PROGRAM = r"""
#define _GNU_SOURCE
#include <omp.h>
#include <sched.h>
#include <stdio.h>

int main(void) {
    #pragma omp parallel
    {
        cpu_set_t mask;
        char list[4096];
        int used = 0;
        sched_getaffinity(0, sizeof mask, &mask);
        for (int cpu = 0; cpu < CPU_SETSIZE && used < (int)sizeof list - 16; cpu++)
            if (CPU_ISSET(cpu, &mask)) used += snprintf(list + used, sizeof list - used, "%s%d", used ? "," : "", cpu);
        #pragma omp critical
        printf("%d %d %s\n", omp_get_thread_num(), sched_getcpu(), list);
    }
    return 0;
}
"""


def places_cpus(env: dict[str, str]) -> CpuSet:
    """The CPUs of ``OMP_PLACES`` as gpunuma writes it: ``{first}:count`` runs and ``{cpu}`` places."""
    cpus: set[int] = set()
    for place in env["OMP_PLACES"].split(","):
        first, _, count = place.partition(":")
        start = int(first.strip("{}"))
        cpus.update(range(start, start + int(count or 1)))
    return CpuSet.of(cpus)


def node_plans(gpus: range):
    return {gpu: plan_binding(DGX.topology(), [gpu], DGX.allowed(), Policy()) for gpu in gpus}


class TestThePlan:
    @pytest.mark.parametrize("node, gpus", [(0, range(4)), (1, range(4, 8))])
    def test_the_four_processes_of_a_dgx_h100_node_get_disjoint_places_of_whole_cores(self, node, gpus) -> None:
        envs = {gpu: plan.env() for gpu, plan in node_plans(gpus).items()}
        places = {gpu: places_cpus(env) for gpu, env in envs.items()}
        node_cpus = DGX.topology().node(node).cpus

        # 56 cores / 4 GPUs = 14 cores each, with their 14 SMT siblings: 28 places, 28 threads.
        assert all(env["OMP_NUM_THREADS"] == "28" and env["OMP_PROC_BIND"] == "close" for env in envs.values())
        assert all(len(cpus) == 28 for cpus in places.values())
        assert sum(len(cpus) for cpus in places.values()) == len(node_cpus) == 112, "pairwise disjoint"
        assert CpuSet.of(cpu for cpus in places.values() for cpu in cpus) == node_cpus
        first = 56 * node
        assert envs[gpus[0]]["OMP_PLACES"] == f"{{{first}}}:14,{{{first + 112}}}:14", "rank 0: the node's first cores"
        assert all(envs[gpu]["GPUNUMA_CPUS"] == node_cpus.to_list() for gpu in gpus), "each is bound to the node"

    def test_a_process_of_two_gpus_of_a_node_gets_both_their_places_and_threads(self) -> None:
        got = plan_binding(DGX.topology(), [2, 3], DGX.allowed(), Policy())

        assert got.env()["OMP_PLACES"] == "{28}:28,{140}:28"  # ranks 2 and 3 of node 0: cores 28-55
        assert got.env()["OMP_NUM_THREADS"] == "56"

    def test_the_socket_scope_splits_the_socket_among_the_gpus_planned_on_it(self) -> None:
        envs = [plan.env() for plan in (plan_binding(DGX.topology(), [gpu], DGX.allowed(),
                                                     Policy(cpu_scope=CpuScope.SOCKET)) for gpu in range(4))]

        assert len({env["OMP_PLACES"] for env in envs}) == 4
        assert sum(len(places_cpus(env)) for env in envs) == 112

    def test_a_process_alone_on_its_cpus_gets_a_place_per_planned_cpu(self) -> None:
        alone = plan_binding(DGX.topology(), [5], DGX.allowed(), Policy(cpu_scope=CpuScope.EXCLUSIVE))

        assert alone.env()["OMP_PLACES"] == "{70}:14,{182}:14" and alone.env()["OMP_NUM_THREADS"] == "28"

    def test_an_explicit_node_hands_down_no_places_since_its_siblings_are_unknown(self) -> None:
        env = plan_binding(DGX.topology(), [], DGX.allowed(), Policy(), node=1).env()

        assert "OMP_PLACES" not in env and "OMP_PROC_BIND" not in env
        assert (env["OMP_NUM_THREADS"], env["GPUNUMA_CPUS"]) == ("112", "56-111,168-223")

    def test_the_plan_json_names_the_places(self) -> None:
        shape = node_plans(range(5, 6))[5].to_dict()

        assert (shape["places"], shape["threads"]) == ("70-83,182-195", 28)


# -- a real libgomp program, started the way gpunuma starts two ranks of a node ------------------------------------
#: Node 0 holds CPUs 0 and 1 (the ones this test runs its programs on) and GPUs 0 and 1; node 1 is elsewhere.
TWO_GPUS_ON_NODE_0 = build(sockets=1, nodes_per_socket=2, cores_per_node=2, gpus_per_node=2, name="two-per-node")


@pytest.fixture(scope="module")
def openmp_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (.ci/run installs gcc and libgomp1): no OpenMP program to run")
    folder = tmp_path_factory.mktemp("openmp")
    (folder / "threads.c").write_text(PROGRAM)
    built = subprocess.run([gcc, "-fopenmp", "-O0", "-o", str(folder / "threads"), str(folder / "threads.c")],
                           capture_output=True, text=True)
    if built.returncode != 0:
        pytest.skip(f"gcc -fopenmp failed (libgomp missing?): {built.stderr.strip()[-200:]}")
    return folder / "threads"


def test_two_ranks_of_a_node_run_their_openmp_threads_on_disjoint_cpus(openmp_program) -> None:
    if not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("CPUs 0 and 1 are not both available to this process")
    plans = [plan_binding(TWO_GPUS_ON_NODE_0.topology(), [gpu], TWO_GPUS_ON_NODE_0.allowed(),
                          Policy(memory=MemoryPolicy.NONE)) for gpu in (0, 1)]
    assert [plan.cpus.to_list() for plan in plans] == ["0-1", "0-1"], "both ranks are bound to node 0"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GPUNUMA_", "GOMP_"))}

    # Both at once, each bound and handed its environment by gpunuma's launcher, then exec'ing the program.
    running = [subprocess.Popen(exec_argv(plan, [str(openmp_program)]), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=clean) for plan in plans]
    outputs = [process.communicate(timeout=60) for process in running]
    assert [process.returncode for process in running] == [0, 0], [err for _, err in outputs]

    teams = []
    for out, _ in outputs:
        threads = [line.split() for line in out.splitlines()]
        assert threads, "the program reports its team"
        teams.append([(int(cpu), CpuSet.parse_list(mask)) for _, cpu, mask in threads])
    masks = [CpuSet.of(cpu for _, mask in team for cpu in mask) for team in teams]
    assert masks == [CpuSet.of({0}), CpuSet.of({1})], "libgomp pinned each rank's threads to its own place"
    assert [{cpu for cpu, _ in team} for team in teams] == [{0}, {1}]
