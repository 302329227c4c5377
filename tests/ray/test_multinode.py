"""Every method's Ray stage on a real two-node Ray cluster (issue #20).

The cluster: a head and a worker node that this module starts with `ray start`
(``ray_nodes``), each with its own raylet, object store, ports and temp dir, 2 CPUs each.
``--placement strict-spread`` puts the two Ray Train ranks (or the two shard actors) on
different nodes, and the summary's ``nodes`` says where each one ran. One node's result,
which the math makes equal, comes from the same command with ``--placement strict-pack``
(CREST's ranks), in one process (CREST's actors, LiPT's ensemble and selection), or from
the last test, which kills the worker node: the train run's ranks finish on the head with
the two-node run's losses. Each Ray Train run here costs ~20-40 s, so a claim another test
already makes on one node is not made twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import REPO, same_run_files
from ray_nodes import FAST_FAILURE_DETECTION, RAY_CLI, head_env, start_node

pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("two-node-cluster")]  # one process builds the cluster


@pytest.fixture(scope="module")
def cluster(request):
    """(head, worker node, {node name: Ray node id})."""
    head = start_node(env=FAST_FAILURE_DETECTION)
    request.addfinalizer(lambda: end(head))
    worker = start_node(head, env=FAST_FAILURE_DETECTION)
    request.addfinalizer(lambda: end(worker))
    ids = subprocess.run([sys.executable, "-c", (
        "import ray, json; ray.init(address='%s', logging_level='ERROR'); "
        "print(json.dumps({n['NodeManagerPort']: n['NodeID'] for n in ray.nodes() if n['Alive']}))")
        % head.gcs_address], env=head_env(), capture_output=True, text=True, timeout=120)
    by_port = json.loads(ids.stdout.strip().splitlines()[-1])
    assert len(by_port) == 2, ids.stdout + ids.stderr
    head_id = next(i for port, i in by_port.items() if f"--node_manager_port={port}" in " ".join(head.raylet().cmdline()))
    worker_id = next(i for i in by_port.values() if i != head_id)
    return head, worker, {"head": head_id, "worker": worker_id}


def end(node) -> None:
    left = node.end()
    assert not left, f"processes of a test node still alive: {left}"


def effray_process(args: list[str], head, tmp_path: Path, name: str) -> subprocess.CompletedProcess:
    """``effray ARGS`` joined to the cluster, as typed in a bare shell; it must succeed."""
    proc = subprocess.run([sys.executable, "-m", "raypkg.cli", *args, "--address", head.gcs_address, "--name", name,
                           "--out", str(tmp_path / "runs"), "--wandb", "disabled", "--no-progress"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300, env=head_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def effray(args: list[str], head, tmp_path: Path, name: str) -> dict:
    """The summary of ``effray ARGS`` joined to the cluster."""
    effray_process(args, head, tmp_path, name)
    return json.loads((tmp_path / "runs" / name / "summary.json").read_text())


def losses(tmp_path: Path, name: str) -> list[float]:
    return list(pd.read_parquet(tmp_path / "runs" / name / "metrics.parquet")["train_loss"])


TRAIN = ["train", "--workers", "2", "--cpus-per-worker", "1", "--epochs", "12", "--max-failures", "1"]


@pytest.fixture(scope="module")
def spread_train(cluster, tmp_path_factory):
    """(summary, losses, run root, printed lines) of the two-node train run: one rank on
    each node, its checkpoints kept in file:// storage. The killed-node test compares
    against it."""
    tmp_path = tmp_path_factory.mktemp("spread")
    args = [*TRAIN, "--placement", "strict-spread", "--storage", f"file://{tmp_path / 'store'}", "--keep-checkpoints"]
    lines = effray_process(args, cluster[0], tmp_path, "spread").stdout.strip().splitlines()
    summary = json.loads((tmp_path / "runs" / "spread" / "summary.json").read_text())
    return summary, losses(tmp_path, "spread"), tmp_path, lines


def test_train_ranks_run_on_both_nodes_and_the_run_reaches_storage(cluster, spread_train):
    """Its losses equal one node's: the killed-node test finishes this run's epochs with
    both ranks on the head and gets the same losses. The run directory and the checkpoints
    (--keep-checkpoints) reach the file:// storage (test_storage.py: s3://)."""
    _, _, ids = cluster
    spread, _, root, lines = spread_train
    assert sorted(spread["nodes"]["train"]) == sorted(ids.values())  # rank 0 and rank 1 on different nodes
    store, uri = root / "store", f"file://{root / 'store'}"
    assert lines[-2:] == [f"copied to storage: {uri}/spread", f"run directory: {root / 'runs' / 'spread'}"]
    local, copy = root / "runs" / "spread", store / "spread"
    assert same_run_files(local, copy) == spread and spread["storage"] == f"{uri}/spread"
    assert yaml.safe_load((copy / "config.yaml").read_text())["storage"] == uri
    checkpoints = sorted((copy / "ray").glob("ray_train-*/checkpoint_*/state.pt"))  # Ray keeps the last two
    assert len(checkpoints) == 2, sorted(p.relative_to(store) for p in store.rglob("*"))
    assert not (local / "ray").exists()  # with --storage nothing is checkpointed locally
    assert not list(store.glob("**/.effray-node-probe-*"))  # the per-node storage probe cleans up


def test_sparse_masks_are_identical_on_two_nodes(cluster, tmp_path):
    """Both nodes' ranks hold the same masks (test_sparse.py checks two ranks on one node;
    the losses of two nodes equal one node's in the train and CREST tests)."""
    head, _, ids = cluster
    args = ["run", "sparse", "--workers", "2", "--cpus-per-worker", "1", "--epochs", "3", "--storage", str(tmp_path)]
    spread = effray([*args, "--placement", "strict-spread"], head, tmp_path, "spread")
    assert sorted(spread["nodes"]["train"]) == sorted(ids.values())
    assert spread["rank_mask_digests"] == [spread["mask_digest"]] * 2


def test_crest_actors_on_two_nodes_select_as_in_process(cluster, tmp_path):
    head, _, ids = cluster
    remote = effray(["run", "crest", "--actors", "2", "--placement", "strict-spread", "--epochs", "4"],
                    head, tmp_path, "actors")
    assert sorted(remote["nodes"]["shard_actors"]) == sorted(ids.values())
    local = subprocess.run([sys.executable, "-m", "raypkg.cli", "run", "crest", "--epochs", "4", "--name", "local",
                            "--out", str(tmp_path / "runs"), "--wandb", "disabled", "--no-progress"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=300, env=head_env())
    assert local.returncode == 0, local.stderr[-2000:]
    summary = json.loads((tmp_path / "runs" / "local" / "summary.json").read_text())
    assert remote["test_acc"] == summary["test_acc"]
    # The same coresets; the actors add the per-shard gradient sums in another order.
    assert losses(tmp_path, "actors") == pytest.approx(losses(tmp_path, "local"), rel=1e-6)


def test_crest_ranks_on_two_nodes_equal_one_node(cluster, tmp_path):
    """CREST on Ray Train (--workers; with --actors it is refused: each rank selects its own
    coresets from its share of the data), its ranks on both nodes, then on one."""
    head, _, ids = cluster
    args = ["run", "crest", "--workers", "2", "--cpus-per-worker", "1", "--epochs", "3", "--storage", str(tmp_path)]
    spread = effray([*args, "--placement", "strict-spread"], head, tmp_path, "spread")
    packed = effray([*args, "--placement", "strict-pack"], head, tmp_path, "packed")
    assert sorted(spread["nodes"]["train"]) == sorted(ids.values())
    assert (spread["steps"], spread["regions"]) == (packed["steps"], packed["regions"])
    assert losses(tmp_path, "spread") == losses(tmp_path, "packed")


def test_lipt_job_submitted_to_two_nodes_writes_its_summary_to_storage(cluster, tmp_path):
    """jobs/lipt.py by `ray job submit`: the shard ensemble and the subset training each on
    ranks of both nodes; the same shard models and selection as the run in one process
    (test_lipt.py: the ensemble on Ray Train equals it; the killed-node test: DDP's losses
    do not depend on the nodes)."""
    head, _, ids = cluster
    store = tmp_path / "store"
    # One execution for both: --precision auto decides per process (its key holds torch's threads), and on a
    # CPU with avx512_bf16 the job may train in bf16 and the process in fp32 (CI, stop 96).
    lipt = ["--selection", "grand", "--fraction", "0.1", "--shards", "3", "--pre-epochs", "1", "--density", "0.2",
            "--epochs", "2", "--precision", "fp32"]
    on_ray = ["--workers", "2", "--cpus-per-worker", "1", "--storage", f"file://{store}", "--placement", "strict-spread"]
    job = subprocess.run(
        [*RAY_CLI, "job", "submit", "--address", head.dashboard, "--working-dir", str(REPO), "--",
         "python", "jobs/lipt.py", *lipt, *on_ray, "--name", "job",
         "--out", str(tmp_path / "job-runs"), "--wandb", "disabled", "--no-progress"],
        env=head_env(head.temp_dir), capture_output=True, text=True, timeout=400)
    log = job.stdout + job.stderr
    assert job.returncode == 0 and "succeeded" in log, log[-4000:]
    assert "shard 3/3 done" in log  # the ensemble ran as a Ray Train job
    summary = json.loads((store / "job" / "summary.json").read_text())  # the job's run, fetched from storage
    assert summary["storage"] == f"file://{store}/job"
    assert sorted(summary["nodes"]["ensemble"]) == sorted(summary["nodes"]["train"]) == sorted(ids.values())
    in_process = subprocess.run([sys.executable, "-m", "raypkg.cli", "run", "lipt", *lipt, "--name", "local",
                                 "--out", str(tmp_path / "runs"), "--wandb", "disabled", "--no-progress"],
                                capture_output=True, text=True, cwd=tmp_path, timeout=300, env=head_env())
    assert in_process.returncode == 0, in_process.stderr[-2000:]
    one_process = json.loads((tmp_path / "runs" / "local" / "summary.json").read_text())
    assert summary["shard_test_acc"] == one_process["shard_test_acc"]
    assert summary["merged_test_acc"] == one_process["merged_test_acc"]
    pd.testing.assert_frame_equal(pd.read_parquet(store / "job" / "selection.parquet"),
                                  pd.read_parquet(tmp_path / "runs" / "local" / "selection.parquet"))
    assert len(pd.read_parquet(store / "job" / "metrics.parquet")) == 2  # a row per epoch of the subset training


def test_a_sweep_on_two_nodes_keeps_its_trials_in_storage_and_is_refused_without(cluster, tmp_path):
    head, _, _ = cluster
    base = [sys.executable, "-m", "raypkg.cli", "tune", "train", "--address", head.gcs_address, "--num-samples", "2",
            "--set", "epochs=1", "--out", str(tmp_path / "sweeps"), "--wandb", "disabled"]
    refused = subprocess.run(base, capture_output=True, text=True, cwd=tmp_path, timeout=120, env=head_env())
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert refused.stderr.strip().splitlines()[-1] == ("error: a cluster of 2 nodes needs --storage (Tune trials "
                                                       "must be reachable from every node)")
    assert not (tmp_path / "sweeps").exists()
    sweep = subprocess.run([*base, "--storage", f"file://{tmp_path / 'store'}"], capture_output=True, text=True,
                           cwd=tmp_path, timeout=300, env=head_env())
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    (out,) = (tmp_path / "sweeps").glob("tune-train-*")
    assert len(pd.read_parquet(out / "trials.parquet")) == 2 and (out / "best_config.yaml").is_file()
    assert len(list((tmp_path / "store" / out.name / "trials").glob("trial_*"))) == 2


PROBE = """
import sys
import raypkg.distributed.cluster as cluster
import raypkg.distributed.node_storage as node_storage
from raypkg.errors import UsageError

# Runs on the nodes (shipped by value): the values it needs are bound here, on the driver.
def write_marker(directory, node_id, real=node_storage._write_marker, worker_id=sys.argv[2], case=sys.argv[3]):
    if node_id != worker_id:
        return real(directory, node_id)
    return "PermissionError: [Errno 13] Permission denied" if case == "fails" else ""  # or writes elsewhere

node_storage._write_marker = write_marker
cluster.connect_ray(address=sys.argv[1])
try:
    node_storage.check_storage_on_nodes(sys.argv[4])
    print("accepted")
except UsageError as e:
    print(e)
"""


@pytest.mark.parametrize("case", ["fails", "unseen"])
def test_storage_that_a_node_cannot_write_or_share_is_refused_naming_the_node(cluster, tmp_path, case):
    """The probe's tasks are pinned to each node; here the worker node's marker write is
    replaced (a closure, shipped to the node by value) by one that fails, or that writes
    nothing the driver can read back."""
    head, _, ids = cluster
    proc = subprocess.run([sys.executable, "-c", PROBE, head.gcs_address, ids["worker"], case, str(tmp_path / "s")],
                          capture_output=True, text=True, timeout=120, env=head_env())
    line = proc.stdout.strip().splitlines()[-1]
    where = f"node {ids['worker'][:12]} (192.0.2.2)"
    assert line.startswith(f"--storage {tmp_path / 's'}: "), proc.stdout + proc.stderr
    assert line.endswith(f"{where} cannot write there (PermissionError: [Errno 13] Permission denied)") \
        if case == "fails" else f"what {where} wrote there does not reach this driver" in line
    assert not list((tmp_path / "s").glob("*"))  # the head's marker removed too


FRONTIER = ["bench", "frontier", "--dataset", "digits-aug", "--train-size", "6000", "--test-size", "500", "--model",
            "mlp", "--epochs", "4", "--seeds", "2", "--fractions", "0.3", "--methods", "uniform,crest",
            "--budgets", "0.5", "--wandb", "disabled"]


def test_a_frontier_spreads_its_points_over_the_nodes_and_a_killed_node_loses_none(cluster, tmp_path):
    """The frontier's 20 points on the head, the worker node and a third node (6 CPUs: 6
    at once, packed by --slots 6, not the default's alone pass); the third node's raylet is killed (SIGKILL) once it has stored a point: Ray runs
    its unit's other points elsewhere, every point is stored once, none failed, and every
    accuracy equals the same frontier's run one point after another in this process."""
    from click.testing import CliRunner

    from raypkg.cli import main

    head, worker, ids = cluster
    extra = start_node(head, env=FAST_FAILURE_DETECTION)
    try:
        store = tmp_path / "store"
        proc = subprocess.Popen([sys.executable, "-m", "raypkg.cli", *FRONTIER, "--address", head.gcs_address,
                                 "--slots", "6", "--storage", str(store), "--save", str(tmp_path / "spread")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                                env=head_env())
        deadline, killed = time.monotonic() + 240, None
        while killed is None:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
            nodes = {json.loads(p.read_text())["row"]["node"] for p in (store / "points").glob("*.json")}
            killed = next(iter(nodes - set(ids.values())), None)
            time.sleep(0.05)
        os.kill(extra.raylet().pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-4000:]
    finally:
        end(extra)
    rows = pd.read_parquet(tmp_path / "spread.parquet")
    assert len(rows) == 20 and not list((store / "failed").glob("*.json"))
    assert {ids["head"], ids["worker"], killed} <= set(rows["node"])  # every node ran points
    assert (rows["beside"] > 0).any() and set(rows["timed"]) == {"packed"}  # points ran side by side
    # --time-alone: each point once more, alone on its node (all its CPUs), one a node at a time
    timed = subprocess.run([sys.executable, "-m", "raypkg.cli", *FRONTIER, "--address", head.gcs_address, "--storage",
                            str(store), "--save", str(tmp_path / "spread"), "--time-alone"], capture_output=True,
                           text=True, cwd=tmp_path, env=head_env(), timeout=300)
    assert timed.returncode == 0 and "20/20 points timed alone" in timed.stderr, timed.stderr[-3000:]
    again = [json.loads(p.read_text())["row"] for p in (store / "alone").glob("*.json")]
    assert len(again) == 20 and {r["node"] for r in again} == {ids["head"], ids["worker"]}
    for node in (ids["head"], ids["worker"]):
        spans = sorted((r["started_at"], r["ended_at"]) for r in again if r["node"] == node)
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))  # never two at once
    judged = pd.read_parquet(tmp_path / "spread.parquet")
    assert set(judged["timed"]) == {"alone"} and judged["beside"].eq(0).all()
    assert judged["packed_acc_delta"].eq(0).all()  # the same accuracy, packed or alone
    alone = CliRunner().invoke(main, [*FRONTIER, "--slots", "1", "--save", str(tmp_path / "alone")])
    assert alone.exit_code == 0, alone.output
    keys = ["seed", "method", "setting"]
    pd.testing.assert_series_equal(rows.set_index(keys)["test_acc"].sort_index(),
                                   pd.read_parquet(tmp_path / "alone.parquet").set_index(keys)["test_acc"].sort_index(),
                                   check_exact=True)


def test_a_killed_worker_node_is_survived_from_storage(cluster, spread_train, tmp_path):
    """The worker node's raylet is killed (SIGKILL, by its pid) once the run has
    checkpointed an epoch; Ray Train restarts both ranks on the head from the checkpoint in
    --storage and finishes with the losses of the uninterrupted two-node run. Runs last:
    the cluster keeps one node."""
    head, worker, ids = cluster
    reference, reference_losses, _, _ = spread_train
    store = tmp_path / "store"
    args = [sys.executable, "-m", "raypkg.cli", *TRAIN, "--placement", "spread", "--storage", str(store),
            "--address", head.gcs_address, "--name", "killed", "--out", str(tmp_path / "runs"), "--wandb", "disabled",
            "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                            env=head_env())
    deadline = time.monotonic() + 180
    while not list(store.glob("killed/ray/*/checkpoint_*/state.pt")):  # an epoch checkpointed
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.2)
    os.kill(worker.raylet().pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-4000:]
    summary = json.loads((tmp_path / "runs" / "killed" / "summary.json").read_text())
    assert summary["restarts"] == 1 and summary["nodes"]["train"] == [ids["head"]] * 2
    assert losses(tmp_path, "killed") == reference_losses
    assert summary["test_acc"] == reference["test_acc"]


@pytest.mark.parametrize("placement,fits", [("pack", 5), ("spread", 5), ("strict-pack", 3), ("strict-spread", 2)])
def test_what_a_placement_can_hold_is_counted_per_node(monkeypatch, placement, fits):
    """Nodes of 3, 2 and 0.5 CPUs, workers of 1 CPU: strict-pack fits the biggest node,
    strict-spread one worker on each node that holds one; more is refused in one line."""
    import ray

    from raypkg.distributed.placement import check_placement
    from raypkg.errors import UsageError

    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": c}} for c in (3, 2, 0.5)])
    check_placement(fits, 1, placement=placement)
    with pytest.raises(UsageError, match=rf"^--workers {fits + 1} needs 1 CPU per worker.* holds at most {fits}; "):
        check_placement(fits + 1, 1, placement=placement)
