"""A method defined outside effray (issue 81), named by import path
(``plugin_example.methods:Hardest``, tests/plugin_example/methods.py): the same row as a
built-in's, its flags, its runs, every refusal at every entry point in one line with status
2, a plug-in that raises inside training, and its source in the frontier's store and the
caches. The page's commands, from outside the repository: tests/docs/test_own_method.py."""

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
    from raypkg.tuning import read_space

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
