"""Connecting to Ray: a cluster only when told to, otherwise a private local instance.

- ``--address ADDRESS`` (commands that use Ray) or RAY_ADDRESS (``ray job submit`` sets
  it) names a cluster: effray joins it, or fails with one line when nothing answers there
  within ``CONNECT_TIMEOUT_S``. A run that uses no Ray refuses ``--address``
  (``check_address_used``) before it starts.
- Otherwise effray starts its own local Ray (``address="local"``) and never attaches to
  another program's instance on the machine (Ray's ``address="auto"`` would, and would
  also follow a stale ``/tmp/ray/ray_current_cluster`` to a dead head).

One line says which, e.g. ``ray: started a private local Ray with 2 CPUs``. What a run asks
of the Ray it joined is checked elsewhere: whether its workers fit, and their GPU shares, in
``raypkg.distributed.placement``; whether ``--storage`` is shared by the nodes in
``raypkg.distributed.node_storage``.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager, nullcontext

from raypkg.distributed.ray_internals import LOOPBACK_ENV, loopback_node, quiet_token_notice
from raypkg.errors import UsageError
from raypkg.interrupts import keep_sigterm, release_logging_lock

CONNECT_TIMEOUT_S = float(os.environ.get("EFFRAY_RAY_CONNECT_TIMEOUT_S", "15"))
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
        with loopback_node() if inherited else nullcontext(), keep_sigterm():
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
        with _environment(RAY_API_SERVER_ADDRESS=f"http://127.0.0.1:{port}", **LOOPBACK_ENV), loopback_node(), \
                keep_sigterm():
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


@contextmanager
def stop_ray_on_interrupt():
    """Ctrl-C (or SIGTERM) while Ray works for this run (Ray Train, Tune, actors): end this driver's Ray
    session before the KeyboardInterrupt goes on to the run directory's clean-up. The
    actors this driver owns (Ray Train's controller and its workers, Tune's trials, shard
    actors) end with it, and a private local Ray stops, so nothing keeps retrying or
    writes into a directory that is being removed."""
    try:
        yield
    except KeyboardInterrupt:
        import ray

        release_logging_lock()  # Ray's threads log while it shuts down
        ray.shutdown()
        raise
