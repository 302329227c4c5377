"""The frontier's store as a lab notebook (issue 76): every point knows the code that ran it, a
partial table says so, a broken file is named or set aside, one driver a store, and its
messages are one line each. Store-level tests need no training; the few that run a frontier
run a tiny one in this process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from click.testing import CliRunner

from raypkg.bench.frontier.store import FrontierStore, frontier_digest, point_name
from raypkg.cli import main
from raypkg.errors import Interrupted, RunFailed, UsageError
from raypkg.interrupts import sigterm_as_interrupt

SETTINGS = {"dataset": "digits", "model": "logreg", "epochs": 2, "budgets": [0.5, 1.0], "target_acc": None}


def stored(tmp_path, points: dict[str, str]) -> FrontierStore:
    """A store of SETTINGS holding ``points`` (id -> the file's text, as written; ``pid``
    names a point's id)."""
    store = FrontierStore(str(tmp_path / "s"))
    store.claim(SETTINGS)
    for point, text in points.items():
        (tmp_path / "s" / "points" / f"{point}.json").write_text(text)
    return store


def pid(method: str = "m", setting: str = "-", seed: int = 0) -> str:
    """The id (file name less .json) of a point: ``points.point_id``'s."""
    return point_name({"method": method, "setting": setting, "seed": seed})


def record(code: str | None = "c1", method: str = "m", setting: str = "-", **row) -> str:
    """A point's record as a run of SETTINGS writes it (its row's settings overridden by ``row``)."""
    row = {"family": method, "method": method, "setting": setting, "seed": 0, "dataset": "digits", "model": "logreg",
           "label_noise": 0.0, "epochs": 2, "test_acc": 0.9, "e2e_s": 1.0,
           **({"code": code, "commit": f"at-{code}"} if code else {}), **row}
    return json.dumps({"row": row, "epochs": [], "frontier": frontier_digest(SETTINGS)})


def test_a_broken_point_file_is_named_and_set_aside_and_a_leftover_temporary_removed(tmp_path):
    good = pid("good")
    store = stored(tmp_path, {good: record(method="good"), "empty": "", "cut": record()[:20],
                              "junk": "\x00\x01garbage"})
    (tmp_path / "s" / "points" / f"{good}.json.1234.tmp").write_text("{")
    looked = store.heal(fix=False)  # --render: named, nothing moved
    assert len(looked) == 4 and sum("not judged" in line for line in looked) == 3
    assert set(store.points()) == {good}  # the broken ones are not read
    assert {p.name for p in (tmp_path / "s" / "points").iterdir()} >= {"empty.json", f"{good}.json.1234.tmp"}
    said = store.heal()
    for name in ("cut.json", "empty.json", f"{good}.json.1234.tmp", "junk.json"):  # each named once
        assert sum(f"{tmp_path / 's' / 'points' / name} " in line or f"{tmp_path / 's' / 'points' / name}:" in line
                   for line in said) == 1, (name, said)
    assert len(said) == 4 and all("set aside to broken/, its point runs again" in line
                                  for line in said if line.startswith("broken"))
    assert store.ids() == {good} and {p.name for p in (tmp_path / "s/broken/points").iterdir()} == {
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
    assert store.driver() == {}  # this process's own
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
    assert store.driver() == {}  # its pid is gone: the store is free again
    store.drive()
    store.release()
    assert not (tmp_path / "s" / "driver.json").exists()
    (tmp_path / "s" / "driver.json").write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "t"}))
    with pytest.raises(UsageError, match="pid 1 on elsewhere"):  # another host's: not this one's to judge
        store.drive()


def test_points_of_other_code_are_found(tmp_path):
    same, other, old = pid("same"), pid("other"), pid("old")
    store = stored(tmp_path, {same: record("c1", "same"), other: record("c2", "other"), old: record(None, "old")})
    assert store.stale("c1", {same, other, old}) == {("points", other): "at-c2", ("points", old): "unknown"}
    assert store.stale("c1", {same}) == {}


@pytest.mark.parametrize("by", ["Ctrl-C", "SIGTERM"])
def test_ctrl_c_while_points_run_says_they_are_kept_and_the_same_command_goes_on(tmp_path, by):
    """Ctrl-C, or SIGTERM (`kill PID`) inside a command's ``sigterm_as_interrupt``."""
    from raypkg.bench.frontier.command import points_kept_on_interrupt

    store = stored(tmp_path, {pid("a"): record(method="a"), pid("b"): record(method="b")})
    with pytest.raises(Interrupted) as caught, sigterm_as_interrupt(), points_kept_on_interrupt(store):
        if by == "Ctrl-C":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # its handler runs at the next bytecode boundary
    assert str(caught.value) == (f"stopped by {by}; the 2 points stored in {store.location} are kept, and the same "
                                 "command goes on from them")
    assert caught.value.by == by


def test_slots_above_the_clusters_cpus_are_capped_with_a_note(monkeypatch, capsys):
    import ray

    from raypkg.bench.frontier.scheduler import slots_of

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert slots_of(1000, 1) == 2 and "--slots 1000 capped at 2" in capsys.readouterr().err
    assert slots_of(None, 1) == 2 and slots_of(1, 1) == 1 and slots_of(3, 2) == 1


def test_one_at_a_time_each_seed_runs_whole_its_curve_first_and_packed_the_longest_run_first():
    from raypkg.bench.frontier.scheduler import run_order

    epochs = {"0 full b=1": 5, "0 full b=0.4": 2, "0 crest": 6, "0 ema": 5, "0 grand f=0.1": 5, "0 grand f=0.3": 5,
              "1 full b=1": 5, "1 crest": 6}
    units = [(0, ["0 full b=1"]), (0, ["0 crest"]), (0, ["0 ema"]), (0, ["0 grand f=0.1", "0 grand f=0.3"]),
             (0, ["0 full b=0.4"]), (1, ["1 full b=1"]), (1, ["1 crest"])]
    curve = {"0 full b=1", "0 full b=0.4", "1 full b=1"}
    order = [ids[0] for _, ids in run_order(units, epochs.get, curve, one_at_a_time=True)]
    assert order == ["0 full b=1", "0 full b=0.4", "0 grand f=0.1", "0 crest", "0 ema", "1 full b=1", "1 crest"]
    order = [ids[0] for _, ids in run_order(units, epochs.get, curve, one_at_a_time=False)]
    assert order == ["0 grand f=0.1", "0 crest", "1 crest", "0 full b=1", "0 ema", "1 full b=1", "0 full b=0.4"]


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


# --- issue 82, part 6: a store that trusts nothing it cannot check


def test_a_point_file_of_another_frontier_is_named_set_aside_to_foreign_and_never_judged(tmp_path):
    """A point file copied from another frontier: its row records other settings, or its
    record another frontier's digest, or it is named for another point. Never judged as this
    one's: --render names it, a driver sets it aside to foreign/ and runs its point again."""
    good, other_data, other_frontier, renamed = pid("good"), pid("a"), pid("b"), pid("c")
    store = stored(tmp_path, {good: record(method="good"), other_data: record(method="a", dataset="mnist"),
                              other_frontier: json.dumps({**json.loads(record(method="b")), "frontier": "0" * 16}),
                              renamed: record(method="good")})
    points = tmp_path / "s" / "points"
    assert sorted(store.heal(fix=False)) == sorted([  # a line each, in the folder's order
        f"foreign point file {points / other_data}.json (its row records dataset 'mnist', frontier.json 'digits'): "
        "not judged",
        f"foreign point file {points / other_frontier}.json (run by a frontier of other settings than frontier.json's):"
        " not judged",
        f"foreign point file {points / renamed}.json (its row is good - seed 0, whose file is {good}.json): not judged"])
    assert set(store.points()) == {good} and store.stale("c0", {good, other_data, other_frontier, renamed}).keys() == {
        ("points", good)}  # neither judged nor taken for this frontier's points of other code
    said = store.heal()
    assert len(said) == 3 and all(line.endswith("set aside to foreign/, its point runs again") for line in said)
    assert {p.name for p in (tmp_path / "s" / "foreign" / "points").iterdir()} == {
        f"{other_data}.json", f"{other_frontier}.json", f"{renamed}.json"}
    assert store.ids() == {good} and store.heal() == []


def test_valid_json_that_is_not_a_point_and_a_folder_are_named_and_set_aside_to_broken(tmp_path):
    store = stored(tmp_path, {"list": "[1, 2]", "string": '"x"', "norow": '{"row": 3, "epochs": []}',
                              "lacks": json.dumps({"row": {"method": "m", "setting": "-", "seed": 0}, "epochs": []})})
    (tmp_path / "s" / "points" / "folder.json").mkdir()
    (tmp_path / "s" / "failed" / "f.json").write_text("[]")
    assert store.points() == {} and store.ids() == {"list", "string", "norow", "lacks"}  # the folder is no point
    said = store.heal()
    points = tmp_path / "s" / "points"
    assert sorted(said) == sorted([
        f"broken point file {points / 'list.json'} (not a point: JSON list): set aside to broken/, its point runs again",
        f"broken point file {points / 'string.json'} (not a point: JSON str): set aside to broken/, its point runs "
        "again",
        f"broken point file {points / 'norow.json'} (not a point: no row): set aside to broken/, its point runs again",
        f"broken point file {points / 'lacks.json'} (not a point: a row without family, test_acc, e2e_s): set aside "
        "to broken/, its point runs again",
        f"broken point file {points / 'folder.json'} (a folder, not a file): set aside to broken/, its point runs "
        "again",
        f"broken point file {tmp_path / 's' / 'failed' / 'f.json'} (not a failed point's record: no label and error):"
        " set aside to broken/, its point runs again"])
    assert (tmp_path / "s" / "broken" / "points" / "folder.json").is_dir() and store.ids() == set()


@pytest.mark.parametrize("text, held", [("", None), ("{}", "a JSON object with no dataset, model, epochs"),
                                        ("[]", "a JSON list"), ('"x"', "a JSON str"), ("null", "a JSON NoneType"),
                                        ('{"dataset": "digits"}', "a JSON object with no model, epochs")])
def test_an_emptied_frontier_json_or_one_of_another_type_is_refused_and_never_replaced(tmp_path, text, held):
    """An emptied or wrong-typed frontier.json lets no settings claim the stored points: one
    line naming it and what to do, and it stays as it is."""
    stored(tmp_path, {pid(): record()})
    path = tmp_path / "s" / "frontier.json"
    path.write_text(text)
    what = (r"is broken \(JSONDecodeError: Expecting value: line 1 column 1 \(char 0\)\)" if held is None
            else rf"is not a frontier's settings \(it holds {held}\)")
    with pytest.raises(UsageError, match=rf"^{path} {what}: its points' settings are unknown; restore it, or give a "
                                         r"new --save or --storage$"):
        FrontierStore(str(tmp_path / "s")).claim({**SETTINGS, "dataset": "other"})
    assert path.read_text() == text
    path.unlink()
    path.mkdir()
    with pytest.raises(UsageError, match=rf"^{path} is a folder, not a frontier's settings: its points' settings"):
        FrontierStore(str(tmp_path / "s")).settings()


@pytest.mark.parametrize("text, held", [("", "Expecting value: line 1 column 1 (char 0)"),
                                        ("[]", "it holds JSON list"), ('{"pid": 5}', "it holds no host and pid"),
                                        ('{"host": "h", "pid": "5"}', "it holds no host and pid")])
def test_a_driver_json_that_is_not_a_lock_is_named_with_how_to_clear_it(tmp_path, text, held):
    store = stored(tmp_path, {})
    path = tmp_path / "s" / "driver.json"
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        store.drive()
    assert str(caught.value) == (f"{path} is not a frontier driver's lock ({held}): if no frontier driver runs on "
                                 f"{store.location}, delete {path} and run again (or give a new --save or --storage)")
    assert path.read_text() == text  # not taken over: it may be a live driver's that another tool wrote over


def test_a_lock_whose_pid_is_now_another_process_is_a_dead_drivers_and_every_lock_message_names_its_file(tmp_path):
    """driver.json records its process's start (/proc/PID/stat) and the host's boot: a pid that
    lives but started at another time (or boot) is another process, and the lock is taken
    over; a live driver's is refused naming the lock and how it clears; another host's, which
    this host cannot check, names the lock and says to delete it if that driver is gone."""
    import socket

    from raypkg.bench.frontier.store import process_identity

    store = stored(tmp_path, {})
    path = tmp_path / "s" / "driver.json"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = {"host": socket.gethostname(), "pid": other.pid, "started": "t", **process_identity(other.pid)}
        path.write_text(json.dumps(live))
        with pytest.raises(UsageError) as caught:
            store.drive()
        assert str(caught.value) == (
            f"another frontier driver runs on {store.location} (pid {other.pid} on {live['host']}, started t; its lock "
            f"{path}): wait for it to finish (its lock goes with it; or stop it, kill {other.pid}), or give a new --save "
            "or --storage (two would train points twice and time them side by side)")
        path.write_text(json.dumps({**live, "process_start": live["process_start"] - 1}))  # the pid reused
        assert store.driver() == {}
        path.write_text(json.dumps({**live, "boot": "another boot"}))  # the host rebooted since
        assert store.driver() == {}
        store.drive()
        assert json.loads(path.read_text())["pid"] == os.getpid()
        store.release()
        assert not path.exists()
    finally:
        other.kill()
        other.wait()
    path.write_text(json.dumps({"host": "elsewhere", "pid": 7, "started": "t"}))
    with pytest.raises(UsageError) as caught:
        store.drive()
    assert str(caught.value) == (
        f"{path} says a frontier driver runs on {store.location} from another host (pid 7 on elsewhere, started t), "
        "which this host cannot check: if it still runs, wait for it to finish or give a new --save or --storage; if "
        f"it does not, delete {path} and run again")


def test_a_point_set_aside_twice_keeps_both_files(tmp_path):
    """A second --rerun-stale (or broken file) of the same point does not overwrite the first's."""
    point = pid()
    store = stored(tmp_path, {point: record("c1")})
    assert store.set_aside("points", point, "stale").endswith(f"stale/points/{point}.json")
    (tmp_path / "s" / "points" / f"{point}.json").write_text(record("c2"))
    assert store.set_aside("points", point, "stale").endswith(f"stale/points/{point}.2.json")
    kept = tmp_path / "s" / "stale" / "points"
    assert [json.loads((kept / name).read_text())["row"]["code"] for name in (f"{point}.json", f"{point}.2.json")] == [
        "c1", "c2"]


def test_the_store_remembers_seeds_until_decided(tmp_path):
    store = stored(tmp_path, {})
    assert store.until_decided(None, 3) == (None, 3) and store.until_decided(8, 3) == (8, 3)  # nothing kept yet
    store.claim(SETTINGS, {"seeds": 3, "max_seeds": 8})
    again = FrontierStore(str(tmp_path / "s"))
    assert again.until_decided(None, 5) == (8, 3) and again.until_decided(8, 3) == (8, 3)
    again.check(SETTINGS)  # what it remembers is no setting to refuse
    with pytest.raises(UsageError, match=r"holds a frontier of seeds until decided, --seeds 3 --max-seeds 8 \(its "
                                         r"frontier.json\), not --max-seeds 5: its cells are judged at its own looks"):
        again.until_decided(5, 3)
    path = tmp_path / "s" / "frontier.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "until_decided": [3, 8]}))
    with pytest.raises(UsageError, match=r"is not a frontier's settings \(it holds a JSON object, until_decided \[3, 8\]"):
        again.settings()


def test_a_store_that_cannot_be_written_is_one_line_naming_the_path(tmp_path, monkeypatch):
    """Before the driver holds the store (a read-only --storage): a refusal; mid-run (a full
    disk): one line that keeps the stored points and says what goes on from them."""
    import errno

    from raypkg.bench.frontier.command import points_kept_on_interrupt

    def full(self, path, record):
        self.unwritable(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    store = stored(tmp_path, {pid("a"): record(method="a")})
    monkeypatch.setattr(FrontierStore, "_write", full)
    with pytest.raises(UsageError) as caught:
        store.drive()
    assert str(caught.value) == (f"cannot write {store.location}/driver.json (No space left on device): the "
                                 f"frontier's points are stored in {store.location}; give a --storage (or --save) "
                                 "folder you can write")
    store.started = True
    with pytest.raises(RunFailed) as caught:
        with points_kept_on_interrupt(store, f"the same command with --storage {store.location}"):
            store.put(pid("b"), {})
    assert str(caught.value) == (f"cannot write {store.location}/points/{pid('b')}.json (No space left on device): "
                                 f"free space there, or make it writable; the 1 points stored in {store.location} are "
                                 f"kept, and the same command with --storage {store.location} goes on from them")


def test_ctrl_c_names_the_command_that_finds_the_same_store(tmp_path):
    """--save DIR/ (a new timestamped stem each time) or no --save: the same command would
    start a new store, so the message names the --storage that goes on from this one."""
    from raypkg.bench.frontier.command import resumed_by

    store = stored(tmp_path, {})
    (tmp_path / "runs").mkdir()
    assert resumed_by(str(tmp_path / "runs"), None, store) == f"the same command with --storage {store.location}"
    assert resumed_by(None, None, store) == f"the same command with --storage {store.location}"
    assert resumed_by(str(tmp_path / "runs" / "fm"), None, store) == "the same command"
    assert resumed_by(str(tmp_path / "runs"), str(tmp_path / "s"), store) == "the same command"


def test_render_with_rerun_stale_is_refused():
    result = CliRunner().invoke(main, [*TINY, "--render", "--rerun-stale"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == ("error: --render trains nothing and sets nothing aside: leave "
                                                      "out --rerun-stale (or --render)")


@pytest.mark.slow
def test_a_tiny_frontier_sets_aside_what_is_not_its_own_and_keeps_its_promises(tmp_path, monkeypatch):
    """Through the CLI, on a stored tiny frontier: a point file of another frontier is named by
    --render and not judged (its cell partial), set aside to foreign/ and run again by the
    same command; a second --rerun-stale keeps the first's file; Ctrl-C between two looks of
    seeds until decided says the frontier's message; a full disk mid-run is one line; the
    store's refusals exit 2 in one line."""
    from raypkg.bench.frontier import command

    code = {"commit": "c0", "code": "c0", "draft": False}  # the code that runs, whatever is edited meanwhile
    monkeypatch.setattr(command, "code_identity", lambda: code)
    stem, points = tmp_path / "f", tmp_path / "f-points" / "points"
    first = CliRunner().invoke(main, [*TINY, "--save", str(stem)])
    assert first.exit_code == 0, first.output
    victim = next(p for p in points.glob("*.json") if json.loads(p.read_text())["row"]["method"] == "uniform")
    theirs = json.loads(victim.read_text())
    theirs["row"]["label_noise"], theirs["frontier"] = 0.3, "0" * 16  # as another frontier wrote it
    victim.write_text(json.dumps(theirs))
    render = CliRunner().invoke(main, [*TINY, "--render", "--save", str(stem)])
    assert render.exit_code == 0, render.output
    assert f"foreign point file {victim} (run by a frontier of other settings than frontier.json's): not judged" \
        in render.output
    assert pd.read_parquet(f"{stem}-summary.parquet").set_index("method").loc["uniform", "missing"] == 1
    again = CliRunner().invoke(main, [*TINY, "--save", str(stem)])
    assert again.exit_code == 0, again.output
    assert "set aside to foreign/, its point runs again" in again.output
    assert (tmp_path / "f-points" / "foreign" / "points" / victim.name).exists() and victim.exists()
    for other in ("x1", "x2"):  # a second --rerun-stale: the first's file in stale/ is kept
        theirs = json.loads(victim.read_text())
        theirs["row"]["code"], theirs["row"]["commit"] = other, other
        victim.write_text(json.dumps(theirs))
        rerun = CliRunner().invoke(main, [*TINY, "--rerun-stale", "--save", str(stem)])
        assert rerun.exit_code == 0, rerun.output
    kept = tmp_path / "f-points" / "stale" / "points"
    assert sorted(json.loads(p.read_text())["row"]["code"] for p in kept.iterdir()) == ["x1", "x2"]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    judge_stored = command.judge_stored
    monkeypatch.setattr(command, "judge_stored", interrupted)  # between the looks: after seed 0, before seed 1
    stopped = CliRunner().invoke(main, [*TINY, "--max-seeds", "2", "--save", str(stem)])
    assert stopped.exit_code == 130, stopped.output
    assert stopped.output.strip().splitlines()[-1] == (
        f"interrupted: stopped by Ctrl-C; the {len(list(points.glob('*.json')))} points stored in {tmp_path}/f-points "
        "are kept, and the same command goes on from them")
    monkeypatch.setattr(command, "judge_stored", judge_stored)
    real_write = FrontierStore._write

    def full_disk(self, path, record):
        if "/points/" in path and "seed1-" in path:
            self.unwritable(path, OSError(28, "No space left on device"))
        real_write(self, path, record)

    monkeypatch.setattr(FrontierStore, "_write", full_disk)
    full = CliRunner().invoke(main, [*TINY, "--save", str(stem)])  # its second seed, as the store remembers
    assert full.exit_code == 1, full.output
    last = full.output.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot write {tmp_path}/f-points/points/seed1-") and last.endswith(
        f".json (No space left on device): free space there, or make it writable; the {len(list(points.glob('*.json')))}"
        f" points stored in {tmp_path}/f-points are kept, and the same command goes on from them")


def summary(tmp_path, name: str, source: dict, rows: list[tuple]) -> str:
    """A frontier summary as `bench frontier --save` writes it (rows: method, setting, verdict,
    n, x_vs_curve, x_low, x_high, level, missing), with ``source`` as its provenance."""
    from raypkg.tracking.run import write_parquet

    frame = pd.DataFrame(rows, columns=["method", "setting", "verdict", "n", "x_vs_curve", "x_low", "x_high", "level",
                                        "missing"]).assign(holm="", timed="alone")
    return str(write_parquet(tmp_path / f"{name}-summary.parquet", frame, source))


def test_bench_verdicts_keeps_every_mark_of_what_it_reads(tmp_path):
    """The draft mark, the point commits, the level and the partial cells of the summaries
    read stay in the table and its provenance; a point with no seed left is a cell that says
    so; a setup name may hold `=`."""
    from raypkg.tracking.provenance import read_provenance

    nan = float("nan")
    a = summary(tmp_path, "a", {"commit": "aaa", "draft": "EFFRAY_DRAFT=1", "point_commits": "a0 (2 point runs)"},
                [("full", "b=1", "equivalent", 3, 0.95, 0.9, 1.01, 1 - 0.05 / 4, 0),
                 ("rs2", "f=0.1", "-", 0, nan, nan, nan, 0.95, 3)])
    b = summary(tmp_path, "b", {"commit": "bbb"}, [("full", "b=1", "slower", 3, 0.5, 0.4, 0.62, 0.95, 0)])
    result = CliRunner().invoke(main, ["bench", "verdicts", f"lr=0.1={a}", f"b={b}", "--save", str(tmp_path / "v")])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "v.parquet")
    assert table.to_dict("records") == [
        {"method": "full", "lr=0.1": "b=1 equivalent 0.95x [0.90, 1.01] at 98.8% n=3",
         "b": "b=1 slower 0.50x [0.40, 0.62] n=3"},
        {"method": "rs2", "lr=0.1": "f=0.1 - n=0 partial: 3 missing", "b": "-"}]
    source = read_provenance(tmp_path / "v.parquet")
    assert source["draft"].endswith("summaries of a draft: lr=0.1 (EFFRAY_DRAFT=1)")
    assert source["point_commits"] == "lr=0.1: a0 (2 point runs); b: bbb"
    assert source["setups"]["lr=0.1"]["levels"] == [1 - 0.05 / 4] and source["setups"]["lr=0.1"]["missing"] == 3
    column_a, column_b = source["columns"].split("; b: ")  # how each column was measured, rendered with the table
    assert column_a.startswith("lr=0.1: run at a0 (2 point runs) on ") and column_b.startswith("run at commit bbb on ")
    from raypkg.tracking.markdown import render

    assert f"Its columns: {source['columns']}." in render(tmp_path / "v.parquet", ["method", "b"])
    assert "# lr=0.1: its points were run by a0 (2 point runs)" in result.output
    assert "draft: lr=0.1 (EFFRAY_DRAFT=1) written by a draft (EFFRAY_DRAFT=1); so is this table" in result.output


@pytest.mark.parametrize("rows", [[], [("full", "b=1", "-", 0, float("nan"), float("nan"), float("nan"), 0.95, 0)]])
def test_bench_verdicts_refuses_an_empty_summary_in_one_line(tmp_path, rows):
    path = summary(tmp_path, "e", {"commit": "e"}, rows)
    result = CliRunner().invoke(main, ["bench", "verdicts", f"x={path}", "--save", str(tmp_path / "v")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: {path} holds no judged point ({len(rows)} rows, none with a seed): nothing to show for x; render its "
        "frontier once points are stored (`effray bench frontier ... --render`), or leave it out"]
    assert not (tmp_path / "v.parquet").exists()


def test_a_read_only_storage_is_refused_in_one_line_before_any_point_runs(tmp_path, monkeypatch):
    import errno

    def read_only(self, path, record):
        self.unwritable(path, OSError(errno.EROFS, os.strerror(errno.EROFS)))

    monkeypatch.setattr(FrontierStore, "_write", read_only)
    storage = tmp_path / "ro"
    result = CliRunner().invoke(main, [*TINY, "--storage", str(storage), "--save", str(tmp_path / "f")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"error: cannot write {storage}/driver.json (Read-only file system): the frontier's points are stored in "
        f"{storage}; give a --storage (or --save) folder you can write")
    assert not (storage / "points").exists()


# --- a store's seconds are one clock: the machine that timed its points


def test_a_store_remembers_its_machine_refuses_a_driver_on_another_and_never_judges_a_point_of_another(tmp_path):
    """frontier.json remembers the first driver's machine; a driver on another is refused in
    one line naming both, and a second claim does not replace it; a row timed on another
    machine is unsound (not judged), a row of the store's or one that recorded none (stored
    before points did) is judged; a frontier.json whose machine is not a name is refused."""
    from raypkg.bench.frontier.judge import unsound

    store = FrontierStore(str(tmp_path / "s"))
    store.claim(SETTINGS, machine="CPU A (avx2)")
    store.check_machine("CPU A (avx2)")
    with pytest.raises(UsageError) as refused:
        store.check_machine("CPU B (avx2,avx512_bf16)")
    assert str(refused.value) == (
        f"{tmp_path}/s holds points timed on CPU A (avx2), and this machine is CPU B (avx2,avx512_bf16): seconds "
        "timed here would not be one clock with theirs; run it on such a machine (--render judges them anywhere), or "
        "give a new --save or --storage")
    store.claim(SETTINGS, machine="CPU B (avx2,avx512_bf16)")
    assert store.settings()["machine"] == "CPU A (avx2)"
    row = {"train_s": 1.0, "eval_s": 0.1, "epoch_eval_s": 0.2}
    assert unsound({**row, "machine": "CPU B"}, "CPU A (avx2)") == (
        "timed on CPU B, not on its store's machine (CPU A (avx2)): another clock")
    assert unsound({**row, "machine": "CPU A (avx2)"}, "CPU A (avx2)") == unsound(row, "CPU A (avx2)") == ""
    assert unsound({**row, "machine": "CPU B"}) == ""  # a store that remembers none (a cluster's): nothing to hold to
    (tmp_path / "s" / "frontier.json").write_text(json.dumps({**SETTINGS, "machine": 5}))
    with pytest.raises(UsageError, match="it holds a JSON object, machine 5"):
        store.settings()


@pytest.mark.slow
def test_a_frontier_records_the_machine_of_each_point_and_refuses_to_time_more_on_another(tmp_path, monkeypatch):
    """Through the CLI: each point's row and frontier.json name this machine; the same command
    on another machine exits 2 in one line before anything is written; --render there judges
    the points and its tables name the machine that timed them, not its own."""
    from raypkg.bench.frontier import command, report
    from raypkg.tracking.provenance import machine, read_provenance

    stem, store = tmp_path / "f", tmp_path / "f-points"
    first = CliRunner().invoke(main, [*TINY, "--save", str(stem)])
    assert first.exit_code == 0, first.output
    here = machine()
    rows = [json.loads(p.read_text())["row"] for p in (store / "points").glob("*.json")]
    assert rows and {row["machine"] for row in rows} == {here}
    assert json.loads((store / "frontier.json").read_text())["machine"] == here
    before = sorted((p, p.stat().st_mtime_ns) for p in store.rglob("*"))
    for module in (command, report):
        monkeypatch.setattr(module, "machine", lambda: "another CPU (avx2)")
    refused = CliRunner().invoke(main, [*TINY, "--seeds", "2", "--save", str(stem)])
    assert refused.exit_code == 2 and refused.output.strip().splitlines() == [
        f"error: {store} holds points timed on {here}, and this machine is another CPU (avx2): seconds timed here "
        "would not be one clock with theirs; run it on such a machine (--render judges them anywhere), or give a new "
        "--save or --storage"]
    assert sorted((p, p.stat().st_mtime_ns) for p in store.rglob("*")) == before
    render = CliRunner().invoke(main, [*TINY, "--render", "--save", str(stem)])
    assert render.exit_code == 0, render.output
    assert f"# the points were timed on other machines than this one (another CPU (avx2)): {here} (" in render.output
    assert read_provenance(f"{stem}-summary.parquet")["point_machines"] == f"{here} ({len(rows)} point runs)"
