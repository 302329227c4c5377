"""Whether ``--storage`` is shared by the nodes of the Ray a run joined, checked before any
worker or trial starts: a cluster of several nodes needs ``--storage``
(``check_shared_storage``), and each node must write there what this driver reads back
(``check_storage_on_nodes``). Connecting to Ray is ``raypkg.distributed.cluster``'s.
"""

from __future__ import annotations

from raypkg.errors import UsageError


def check_shared_storage(storage: str | None, what: str) -> None:
    """On the connected Ray, before any worker or trial starts: a cluster of more than one
    alive node needs ``--storage``, a place every node reaches (``what`` is kept there)."""
    import ray

    if storage:
        return
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    if nodes > 1:
        raise UsageError(f"a cluster of {nodes} nodes needs --storage ({what} must be reachable from every node)")


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
