"""A pytest plugin (entry point ``pytest11``): simulated GPU machines as fixtures, for downstream CI.

Installed with gpunuma; pytest loads it by itself. Pick the machine with a marker or by indirect
parametrisation, then ask for what you need::
    @pytest.mark.simulated_machine("dgx-h100")
    def test_worker_binds_near_its_gpu(simulated_source, simulated_kernel):
        report = gpunuma.bind_to_gpu(5, source=simulated_source, binder=simulated_kernel, env={})
        assert report.plan.nodes == (1,)

    @pytest.mark.parametrize("simulated_machine", ["dgx-h100", "gb200"], indirect=True)
    def test_every_gpu_binds(simulated_machine, simulated_source): ...

With no code change at all, ``gpunuma_simulate`` sets ``GPUNUMA_SIMULATE`` to the machine for the test:
the code under test (and every process it starts) binds and checks on it through gpunuma's own
argument-free calls::

    @pytest.mark.simulated_machine("dgx-h100")
    def test_my_worker(gpunuma_simulate, monkeypatch):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
        my_server.start_worker()                     # calls gpunuma.bind_to_gpu() itself
        assert gpunuma.check_process().ok

Fixtures: ``simulated_machine`` (the :class:`~gpunuma_fakes.spec.Machine`), ``simulated_source`` (the
real ``auto`` adapter over its tree, built in memory once per process, and a fake NVML),
``simulated_trees`` (the machine's tree written to a folder once per session, for tests about files;
read it, never change it), ``simulated_kernel`` (its
:class:`~gpunuma_fakes.kernel.SimulatedKernel`, fresh per test), ``gpunuma_simulate`` (the machine's name,
set as ``GPUNUMA_SIMULATE`` while the test runs) and ``simulated_ray_cluster`` (a local Ray cluster with one
Ray node per simulated machine, module-scoped; see :class:`SimulatedRayCluster`).
A marker or parameter may name a catalogue machine, be a ``Machine`` itself (``split_host(2)``; not for
``GPUNUMA_SIMULATE``, which carries a name), or name a captured host (a ``gpunuma snapshot`` path, or
:func:`~gpunuma_fakes.snapshot.load_snapshot`'s result).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpunuma.core.ports import TopologySource
from gpunuma.integrations.ray import RayNodeBinder, RayNodeTopology
from gpunuma_fakes.catalogue import machine
from gpunuma_fakes.kernel import SimulatedKernel
from gpunuma_fakes.render import ensure_rendered, fingerprint, write_tree
from gpunuma_fakes.snapshot import Snapshot, load_snapshot
from gpunuma_fakes.source import forget_process_kernels, is_captured
from gpunuma_fakes.spec import Machine

MACHINE_MARKER = "simulated_machine"
CLUSTER_MARKER = "simulated_ray_cluster"
#: The variable that puts gpunuma's argument-free calls on a simulated machine.
SIMULATE = "GPUNUMA_SIMULATE"
#: What a binding in a test process hands down to its children: undone after each test that simulates.
_HANDED_DOWN = ("GPUNUMA_OWN", "GPUNUMA_SIMULATED_KERNEL")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MACHINE_MARKER}(name): the gpunuma_fakes machine (a name or a Machine) the simulated_* fixtures use",
    )
    config.addinivalue_line(
        "markers",
        f"{CLUSTER_MARKER}(*names): the simulated machines (one Ray node each) of the simulated_ray_cluster "
        "fixture; put it on the module (pytestmark), as the cluster lives for the module",
    )


def _as_machine(spec: object) -> Machine:
    if isinstance(spec, (Machine, Snapshot)):
        return spec  # type: ignore[return-value]  # a captured host answers as a Machine does
    if isinstance(spec, str):
        return load_snapshot(spec) if is_captured(spec) else machine(spec)  # type: ignore[return-value]
    raise pytest.UsageError(
        f"a simulated machine is a catalogue name, a snapshot path or a gpunuma_fakes Machine, not {spec!r}"
    )


def _chosen(request: pytest.FixtureRequest, marker: str) -> tuple[object, ...]:
    """The machines a parameter (``indirect=True``, of this fixture or of ``simulated_machine``) or the closest
    marker names; parameters win."""
    param = getattr(request, "param", None)
    if param is None:
        callspec = getattr(request.node, "callspec", None)
        param = callspec.params.get(MACHINE_MARKER) if callspec is not None and marker == MACHINE_MARKER else None
    if param is not None:
        return tuple(param) if isinstance(param, (list, tuple)) else (param,)
    found = request.node.get_closest_marker(marker)
    if found is None or not found.args:
        raise pytest.UsageError(
            f"{request.fixturename} needs a machine: mark the test @pytest.mark.{marker}('dgx-h100') "
            f"or parametrize {request.fixturename!r} with indirect=True (names: `gpunuma machines`)"
        )
    return tuple(found.args)


def simulate_name(spec: object) -> str | None:
    """What ``GPUNUMA_SIMULATE`` says for a machine: its catalogue name or snapshot path; None for a Machine object."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Snapshot):
        return spec.origin
    return None


@pytest.fixture(scope="session")
def simulated_trees(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``simulated_trees(machine)``: the root of that machine's tree, rendered once per session (read only)."""
    roots: dict[str, Path] = {}

    def tree(simulated: Machine) -> Path:
        if isinstance(simulated, Snapshot):  # a captured host: its tree as read, written out once
            key = f"captured {simulated.tree.root}"
            if key not in roots:
                roots[key] = tmp_path_factory.mktemp(simulated.name)
                write_tree(simulated.tree, roots[key])
            return roots[key]
        key = fingerprint(simulated)
        if key not in roots:
            roots[key] = ensure_rendered(simulated, tmp_path_factory.mktemp(simulated.name))
        return roots[key]

    return tree


@pytest.fixture
def simulated_machine(request: pytest.FixtureRequest) -> Machine:
    """The simulated machine of this test: ``@pytest.mark.simulated_machine(NAME)`` or an indirect parameter."""
    (spec,) = _chosen(request, MACHINE_MARKER)[:1]
    return _as_machine(spec)


@pytest.fixture
def simulated_source(simulated_machine: Machine) -> TopologySource:
    """The real ``auto`` topology source over the machine's tree (held in memory) and its fake NVML (picklable)."""
    return simulated_machine.source()


@pytest.fixture
def simulated_kernel(simulated_machine: Machine) -> SimulatedKernel:
    """A fresh simulated kernel of the machine: validates plans, simulates this process's real threads."""
    return simulated_machine.kernel()


@pytest.fixture
def gpunuma_simulate(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``GPUNUMA_SIMULATE`` set to the test's machine (marker or indirect parameter) while the test runs.

    The code under test, and every process it starts, then binds through that machine's simulated kernel and
    ``gpunuma.check_process()`` / ``gpunuma check --pid`` read it back: nothing in the code changes. Each test
    starts with a process no simulated kernel has bound, and what its bindings hand down is undone after it.
    """
    (spec,) = _chosen(request, MACHINE_MARKER)[:1]
    name = simulate_name(spec)
    if name is None:
        raise pytest.UsageError(
            f"GPUNUMA_SIMULATE carries a catalogue name or a snapshot path, not {spec!r}: "
            "use simulated_source and simulated_kernel for a Machine object"
        )
    _as_machine(spec)  # an unknown name fails here, listing the known ones
    saved = {variable: os.environ.pop(variable) for variable in _HANDED_DOWN if variable in os.environ}
    monkeypatch.setenv(SIMULATE, name)
    forget_process_kernels()
    try:
        yield name
    finally:
        forget_process_kernels()
        for variable in _HANDED_DOWN:
            os.environ.pop(variable, None)
        os.environ.update(saved)


@dataclass(frozen=True)
class SimulatedRayCluster:
    """A running local Ray cluster, one Ray node per simulated machine.

    Each Ray node has exactly its machine's GPUs (so every GPU id Ray hands out exists on the machine
    the actor landed on), a custom resource named after the machine, and, for a machine named by a
    catalogue name or snapshot path, ``GPUNUMA_SIMULATE`` in the environment of every worker it starts: an
    actor's own argument-free ``gpunuma.bind_to_gpu()`` binds by the machine it landed on. ``source``/``binder``
    pick the machine by the Ray node the actor runs on; :meth:`on` places an actor on a machine's node.
    The cluster keeps its own ``address`` and temporary folder (``temp_dir``): a ``ray.init()`` elsewhere on
    the host never finds it, and the folder is removed when the cluster stops. Actors' output reaches the
    driver (``log_to_driver``).
    """

    #: Ray node id -> the machine it simulates.
    machines: Mapping[str, Machine]
    source: Any
    binder: Any
    #: The head's GCS address, which only this cluster's driver connects to.
    address: str = ""
    #: The cluster's own temporary folder (``RAY_TMPDIR`` while it started: sessions, logs, ``ray_current_cluster``).
    temp_dir: str = ""

    def on(self, name: str, **options: Any) -> dict[str, Any]:
        """Actor options placing it on the node of machine ``name`` (plus ``options``, e.g. ``num_cpus``)."""
        if name not in {m.name for m in self.machines.values()}:
            known = ", ".join(sorted({m.name for m in self.machines.values()}))
            raise LookupError(f"no Ray node simulates {name!r}; nodes simulate: {known}")
        resources = {**dict(options.pop("resources", {}) or {}), resource_name(name): 1}
        return {"num_cpus": 0, **options, "resources": resources}


def resource_name(machine_name: str) -> str:
    """The custom Ray resource a simulated machine's node carries."""
    return f"machine-{machine_name}"


def start_cluster(machines: tuple[Machine, ...], names: tuple[str | None, ...] = ()) -> tuple[Any, SimulatedRayCluster]:
    """Start the Ray cluster (head = the first machine) in a temporary folder of its own and connect this
    process to it. ``names[i]`` (a catalogue name or snapshot path) becomes ``GPUNUMA_SIMULATE`` on node ``i``."""
    import ray
    from ray import cluster_utils


    # Short and private: Ray's socket paths live below it (107 bytes at most), and Ray's own record of "the
    # latest cluster" (ray_current_cluster, which a bare ray.init() follows) is written inside it, never to /tmp/ray.
    own = tempfile.mkdtemp(prefix="gpunuma-ray-")
    temp_dir = os.path.join(own, "ray")  # Ray's layout below RAY_TMPDIR
    os.mkdir(temp_dir)

    def node_args(simulated: Machine, name: str | None) -> dict[str, Any]:
        gpus = len(simulated.gpus)
        return {
            "num_cpus": 1, "num_gpus": gpus, "resources": {resource_name(simulated.name): max(gpus, 1) * 100},
            "env_vars": {SIMULATE: name} if name is not None else {},
        }

    named = tuple(names) + (None,) * (len(machines) - len(names))
    (head, head_name), *rest = zip(machines, named, strict=True)
    saved_tmpdir = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = own  # cluster_utils writes ray_current_cluster to $RAY_TMPDIR/ray
    cluster = None
    try:
        cluster = cluster_utils.Cluster(
            initialize_head=True,
            head_node_args={**node_args(head, head_name), "include_dashboard": False, "temp_dir": temp_dir},
        )
        assert cluster.head_node is not None  # initialize_head=True started it
        ids = {cluster.head_node.node_id: head}
        for simulated, name in rest:
            ids[cluster.add_node(**node_args(simulated, name)).node_id] = simulated
        ray.init(address=cluster.address, log_to_driver=True, _temp_dir=temp_dir)
        cluster.wait_for_nodes()
    except BaseException:
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(own, ignore_errors=True)
        raise
    finally:
        if saved_tmpdir is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved_tmpdir
    source = RayNodeTopology({nid: m.source() for nid, m in ids.items()})
    binder = RayNodeBinder({nid: m.kernel() for nid, m in ids.items()})
    return cluster, SimulatedRayCluster(
        machines=ids, source=source, binder=binder, address=cluster.address, temp_dir=own
    )


@pytest.fixture(scope="module")
def simulated_ray_cluster(request: pytest.FixtureRequest) -> Iterator[SimulatedRayCluster]:
    """A local Ray cluster whose nodes are the simulated machines the module's marker (or parameter) names."""
    pytest.importorskip("ray")
    import ray

    specs = _chosen(request, CLUSTER_MARKER)
    machines = tuple(_as_machine(spec) for spec in specs)
    cluster, simulated = start_cluster(machines, tuple(simulate_name(spec) for spec in specs))
    try:
        yield simulated
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(simulated.temp_dir, ignore_errors=True)
