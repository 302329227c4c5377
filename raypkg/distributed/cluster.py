"""Connecting to Ray: a cluster only when told to, otherwise a private local instance.

- ``--address ADDRESS`` (commands that use Ray) or RAY_ADDRESS (``ray job submit`` sets
  it) names a cluster: effray joins it, or fails with one line when nothing answers there
  within ``CONNECT_TIMEOUT_S``. A run that uses no Ray refuses ``--address``
  (``check_address_used``) before it starts.
- Otherwise effray starts its own local Ray (``address="local"``) and never attaches to
  another program's instance on the machine (Ray's ``address="auto"`` would, and would
  also follow a stale ``/tmp/ray/ray_current_cluster`` to a dead head).

One line says which, e.g. ``ray: started a private local Ray with 2 CPUs``.
"""

from __future__ import annotations

import math
import os
import socket
import time
from contextlib import contextmanager, nullcontext

from raypkg.distributed.ray_internals import LOOPBACK_ENV, loopback_node, quiet_token_notice
from raypkg.errors import UsageError

CONNECT_TIMEOUT_S = float(os.environ.get("EFFRAY_RAY_CONNECT_TIMEOUT_S", "15"))
MIN_CPUS_PER_WORKER = 0.5  # the least CPU share a Ray Train worker is given
MIN_CPUS_PER_ACTOR = 0.05  # the least CPU share a shard actor is given (``shard_pool``)
_requested_address: str | None = None  # set by the --address flag of the current command


def set_address(address: str | None) -> None:
    """Record the cluster named by ``--address`` (None: none named)."""
    global _requested_address
    _requested_address = address or None


def requested_address() -> str | None:
    """The cluster to join: ``--address``, else RAY_ADDRESS, else None (start a local Ray)."""
    address = _requested_address or os.environ.get("RAY_ADDRESS") or None
    return None if address == "local" else address


def uses_ray(cfg, data=None) -> bool:
    """Whether a run of ``cfg`` touches Ray: Ray Train workers (``workers``), shard actors
    (``actors``) or training images streamed by Ray Data (``--data-path stream``; with
    ``data``, the loaded splits, also ``auto`` when it chose to stream)."""
    streamed = data.train.streamed if data is not None else getattr(cfg, "data_path", None) == "stream"
    return bool(getattr(cfg, "workers", 0) or getattr(cfg, "actors", 0) or streamed)


def check_address_used(uses_ray: bool) -> None:
    """Refuse ``--address`` for a run that never uses Ray: it would join no cluster and say
    nothing. Call it before anything runs. RAY_ADDRESS is not refused: ``ray job submit``
    sets it for every job, whether the job uses Ray or not."""
    if _requested_address and not uses_ray:
        raise UsageError(f"--address {_requested_address} joins a Ray cluster, but this run uses no Ray "
                         "(--workers 0, --actors 0): drop --address or add --workers N")


def _quiet_ray() -> None:
    """Known-harmless Ray output: usage-stats notices, and the notice that a local instance
    uses token authentication (Ray's default; nothing to do about it)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_USAGE_STATS_PROMPT_ENABLED", "0")
    quiet_token_notice()


def _gcs_host_port(address: str) -> tuple[str, int] | None:
    """host, port of a GCS (``host:port``) or Ray Client (``ray://host:port``) address."""
    if address == "auto":
        from raypkg.distributed.ray_internals import auto_address

        try:
            address = auto_address()
        except (ConnectionError, ValueError) as e:
            raise UsageError(f"--address auto: {str(e).splitlines()[0]}") from None
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.split("/")[0].isdigit():
        raise UsageError(f"Ray address {address!r} is not HOST:PORT or ray://HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port.split("/")[0])


def check_reachable(address: str) -> None:
    """The cluster at ``address`` answers within CONNECT_TIMEOUT_S and takes this client's
    authentication, else a one-line UsageError (also where this process is connected to a Ray
    already, which ``connect_ray`` then keeps)."""
    _wait_until_answers(address, CONNECT_TIMEOUT_S)
    check_token(address)


def check_token(address: str) -> None:
    """One line where the head at ``address`` uses token authentication (``ray start``'s
    default where a token exists) and this client sends none or another: one GCS connection
    tried with this process's stderr silenced, so that Ray's 20 retries of a warning line each
    and its traceback never print."""
    from ray._raylet import GcsClient

    try:
        with _stderr_silenced():
            GcsClient(address=address)
    except Exception as e:  # noqa: BLE001 (only an authentication failure is this check's to report)
        if "InvalidAuthToken" not in str(e) and type(e).__name__ != "AuthenticationError":
            return
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            raise UsageError(f"the Ray at {address} uses token authentication: run with RAY_AUTH_MODE=token (the "
                             "token in ~/.ray/auth_token, or RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH from another "
                             "machine; docs/operations.md)") from None
        raise UsageError(f"the Ray at {address} refuses this client's token: give the head's with RAY_AUTH_TOKEN or "
                         "RAY_AUTH_TOKEN_PATH (its ~/.ray/auth_token)") from None


@contextmanager
def _stderr_silenced():
    """File descriptor 2 to /dev/null for the block (Ray's C++ core logs straight to it)."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _wait_until_answers(address: str, timeout_s: float) -> None:
    host, port = _gcs_host_port(address)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(3.0, timeout_s)):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise UsageError(f"no Ray cluster answers at {address} ({e.strerror or e}) after "
                                 f"{timeout_s:.0f}s; start it, fix --address / RAY_ADDRESS, or unset "
                                 "them to run on a private local Ray") from None
            time.sleep(0.5)


def connect_ray(num_cpus: int | None = None, address: str | None = None) -> str:
    """Join the cluster at ``address`` (default: ``--address``, else RAY_ADDRESS), or start
    a private local Ray with ``num_cpus`` CPUs (default: EFFRAY_RAY_NUM_CPUS if set, else
    all of this machine's), unless this process is connected already; the address of its
    Ray (for another process to join)."""
    import logging

    import ray

    if ray.is_initialized():
        return ray.get_runtime_context().gcs_address
    _quiet_ray()
    address = address or requested_address()
    if num_cpus is None and os.environ.get("EFFRAY_RAY_NUM_CPUS"):
        num_cpus = int(os.environ["EFFRAY_RAY_NUM_CPUS"])
    if address:
        check_reachable(address)
        # A process started by one that runs a private local Ray is given LOOPBACK_ENV
        # (``joining_env``: bench data's cases) and joins that Ray named 127.0.0.1 as it is
        # (else Ray rewrites the address to the machine's own and never connects).
        inherited = all(os.environ.get(k) == v for k, v in LOOPBACK_ENV.items())
        with loopback_node() if inherited else nullcontext():
            ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
        print(f"ray: joined the cluster at {address} ({_cpus():g} CPUs)", flush=True)
    else:
        # A private instance has no draining nodes for Ray Train's preemption watcher to
        # watch, and its failed polls print error lines.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        # The dashboard serves the state API, which Ray Train's placement-group cleaner polls
        # every second (without it: a warning line per poll for the whole run); +0.6 s.
        # Told no address, the cleaner looks for "the" Ray of this machine; with another one
        # running (a second user, a test session) its thread died with a traceback
        # ("Found multiple active Ray instances"). Ray's processes inherit this process's
        # environment: RAY_API_SERVER_ADDRESS names this instance's dashboard to them.
        port = _free_port()
        with _environment(RAY_API_SERVER_ADDRESS=f"http://127.0.0.1:{port}", **LOOPBACK_ENV), loopback_node():
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
                     dashboard_port=port, log_to_driver=True, logging_level=logging.WARNING)
        print(f"ray: started a private local Ray with {_cpus():g} CPUs", flush=True)
        _PRIVATE_RAY.append(ray.get_runtime_context().gcs_address)
    return ray.get_runtime_context().gcs_address


_PRIVATE_RAY: list[str] = []  # the address of the private local Ray this process started, if it did


def joining_env() -> dict[str, str]:
    """What a process this one starts needs in its environment to join the Ray this one
    runs: for a private local Ray (loopback only), LOOPBACK_ENV; else nothing."""
    import ray

    running = ray.is_initialized() and ray.get_runtime_context().gcs_address
    return dict(LOOPBACK_ENV) if running and running in _PRIVATE_RAY else {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _environment(**values: str):
    """Set environment variables for the duration of the block (for the processes it starts)."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _cpus() -> float:
    import ray

    return ray.cluster_resources().get("CPU", 0)


def check_local_placement(num_workers: int, placement: str = "pack", what: str = "--workers",
                          cpus_each: float = MIN_CPUS_PER_WORKER) -> None:
    """Before any data is loaded or Ray starts: on the private local Ray a run would start
    (no --address, no RAY_ADDRESS), one node whose CPUs are known (EFFRAY_RAY_NUM_CPUS, else
    this machine's), refuse more CPU workers (``what``: Ray Train's --workers, or shard
    --actors) than it can hold at ``cpus_each`` CPU each (Ray Train gives a worker at least
    half a CPU, ``engine.ray_train``), or one per node for several;
    ``check_placement`` checks again once connected."""
    if requested_address():
        return
    if placement == "strict-spread" and num_workers > 1:
        raise UsageError(f"--placement strict-spread puts each of the {num_workers} {what[2:]} on its own node, "
                         "but a private local Ray is one node; use another --placement or --address a cluster")
    cpus = int(os.environ.get("EFFRAY_RAY_NUM_CPUS") or os.cpu_count() or 1)
    fits = math.floor(cpus / cpus_each + 1e-9)
    if num_workers > fits:
        raise UsageError(f"{what} {num_workers} needs {cpus_each:g} CPU per {what[2:-1]}, but a private "
                         f"local Ray (1 node(s), {cpus} CPUs) holds at most {fits}; use {what} {fits} or "
                         f"--address a bigger cluster")


def ray_strategy(placement: str) -> str:
    """Ray's name of a ``--placement`` value: strict-spread -> STRICT_SPREAD."""
    return placement.upper().replace("-", "_")


GPU_SHARES = 10_000  # Ray keeps resource amounts to 4 decimals: a share is floored to 1/10,000ths


def resources(cpus: float, gpus: float) -> dict:
    """What one Ray worker or actor asks for (a placement-group bundle, Ray Train's
    ``resources_per_worker``): its CPUs, and its GPU (share) when it has one."""
    return {"CPU": cpus, **({"GPU": gpus} if gpus else {})}


def gpu_share(count: int, gpus: float) -> float:
    """Each of ``count`` Ray workers', actors' or trials' share of ``gpus`` GPUs: a whole
    one where each can have one, else 1/k with k = ceil(count / whole GPUs) floored to
    Ray's 4 decimals, so that k of them fit on every GPU; 0 without a GPU."""
    whole = math.floor(gpus + 1e-9)
    if count < 1 or whole < 1:
        return 0.0
    per_gpu = math.ceil(count / whole)
    return 1.0 if per_gpu <= 1 else math.floor(GPU_SHARES / per_gpu) / GPU_SHARES


def gpus_for(use_gpu: bool | None, count: int, what: str) -> float:
    """The GPU share of each of ``count`` actors or trials of a run whose ``use_gpu`` is
    ``--gpu`` (True: the cluster must have one), ``--cpu`` (False: none) or unset (a share
    when the connected cluster has GPUs)."""
    import ray

    if use_gpu is False:
        return 0.0
    gpus = float(ray.cluster_resources().get("GPU", 0))
    if use_gpu and gpus < 1:
        raise UsageError(f"--gpu: the Ray cluster has no GPU for the {what}; drop --gpu or join one with GPUs")
    return gpu_share(count, gpus)


def check_placement(num_workers: int, cpus_per_worker: float, gpus_per_worker: float = 0,
                    placement: str = "pack", what: str = "--workers") -> None:
    """Raise a one-line UsageError when the connected cluster cannot hold ``num_workers``
    workers of ``cpus_per_worker`` CPUs (and ``gpus_per_worker`` GPUs) each, placed by
    ``placement`` (strict-spread: one per node; strict-pack: all on one node): Ray would
    otherwise wait for them forever."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    per_node = [min(math.floor(r.get("CPU", 0) / cpus_per_worker + 1e-9) if cpus_per_worker else num_workers,
                    math.floor(r.get("GPU", 0) / gpus_per_worker + 1e-9) if gpus_per_worker else num_workers)
                for r in nodes]
    fits = {"strict-spread": sum(1 for f in per_node if f >= 1),
            "strict-pack": max(per_node, default=0)}.get(placement, sum(per_node))
    if fits >= num_workers:
        return
    total_cpu = sum(r.get("CPU", 0) for r in nodes)
    need = f"{cpus_per_worker:g} CPU" + (f" + {gpus_per_worker:g} GPU" if gpus_per_worker else "")
    gpus = f", {sum(r.get('GPU', 0) for r in nodes):g} GPUs" if gpus_per_worker else ""
    placed = f" with --placement {placement}" if placement.startswith("strict") else ""
    raise UsageError(f"{what} {num_workers} needs {need} per worker{placed}, but the Ray cluster "
                     f"({len(nodes)} node(s), {total_cpu:g} CPUs{gpus}) holds at most {fits}; "
                     f"use {what} {fits} or a bigger cluster")


# Where the Ray work of the current run went: what ("train", "ensemble", "shard_actors")
# -> the node id of each rank or actor, in order. ``Recipe.run`` clears it and puts it in
# the summary as ``nodes``.
_placed: dict[str, list[str]] = {}


def record_nodes(what: str, node_ids: list[str]) -> None:
    _placed[what] = list(node_ids)


def take_recorded_nodes() -> dict[str, list[str]]:
    """What ``record_nodes`` saw since the last call (and forget it)."""
    placed = dict(_placed)
    _placed.clear()
    return placed


def check_shared_storage(storage: str | None, what: str) -> None:
    """On the connected Ray, before any worker or trial starts: a cluster of more than one
    alive node needs ``--storage``, a place every node reaches (``what`` is kept there)."""
    import ray

    if storage:
        return
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    if nodes > 1:
        raise UsageError(f"a cluster of {nodes} nodes needs --storage ({what} must be reachable from every node)")


@contextmanager
def stop_ray_on_interrupt():
    """Ctrl-C while Ray works for this run (Ray Train, Tune, actors): end this driver's Ray
    session before the KeyboardInterrupt goes on to the run directory's clean-up. The
    actors this driver owns (Ray Train's controller and its workers, Tune's trials, shard
    actors) end with it, and a private local Ray stops, so nothing keeps retrying or
    writes into a directory that is being removed."""
    try:
        yield
    except KeyboardInterrupt:
        import ray

        from raypkg.interrupts import release_logging_lock

        release_logging_lock()  # Ray's threads log while it shuts down
        ray.shutdown()
        raise


def _write_marker(directory: str, node_id: str) -> str:
    """On one node: write ``directory/<node_id>`` through pyarrow; '' or why it failed."""
    from raypkg.storage import filesystem, first_line

    try:
        fs, path = filesystem(directory)
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(f"{path}/{node_id}") as f:
            f.write(node_id.encode())
        return ""
    except Exception as e:  # noqa: BLE001 - reported to the driver, which refuses the run
        return f"{type(e).__name__}: {first_line(e)}"


def check_storage_on_nodes(storage: str | None) -> None:
    """On a cluster of more than one node, before any worker starts: a task pinned to each
    alive node writes a marker file into ``storage``, and this driver reads every marker
    back. A node that cannot write, or whose marker the driver cannot see (a path local to
    that node), is refused in one line naming the node and the path."""
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from raypkg.storage import filesystem, join

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if not storage or len(nodes) < 2:
        return
    directory = join(storage, f".effray-node-probe-{uuid.uuid4().hex[:8]}")
    write = ray.remote(num_cpus=0, max_retries=0)(_write_marker)
    errors = ray.get([write.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                      .remote(directory, n["NodeID"]) for n in nodes])
    fs, path = filesystem(directory)
    try:
        for node, error in zip(nodes, errors):
            where = f"node {node['NodeID'][:12]} ({node.get('NodeManagerAddress', '?')})"
            if error:
                raise UsageError(f"--storage {storage}: {where} cannot write there ({error})")
            try:
                with fs.open_input_stream(f"{path}/{node['NodeID']}") as f:
                    seen = f.read().decode()
            except OSError:  # not there: written somewhere this driver does not see
                seen = None
            if seen != node["NodeID"]:
                raise UsageError(f"--storage {storage}: what {where} wrote there does not reach this driver; "
                                 "it is not shared storage (use a path every node mounts, or a URI)")
    finally:
        try:
            fs.delete_dir(path)
        except OSError:
            pass
