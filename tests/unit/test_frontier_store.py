"""The frontier's store as a lab notebook (issue 76): every point knows the code that ran it, a
partial table says so, a broken file is named or set aside, one driver a store, and its
messages are one line each. Store-level tests need no training; the few that run a frontier
run a tiny one in this process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from raypkg.bench.frontier.store import FrontierStore
from raypkg.cli import main
from raypkg.errors import Interrupted, UsageError

SETTINGS = {"dataset": "digits", "model": "logreg", "epochs": 2, "budgets": [0.5, 1.0], "target_acc": None}


def stored(tmp_path, points: dict[str, str]) -> FrontierStore:
    """A store of SETTINGS holding ``points`` (id -> the file's text, as written)."""
    store = FrontierStore(str(tmp_path / "s"))
    store.claim(SETTINGS)
    for point, text in points.items():
        (tmp_path / "s" / "points" / f"{point}.json").write_text(text)
    return store


def record(code: str | None = "c1", method: str = "m", setting: str = "-") -> str:
    row = {"method": method, "setting": setting, "seed": 0, **({"code": code, "commit": f"at-{code}"} if code else {})}
    return json.dumps({"row": row, "epochs": []})


def test_a_broken_point_file_is_named_and_set_aside_and_a_leftover_temporary_removed(tmp_path):
    store = stored(tmp_path, {"good": record(), "empty": "", "cut": record()[:20], "junk": "\x00\x01garbage"})
    (tmp_path / "s" / "points" / "good.json.1234.tmp").write_text("{")
    looked = store.heal(fix=False)  # --render: named, nothing moved
    assert len(looked) == 4 and sum("not judged" in line for line in looked) == 3
    assert set(store.points()) == {"good"}  # the broken ones are not read
    assert {p.name for p in (tmp_path / "s" / "points").iterdir()} >= {"empty.json", "good.json.1234.tmp"}
    said = store.heal()
    for name in ("cut.json", "empty.json", "good.json.1234.tmp", "junk.json"):  # each named once
        assert sum(f"{tmp_path / 's' / 'points' / name} " in line or f"{tmp_path / 's' / 'points' / name}:" in line
                   for line in said) == 1, (name, said)
    assert len(said) == 4 and all("set aside to broken/, its point runs again" in line
                                  for line in said if line.startswith("broken"))
    assert store.ids() == {"good"} and {p.name for p in (tmp_path / "s/broken/points").iterdir()} == {
        "empty.json", "cut.json", "junk.json"}
    assert store.heal() == []  # healed


def test_a_broken_or_missing_frontier_json_is_named_with_what_to_do(tmp_path):
    store = stored(tmp_path, {"p": record()})
    (tmp_path / "s" / "frontier.json").write_text('{"dataset": ')
    with pytest.raises(UsageError, match=r"frontier.json is broken \(JSONDecodeError.*restore it, or give a new"):
        store.settings()
    (tmp_path / "s" / "frontier.json").unlink()
    with pytest.raises(UsageError, match=r"frontier.json is missing, but .* holds points: .* restore it"):
        store.check(SETTINGS)  # not rebuilt in silence from the flags given now
    assert FrontierStore(str(tmp_path / "new")).settings() == {}  # a new store has none


def test_a_refusal_names_the_flag_given_not_a_derived_one_and_a_judging_flag_is_no_refusal(tmp_path):
    store = stored(tmp_path, {})
    with pytest.raises(UsageError, match="run with epochs 2, not 3"):
        store.check({**SETTINGS, "epochs": 3, "budgets": [1 / 3, 1.0]})  # budgets follow from --epochs
    store.check({**SETTINGS, "target_acc": 0.9})  # only judging reads it: the stored points are judged again
    assert "target_acc" not in json.loads((tmp_path / "s" / "frontier.json").read_text())


def test_storage_naming_a_file_is_refused_in_one_line(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="--storage .*/f is a file: the points are stored in a folder"):
        FrontierStore(str(tmp_path / "f"))


def test_one_driver_a_store(tmp_path):
    store = stored(tmp_path, {})
    store.drive()
    assert store.driver() == ""  # this process's own
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "s" / "driver.json").write_text(json.dumps({"host": os.uname().nodename, "pid": other.pid,
                                                                 "started": "2026-11-28T12:00:00"}))
        with pytest.raises(UsageError, match=f"another frontier driver runs on .*pid {other.pid}"):
            FrontierStore(str(tmp_path / "s")).drive()
        store.release()  # not this process's: kept
        assert (tmp_path / "s" / "driver.json").exists()
    finally:
        other.kill()
        other.wait()
    assert store.driver() == ""  # its pid is gone: the store is free again
    store.drive()
    store.release()
    assert not (tmp_path / "s" / "driver.json").exists()
    (tmp_path / "s" / "driver.json").write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "t"}))
    with pytest.raises(UsageError, match="pid 1 on elsewhere"):  # another host's: not this one's to judge
        store.drive()


def test_points_of_other_code_are_found(tmp_path):
    store = stored(tmp_path, {"same": record("c1"), "other": record("c2"), "old": record(None)})
    assert store.stale("c1", {"same", "other", "old"}) == {("points", "other"): "at-c2", ("points", "old"): "unknown"}
    assert store.stale("c1", {"same"}) == {}


def test_ctrl_c_while_points_run_says_they_are_kept_and_the_same_command_goes_on(tmp_path):
    from raypkg.bench.frontier.command import points_kept_on_interrupt

    store = stored(tmp_path, {"a": record(), "b": record()})
    with pytest.raises(Interrupted) as caught:
        with points_kept_on_interrupt(store):
            raise KeyboardInterrupt
    assert str(caught.value) == (f"stopped by Ctrl-C; the 2 points stored in {store.location} are kept, and the same "
                                 "command goes on from them")


def test_slots_above_the_clusters_cpus_are_capped_with_a_note(monkeypatch, capsys):
    import ray

    from raypkg.bench.frontier.scheduler import slots_of

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert slots_of(1000, 1) == 2 and "--slots 1000 capped at 2" in capsys.readouterr().err
    assert slots_of(None, 1) == 2 and slots_of(1, 1) == 1 and slots_of(3, 2) == 1


def test_ray_log_dedup_is_off_before_ray_is_imported():
    code = "import raypkg, ray._private.ray_constants as c; print(c.RAY_DEDUP_LOGS)"
    env = {k: v for k, v in os.environ.items() if k != "RAY_DEDUP_LOGS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


TINY = ["bench", "frontier", "--dataset", "digits", "--model", "logreg", "--epochs", "2", "--seeds", "1",
        "--methods", "uniform", "--fractions", "0.5", "--budgets", "0.5", "--wandb", "disabled"]


@pytest.mark.slow
def test_a_store_of_other_code_is_refused_or_run_again_and_a_partial_table_says_so(tmp_path, monkeypatch):
    """Points stored by other code (here: their recorded code changed) are refused in one line,
    run again with --rerun-stale (set aside to stale/); all stored, the same command starts no
    Ray; a point file deleted makes --render's table partial, and its cell says so."""
    stem = tmp_path / "f"
    first = CliRunner().invoke(main, [*TINY, "--save", str(stem)])
    assert first.exit_code == 0, first.output
    points = sorted((tmp_path / "f-points" / "points").glob("*.json"))
    record = json.loads(points[0].read_text())
    assert {"commit", "code", "draft"} <= set(record["row"])  # each point knows the code that ran it
    record["row"]["code"], record["row"]["commit"] = "other", "0000000"
    points[0].write_text(json.dumps(record))
    refused = CliRunner().invoke(main, [*TINY, "--save", str(stem)])
    assert refused.exit_code == 2 and "holds 1 point runs of other code (0000000)" in refused.output
    assert "add --rerun-stale" in refused.output
    again = CliRunner().invoke(main, [*TINY, "--rerun-stale", "--save", str(stem)])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "f-points" / "stale" / "points" / points[0].name).exists() and points[0].exists()
    assert "1 point runs of other code set aside" in again.output
    from raypkg.bench.frontier import command

    def no_ray():
        raise AssertionError("Ray started for no work")

    monkeypatch.setattr(command, "connect_ray", no_ray)
    all_stored = CliRunner().invoke(main, [*TINY, "--slots", "2", "--time-alone", "--save", str(stem)])
    assert all_stored.exit_code == 0, all_stored.output
    assert "units of work on Ray" not in all_stored.output
    points[1].unlink()
    partial = CliRunner().invoke(main, [*TINY, "--render", "--save", str(stem)])
    assert partial.exit_code == 0 and "# partial: 1 of" in partial.output
    summary = pd.read_parquet(f"{stem}-summary.parquet")
    assert summary["missing"].sum() == 1


def test_the_code_a_point_records_is_raypkgs_tree_as_it_is_on_disk():
    """The same files give the same code, committed or not: a clean raypkg/ is HEAD's tree, an
    edited one another (so a draft's points are not reused by the clean checkout, and a commit
    of exactly the draft's edits reuses them)."""
    from raypkg.tracking.provenance import _git, code_identity, dirty_files

    code, head = code_identity()["code"], _git("rev-parse", "HEAD:raypkg").strip()[:12]
    edited = any(path.startswith("raypkg/") for path in dirty_files() or ())
    assert (code != head) if edited else (code == head)


def test_a_token_authenticated_head_gets_one_line_naming_ray_auth_mode(monkeypatch, capfd):
    """Seen against `ray start --head` (token authentication, its default once a token exists):
    without RAY_AUTH_MODE=token, ray.init printed a warning a second for 20 s and an 85-line
    traceback. The check tries one connection, its stderr silenced, and says what to do."""
    import ray._raylet

    from raypkg.distributed.cluster import check_token

    class TokenHead:
        def __init__(self, address):
            os.write(2, b"gcs_client.cc:210: Failed to get cluster ID from GCS server: Unauthenticated\n")
            raise RuntimeError("RPC error: InvalidAuthToken: Authentication token is missing or incorrect")

    monkeypatch.setattr(ray._raylet, "GcsClient", TokenHead)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with pytest.raises(UsageError, match=r"^the Ray at 10.0.0.7:6379 uses token authentication: run with "
                                         r"RAY_AUTH_MODE=token"):
        check_token("10.0.0.7:6379")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with pytest.raises(UsageError, match="refuses this client's token: give the head's with RAY_AUTH_TOKEN"):
        check_token("10.0.0.7:6379")
    assert "gcs_client" not in capfd.readouterr().err  # Ray's own lines never print

    class Other:
        def __init__(self, address):
            raise RuntimeError("connection refused")

    monkeypatch.setattr(ray._raylet, "GcsClient", Other)
    check_token("10.0.0.7:6379")  # not an authentication failure: ray.init reports it as before


@pytest.mark.slow
def test_a_stored_table_judged_again_names_the_commit_that_measured_each_row(tmp_path):
    """Rows stored before each point recorded its code take the commit their table's provenance
    says measured them, and the table names it with its count."""
    from helpers import REPO

    from raypkg.tracking.provenance import read_provenance
    from raypkg.tracking.run import write_parquet

    source = REPO / "docs/results/frontier-mlp-ema-ls.parquet"
    stored = write_parquet(tmp_path / "old.parquet", pd.read_parquet(source).drop(columns="commit", errors="ignore"),
                           read_provenance(source))  # as stored before its rows recorded their code
    measured = read_provenance(stored)["command"].rsplit(" (at ", 1)[1].rstrip(")")
    result = CliRunner().invoke(main, ["bench", "frontier", "--merge", str(stored), "--wandb", "disabled",
                                       "--save", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(tmp_path / "again.parquet")
    assert set(rows["commit"]) == {measured}
    assert read_provenance(tmp_path / "again.parquet")["point_commits"] == f"{measured} ({len(rows)} point runs)"
