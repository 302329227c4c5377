"""Ray nodes that a test starts itself with `ray start` (own ports, own temp dir, no token
auth) and ends by its own process ids. Never `ray stop`: that would end every Ray on the
machine (another test session's, a user's)."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from helpers import bare_env

try:
    import psutil
except ImportError:  # Ray vendors psutil and puts it on sys.path when imported
    import ray  # noqa: F401  (first: it puts its psutil on sys.path)
    # isort: split
    import psutil

RAY_CLI = [sys.executable, "-m", "ray.scripts.scripts"]
# A dead node is declared dead after 2 missed health checks 0.5 s apart (Ray's default:
# 5 misses of 3 s), so that a test that kills a node sees Ray react in seconds.
FAST_FAILURE_DETECTION = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "2",
                          "RAY_health_check_initial_delay_ms": "0"}


def free_ports(count: int) -> list[int]:
    """Distinct ports the OS has free right now (held open together, then released)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port_range(width: int) -> tuple[int, int]:
    """A run of ``width`` free ports below the OS's ephemeral range (for Ray's workers)."""
    for _ in range(50):
        low = random.randrange(20000, 30000 - width)
        try:
            held = []
            for port in range(low, low + width):
                s = socket.socket()
                held.append(s)
                s.bind(("", port))
            return low, low + width - 1
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free port range for Ray's workers")


def processes_of(marker: str) -> list[psutil.Process]:
    """Processes whose command line names ``marker`` (a node's temp dir), and all their
    descendants (workers rename themselves `ray::...` and lose the marker)."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or []):
            found[proc.pid] = proc
            try:
                found.update({child.pid: child for child in proc.children(recursive=True)})
            except psutil.Error:
                pass
    found.pop(os.getpid(), None)
    return list(found.values())


def end_processes(marker: str) -> list[psutil.Process]:
    """Terminate, then kill, everything of a node; returns what is still alive."""
    procs = processes_of(marker)
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=3)  # gcs_server and raylet drain slowly
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=10)
    return [p for p in processes_of(marker) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def head_env(temp_dir: str | None = None, **extra: str) -> dict[str, str]:
    """Environment of a node (and so of its jobs) and of the submitting client."""
    env = bare_env(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", **extra)
    if temp_dir:  # scratch files of the node's processes go where the finalizer removes them
        os.makedirs(os.path.join(temp_dir, "tmp"), exist_ok=True)
        env["TMPDIR"] = os.path.join(temp_dir, "tmp")
    # The job's `python` is looked up on the head's PATH: make it this venv's.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


@dataclass
class Node:
    temp_dir: str  # this node's own: its processes are found (and ended) by it
    gcs_address: str  # the cluster's (the head's) GCS, HOST:PORT
    dashboard: str | None  # the head's job server URL; None on a worker node

    def raylet(self) -> psutil.Process:
        return next(p for p in processes_of(self.temp_dir) if "raylet" in " ".join(p.cmdline()[:1]))

    def end(self) -> list[psutil.Process]:
        left = end_processes(self.temp_dir)
        if self.dashboard:  # the head's Ray Client server, whose command line names the GCS port, not the temp dir
            left += end_processes(f":{self.gcs_address.rsplit(':', 1)[1]} --host=")
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return left


def start_node(head: Node | None = None, *, num_cpus: int = 2, resources: dict | None = None,
               env: dict | None = None) -> Node:
    """A head (``head`` None; with the dashboard, i.e. the job server) or a worker node
    joining ``head``: its own raylet, object store, ports and temp dir."""
    temp_dir = tempfile.mkdtemp(prefix="ej-", dir="/tmp")  # short: unix sockets live here
    (node_manager, object_manager, agent_listen, agent_grpc, runtime_env_agent, metrics, gcs, client_server,
     dashboard) = free_ports(9)
    min_worker, max_worker = free_port_range(100)
    args = [*RAY_CLI, "start", "--temp-dir", temp_dir, "--num-cpus", str(num_cpus), "--num-gpus", "0",
            "--node-manager-port", str(node_manager), "--object-manager-port", str(object_manager),
            "--min-worker-port", str(min_worker), "--max-worker-port", str(max_worker),
            "--dashboard-agent-listen-port", str(agent_listen), "--dashboard-agent-grpc-port", str(agent_grpc),
            "--runtime-env-agent-port", str(runtime_env_agent), "--metrics-export-port", str(metrics),
            "--object-store-memory", str(300 * 1024 * 1024), "--disable-usage-stats"]
    if resources:
        args += ["--resources", json.dumps(resources)]
    if head is None:
        args += ["--head", "--port", str(gcs), "--ray-client-server-port", str(client_server),
                 "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard)]
        node = Node(temp_dir, f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}")
    else:
        args += ["--address", head.gcs_address]
        node = Node(temp_dir, head.gcs_address, None)
    start = subprocess.run(args, env=head_env(temp_dir, **(env or {})), capture_output=True, text=True, timeout=120)
    if start.returncode != 0:
        node.end()
        raise RuntimeError(f"ray start failed:\n{start.stdout}\n{start.stderr}")
    return node
