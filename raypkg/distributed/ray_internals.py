"""Every use of Ray's private APIs, in one place: what each does and why no public API
does it. Checked against Ray 2.60; a Ray upgrade reads this file first (tests/unit/
test_recipes.py refuses a private Ray name anywhere else in raypkg)."""

from __future__ import annotations

from contextlib import contextmanager

# A private local Ray is reachable from this machine only (docs/operations.md, "What a
# local run listens on"). Ray names a node by the address other machines reach it at, and
# its GCS, raylet, agents and workers then listen on every interface; named 127.0.0.1 (what
# Ray does on macOS and Windows, where it runs one machine only), they listen on loopback.
# ray.init(_node_ip_address="127.0.0.1") does not do it: Ray replaces a loopback address by
# the machine's own (ray._private.services.resolve_ip_for_localhost). Ray 2.60 decides it in
# get_node_ip_address by ENABLE_RAY_CLUSTER, read from this variable when ray is imported:
# set for the processes Ray starts, and in this process for the duration of ray.init.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@contextmanager
def loopback_node():
    """The Ray that ``ray.init`` starts or joins in this block names this node 127.0.0.1
    (see LOOPBACK_ENV; the processes it starts need that variable too); a Ray without the
    switch is left as it is."""
    from ray._private import ray_constants

    before = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if before is None:
        yield
        return
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def auto_address() -> str:
    """The address ``--address auto`` means (the Ray this machine runs), as ``ray.init``
    finds it, so that a run can check it answers before joining; ConnectionError or
    ValueError when there is none or several."""
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address("auto")


def quiet_token_notice() -> None:
    """Ray logs that a local instance uses token authentication (its default) from a
    private module's logger: errors only."""
    import logging

    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)


def quiet_train_worker_logs() -> None:
    """Ray Train logs every report and checkpoint at INFO level from the workers: lines
    per epoch and rank. Keep warnings only (these modules name their loggers oddly)."""
    import logging

    from ray.train.v2._internal.execution import context, storage

    for module in (context, storage):
        for name in (module.__file__, module.__name__):
            logging.getLogger(name).setLevel(logging.WARNING)


def skip_train_sigint_handler(trainer) -> None:
    """Ray Train's own SIGINT handler only asks the controller to abort, which it may not do
    while it retries a worker group (and a third Ctrl-C exits with status 0): skip it, so
    that Ctrl-C raises KeyboardInterrupt in ``trainer.fit`` and ending the Ray session stops
    the run."""
    trainer._register_sigint_handler = lambda controller: None


def file_rendezvous_config(backend: str | None = None):
    """Ray Train's TorchConfig for a private local Ray, its process group meeting through a
    file instead of torch's TCPStore: that store's server (on rank 0's worker) listens on every
    interface whatever MASTER_ADDR names (torch binds it to the wildcard address, and has no
    option for another), the one port of a local run that was not on loopback (issue 65).
    A private local Ray runs on this machine only, where a FileStore needs no port at all.
    ``backend``: the process group's (default: Ray's, nccl on GPUs, else gloo).
    Private: ``_TorchBackend`` and the two functions its ``on_start`` runs on the workers
    (Ray 2.60 takes init_method "env" or "tcp" only)."""
    import os
    import tempfile
    import uuid
    from dataclasses import dataclass

    import ray
    from ray.train.torch import TorchConfig
    from ray.train.torch.config import _set_torch_distributed_env_vars, _setup_torch_process_group, _TorchBackend

    class FileRendezvous(_TorchBackend):
        def on_start(self, worker_group, backend_config):
            # a fresh file per worker group (a restart after a failure meets anew)
            self.path = os.path.join(tempfile.gettempdir(), f"effray-rendezvous-{uuid.uuid4().hex}")
            worker_group.execute(_set_torch_distributed_env_vars)
            ray.get([worker_group.execute_single_async(rank, _setup_torch_process_group,
                                                       backend=backend_config.backend, world_rank=rank,
                                                       world_size=len(worker_group), init_method=f"file://{self.path}",
                                                       timeout_s=backend_config.timeout_s)
                     for rank in range(len(worker_group))])

        def on_shutdown(self, worker_group, backend_config):
            try:
                super().on_shutdown(worker_group, backend_config)
            finally:
                if getattr(self, "path", None) and os.path.exists(self.path):
                    os.remove(self.path)

    @dataclass
    class FileRendezvousConfig(TorchConfig):
        @property
        def backend_cls(self):
            return FileRendezvous

    return FileRendezvousConfig(backend=backend)
