"""A method defined outside effray (issue 81), named by import path
(``plugin_example.methods:Hardest``, tests/plugin_example/methods.py): the same row as a
built-in's, its flags, its runs, every refusal at every entry point in one line with status
2, a plug-in that raises inside training, and its source in the frontier's store and the
caches. The page's commands, from outside the repository: tests/docs/test_own_method_page.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from helpers import TESTS_DIR, bare_env

import raypkg
from raypkg.cli import main
from raypkg.errors import UsageError

HARDEST = "plugin_example.methods:Hardest"
QUIET = ["--epochs", "1", "--no-progress", "--wandb", "disabled"]


@pytest.fixture(autouse=True)
def keep_pythonpath(monkeypatch):
    """Resolving a plug-in adds its directory to PYTHONPATH (for Ray's processes): undo it."""
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def summary_of(result) -> dict:
    assert result.exit_code == 0, result.output
    run_dir = result.output.strip().splitlines()[-1].split("run directory: ")[1]
    return json.loads(Path(run_dir, "summary.json").read_text()) | {"dir": run_dir}


def test_an_import_path_yields_a_row_as_a_builtin_name_does():
    from raypkg.method_registry import METHODS, Method, find_method

    own = find_method(HARDEST)
    assert own == Method(HARDEST, path=HARDEST) and own.plugin and own.algorithm == HARDEST
    assert own.settings == "plugin_example.methods:HardestSettings"
    ema = next(m for m in METHODS if m.name == "ema")
    assert find_method("ema") is ema and find_method("raypkg.methods.ema:Ema") is ema and not ema.plugin
    assert find_method("no-such-method") is None


def test_its_settings_are_flags_of_its_command_and_of_with(tmp_path):
    help_text = invoke("run", HARDEST, "--help").output
    assert "Hardest k: train each batch's --keep x B highest-loss examples only." in help_text
    assert "--keep FLOAT" in help_text and "highest-loss examples. Default: 0.5." in " ".join(help_text.split())
    own = summary_of(invoke("run", HARDEST, "--keep", "0.25", "--out", str(tmp_path), *QUIET))
    assert own["method"] == HARDEST and own["keep"] == 0.25
    saved = yaml.safe_load(Path(own["dir"], "config.yaml").read_text())
    assert saved["keep"] == 0.25
    again = summary_of(invoke("run", HARDEST, "--config", str(Path(own["dir"], "config.yaml")), "--name", "again"))
    assert again["test_acc"] == own["test_acc"]  # the config file repeats the run
    plain = summary_of(invoke("train", "--out", str(tmp_path), *QUIET))
    stacked = summary_of(invoke("train", "--with", HARDEST, "--keep", "0.25", "--out", str(tmp_path), *QUIET))
    assert stacked["method"] == f"train+{HARDEST}" and stacked[HARDEST] == {"keep": 0.25}
    assert stacked["test_acc"] == own["test_acc"] != plain["test_acc"]  # a quarter of each batch trains
    without = invoke("train", "--keep", "0.25", *QUIET)
    assert without.exit_code == 2 and "No such option '--keep'" in without.output


def one_line_refusal(call) -> str:
    """What ``call`` refuses with: a CliRunner result's one ``error:`` line (status 2), or a
    UsageError's one-line message."""
    try:
        result = call()
    except UsageError as e:
        assert "\n" not in str(e)
        return str(e)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


# (base, member): member alone when base is None; the line each refusal has
REFUSED = [
    (None, "plugin_example.nomod:Hardest", "cannot import 'plugin_example.nomod'"),
    (None, "plugin_example.methods:Nope", "module 'plugin_example.methods' has no attribute 'Nope'"),
    (None, "plugin_example.methods:NotAnAlgorithm", "is not a raypkg.algorithms.Algorithm \\(it is a class"),
    (None, "plugin_example.methods:not_a_class", "is not a raypkg.algorithms.Algorithm \\(it is a function"),
    (None, "plugin_example.methods:Undecorated", "its settings UndecoratedSettings is not a dataclass"),
    (None, "plugin_example.methods:ClashesWithEpochs", "its setting --epochs clashes with effray's own flag"),
    ("label-smoothing", "plugin_example.methods:ClashesWithLabelSmoothing", "both set smoothing"),
    ("infobatch", "plugin_example.methods:BringsAPlan", "one run takes one batch plan, and this stack has 2"),
]


@pytest.mark.parametrize("entry", ["effray run", "--with", "config file", "raypkg.run", "tune space", "frontier"])
@pytest.mark.parametrize("base, member, message", REFUSED, ids=[m.split(":")[1] for _, m, _ in REFUSED])
def test_every_refusal_is_one_line_before_any_work_at_every_entry_point(tmp_path, entry, base, member, message):
    from raypkg.tune_space import read_space

    stack = f"{base}+{member}" if base else member
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"stack": [member], "epochs": 1}))
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"method": stack, "space": {"lr": {"choice": [0.1]}}}))
    calls = {
        "effray run": lambda: invoke("run", *([base, "--with", member] if base else [member]), *QUIET),
        "--with": lambda: invoke(*(["run", base] if base else ["train"]), "--with", member, *QUIET),
        "config file": lambda: invoke(*(["run", base] if base else ["train"]), "--config", str(config)),
        "raypkg.run": lambda: raypkg.run(stack, save=False, epochs=1),
        "tune space": lambda: read_space(space),
        "frontier": lambda: invoke("bench", "frontier", "--methods", stack, "--save", str(tmp_path / "f")),
    }
    import re

    assert re.search(message, one_line_refusal(calls[entry])), message
    assert not list(tmp_path.glob("runs*")) and not (tmp_path / "f-points").exists()  # nothing written


def test_a_plugin_that_raises_in_training_fails_the_run_naming_its_frame(tmp_path):
    result = invoke("run", "plugin_example.methods:RaisesInTraining", "--out", str(tmp_path), *QUIET)
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(error) == 1, result.output
    line = next(n for n, text in enumerate(Path(TESTS_DIR, "plugin_example/methods.py").read_text().splitlines(), 1)
                if "the plug-in's own bug" in text)
    assert error[0] == ("error: method 'plugin_example.methods:RaisesInTraining' raised in training, at "
                        f"methods.py:{line} in on_after_backward: ValueError: the plug-in's own bug")
    assert not list(tmp_path.iterdir())  # no half-written run directory


def test_a_plugin_importing_torch_at_its_top_is_loaded_with_a_note():
    proc = subprocess.run([sys.executable, "-m", "raypkg.cli", "run", "plugin_example.torch_method:TorchHardest",
                           "--help"], capture_output=True, text=True, env=bare_env(PYTHONPATH=TESTS_DIR), timeout=120)
    assert proc.returncode == 0 and "--keep FLOAT" in proc.stdout, proc.stderr
    assert proc.stderr.startswith("note: method 'plugin_example.torch_method:TorchHardest': importing "
                                  "plugin_example.torch_method imports torch ("), proc.stderr
    light = subprocess.run([sys.executable, "-m", "raypkg.cli", "run", HARDEST, "--help"], capture_output=True,
                           text=True, env=bare_env(PYTHONPATH=TESTS_DIR), timeout=120)
    assert light.returncode == 0 and light.stderr == ""


def test_the_store_finds_points_of_another_plugin_source(tmp_path, monkeypatch):
    from raypkg.bench.frontier.store import FrontierStore

    store = FrontierStore(str(tmp_path / "s"))
    rows = {"builtin": {"code": "c1"}, "same": {"code": "c1", "plugin": "m:H@aaa"},
            "edited": {"code": "c1", "plugin": "m:H@aaa"}, "both": {"code": "c0", "commit": "at-c0", "plugin": "m:H@0"}}
    stored = {"points": {point: {"row": row, "epochs": []} for point, row in rows.items()}}
    monkeypatch.setattr(store, "_records", lambda kind: stored.get(kind, {}))  # the points as read, checked
    wanted = {"builtin": None, "same": "m:H@aaa", "edited": "m:H@bbb", "both": "m:H@bbb"}
    assert store.stale("c1", wanted) == {("points", "edited"): "plug-in m:H@aaa", ("points", "both"): "at-c0"}
    assert store.stale("c1", set(wanted)) == {("points", "same"): "plug-in m:H@aaa",
                                              ("points", "edited"): "plug-in m:H@aaa", ("points", "both"): "at-c0"}


def test_cache_keys_and_frontier_points_carry_the_plugin_source(tmp_path, monkeypatch):
    from raypkg.bench.frontier.points import plugin_code
    from raypkg.config import build_config
    from raypkg.selection.config import CoresetConfig
    from raypkg.selection.pipeline import PRETRAIN_EXCLUDE, config_key

    module = tmp_path / "edited_method.py"
    module.write_text("from plugin_example.methods import Hardest\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = build_config(CoresetConfig, None, {"stack": ["edited_method:Hardest"]})
    plain = build_config(CoresetConfig, None, {"stack": ["ema"]})
    before, code = config_key(cfg, PRETRAIN_EXCLUDE), plugin_code("rs2+edited_method:Hardest")
    assert code.startswith("edited_method:Hardest@") and plugin_code("rs2+ema") is None
    assert config_key(plain, PRETRAIN_EXCLUDE) != before
    module.write_text("from plugin_example.methods import Hardest  # edited\n")
    assert config_key(cfg, PRETRAIN_EXCLUDE) != before and plugin_code("rs2+edited_method:Hardest") != code


def test_the_frontier_summary_keeps_each_points_plugin_source():
    """`aggregate` keeps a point's ``plugin`` (the same in each of its seeds' rows), none for
    effray's own; a frame of rows without the column gives a summary without it."""
    import pandas as pd

    from raypkg.bench.frontier import aggregate

    rows = pd.DataFrame([("full", "full", "b=1", seed, None, 10.0, 0.9) for seed in (1, 2)]
                        + [("plugin", "m:H", "-", seed, "m:H@aaa", 5.0, 0.8) for seed in (1, 2)]
                        + [("rs2+plugin", "rs2+m:H", "f=0.1", 1, "m:H@aaa", 3.0, 0.7)],
                        columns=["family", "method", "setting", "seed", "plugin", "e2e_s", "test_acc"])
    table = aggregate(rows.assign(flops=1.0))
    assert dict(zip(table["method"], table["plugin"].fillna("-"))) == {"full": "-", "m:H": "m:H@aaa",
                                                                       "rs2+m:H": "m:H@aaa"}
    assert table["seeds"].tolist() == [2, 2, 1]
    assert "plugin" not in aggregate(rows.drop(columns="plugin").assign(flops=1.0))


def test_bench_verdicts_names_each_plugin_and_its_digest_in_the_tables_provenance(tmp_path):
    import pandas as pd

    from raypkg.tracking.markdown import render
    from raypkg.tracking.provenance import read_provenance
    from raypkg.tracking.run import write_parquet

    columns = ["method", "setting", "verdict", "n", "x_vs_curve", "x_low", "x_high", "level", "missing", "plugin"]
    own = pd.DataFrame([("full", "b=1", "equivalent", 2, 1.0, 0.9, 1.1, 0.95, 0, None),
                        ("m:H", "-", "slower", 2, 0.5, 0.4, 0.6, 0.95, 0, "m:H@aaa"),
                        ("rs2+n:K", "f=0.1", "faster", 2, 2.0, 1.5, 2.5, 0.95, 0, "n:K@bbb")], columns=columns)
    a = write_parquet(tmp_path / "a-summary.parquet", own.assign(holm="", timed="alone"), {"commit": "aaa"})
    b = write_parquet(tmp_path / "b-summary.parquet", own[:1].drop(columns="plugin").assign(holm="", timed="alone"),
                      {"commit": "bbb"})
    result = invoke("bench", "verdicts", f"a={a}", f"b={b}", "--save", str(tmp_path / "v"), "--wandb", "disabled")
    assert result.exit_code == 0, result.output
    assert "# a: plug-in methods m:H@aaa n:K@bbb (name@source digest)" in result.output
    source = read_provenance(tmp_path / "v.parquet")
    assert source["setups"]["a"]["plugins"] == ["m:H@aaa", "n:K@bbb"] and "plugins" not in source["setups"]["b"]
    column_a, column_b = source["columns"].split("; b: ")
    assert column_a.endswith(", every point timed alone, plug-in methods m:H@aaa n:K@bbb (name@source digest)")
    assert "plug-in" not in column_b
    assert "plug-in methods m:H@aaa n:K@bbb (name@source digest)" in render(tmp_path / "v.parquet", ["method", "a"])


def test_ray_train_workers_import_each_plugin_method_first_and_say_in_one_line_where_they_cannot():
    """What the driver gives the workers (``plugin_methods``: a config's own method and its
    stack's, plug-ins only), what a worker that cannot import one raises, and the one line
    the driver fails with (``worker_refusal``: from Ray Train's wrapped worker exception)."""
    import socket

    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback

    from raypkg.config import build_config
    from raypkg.engine.ray_train import plugin_methods, worker_refusal
    from raypkg.plugins import WORKER_FIX, import_on_worker

    own = ("method", HARDEST, HARDEST)
    assert plugin_methods(build_config(HARDEST, None, {"epochs": 1})) == [own]
    assert plugin_methods(build_config("infobatch", None, {"stack": ["ema", HARDEST]})) == [own]
    assert plugin_methods(build_config("infobatch", None, {"stack": ["ema"]})) == []
    import_on_worker([own])  # importable here
    with pytest.raises(UsageError) as refused:
        import_on_worker([own, ("method", "gone:Hardest", "plugin_example_gone:Hardest")])
    assert str(refused.value) == (f"method 'gone:Hardest': a Ray worker on {socket.gethostname()} cannot import "
                                  f"'plugin_example_gone' (No module named 'plugin_example_gone'): {WORKER_FIX}")

    class Failed(Exception):
        worker_failures = {0: ValueError("other"), 1: UserExceptionWithTraceback(refused.value, "Traceback ...")}

    assert worker_refusal(Failed()) is refused.value
    Failed.worker_failures = {0: UserExceptionWithTraceback(ValueError("other"), "Traceback ...")}
    assert worker_refusal(Failed()) is None
