"""Space files for `effray tune`: parsing and refusal of bad ones (no Ray needed), and
`check_sweep`, what a finished sweep directory must hold (used by the tests that run Tune:
tests/ray/test_platform_cli.py, every `effray tune` of tests/docs/test_readme.py)."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner
from helpers import expected_trials

from raypkg.cli import main
from raypkg.errors import UsageError
from raypkg.tune_space import read_space


def write(tmp_path, spec) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_shipped_train_space_parses():
    spec = read_space("tune_spaces/train.yaml")
    assert spec["method"] == "train" and spec["metric"] == "test_acc" and "lr" in spec["space"]


def test_the_fastest_stack_space_races_every_stack_to_the_resnet20_target():
    from raypkg.bench.frontier import PRESETS
    from raypkg.tune_space import check_trial_config
    from raypkg.tuning import asha_metric

    spec = read_space("tune_spaces/fastest-stack.yaml")
    check_trial_config(spec)  # every stack, budget and schedule makes a valid config
    preset = PRESETS["digits-aug:resnet20"]
    assert (spec["metric"], spec["mode"], spec["scheduler"]) == ("tta_objective", "min", "fifo")
    assert asha_metric(spec) == ("test_acc", "max")  # --scheduler asha: the rungs rank the accuracy
    assert asha_metric({"metric": "test_loss", "mode": "min"}) == ("test_loss", "min")
    assert {k: spec["base"][k] for k in ("model", "train_size", "batch_size", "target_acc")} == {
        k: preset[k] for k in ("model", "train_size", "batch_size", "target_acc")}
    assert [] in spec["space"]["stack"]["choice"]  # plain training competes too


def test_the_time_to_accuracy_objective_is_the_first_epoch_at_the_target_else_a_penalty():
    from raypkg.recipe import TTA_PENALTY_S, TuneSink
    from raypkg.recipe_registry import find_recipe

    recipe = find_recipe("train")
    reported = []
    sink = TuneSink(recipe, recipe.config_cls(target_acc=0.9), reported.append)
    start = sink.started_at
    for epoch, (acc, end, eval_s) in enumerate([(0.5, 10.0, 1.0), (0.92, 21.0, 1.0), (0.85, 32.0, 1.0)], 1):
        sink.log_metrics({"epoch": epoch, "test_acc": acc, "epoch_end_time": start + end, "eval_s": eval_s})
    # not reached: the penalty times 1 + the shortfall; then the first epoch at 0.9, less the evaluation before it
    assert [r["tta_objective"] for r in reported] == pytest.approx([TTA_PENALTY_S * 1.4, 20.0, 20.0])
    # a trial that never reaches the target ranks behind one that does, however short it is, and
    # among those that never do, the closer first
    short, closer = [], []
    for acc, out in ((0.85, short), (0.88, closer)):
        TuneSink(recipe, recipe.config_cls(target_acc=0.9), out.append).log_metrics(
            {"epoch": 1, "test_acc": acc, "epoch_end_time": start + 3.0, "eval_s": 0.1})
    assert reported[-1]["tta_objective"] < closer[-1]["tta_objective"] < short[-1]["tta_objective"]
    plain = []
    TuneSink(recipe, recipe.config_cls(), plain.append).log_metrics({"epoch": 1, "test_acc": 0.5,
                                                                     "epoch_end_time": start + 1.0})
    assert "tta_objective" not in plain[0]  # no target, no objective
    unlearning = find_recipe("deltagrad")  # its configs have no target_acc at all: its trials still report
    TuneSink(unlearning, unlearning.config_cls(), plain.append).log_metrics({"epoch": 1, "test_acc": 0.5})
    assert plain[-1] == {"epoch": 1, "test_acc": 0.5}


@pytest.mark.parametrize("spec, message", [
    ({"method": "train", "metric": "tta_objective", "mode": "min", "space": {"lr": {"choice": [0.1]}}},
     "tta_objective .* needs base: target_acc"),
    ({"method": "train", "metric": "tta_objective", "mode": "max", "base": {"target_acc": 0.9},
      "space": {"lr": {"choice": [0.1]}}}, "and mode: min"),
    ({"method": "train", "spaces": {}}, "unknown key.*spaces"),
    ({"method": "nope"}, "unknown tunable method 'nope'"),
    ({"method": "train", "space": {"learning_rate": {"choice": [1]}}}, "unknown config key.*learning_rate"),
    ({"method": "train", "base": {"epoch": 3}}, "unknown config key.*epoch"),
    ({"method": "train", "space": {"lr": {"normal": [0, 1]}}}, "must be one of"),
    ({"method": "train", "mode": "biggest"}, "unknown mode 'biggest'"),
])
def test_bad_space_files_are_refused(tmp_path, spec, message):
    with pytest.raises(UsageError, match=message):
        read_space(write(tmp_path, spec))


def test_cli_bad_space_exits_2_before_starting_ray(tmp_path):
    path = write(tmp_path, {"method": "train", "space": {"lrr": {"choice": [0.1]}}})
    result = CliRunner().invoke(main, ["tune", "train", "--space", path, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "lrr" in result.output
    assert not (tmp_path / "o").exists()
    missing = CliRunner().invoke(main, ["tune", "train", "--space", str(tmp_path / "none.yaml")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


@pytest.mark.parametrize("search, trials", [("random", 3 * 2), ("grid", 3 * 2 * 3)])
def test_expected_trials_counts_every_grid_point(search, trials):
    spec = {"search": search, "space": {"lr": {"loguniform": [0.01, 0.1]}, "seed": {"grid": [0, 1]},
                                        "batch_size": {"choice": [32, 64, 128]}}}
    assert expected_trials(spec, num_samples=3) == trials


def test_a_failed_trial_is_one_line_each():
    """A sweep whose trials failed inside Ray: one line per failed trial, the exception's own
    line (not Ray's wrapping of it), and nothing for the trials that finished."""
    from types import SimpleNamespace

    from raypkg.tuning import failed_trials

    wrapped = RuntimeError("ray::ImplicitFunc.train() (pid=1, ip=127.0.0.1)\n  File \"x.py\", line 1\n"
                           "raypkg.errors.UsageError: train-frac must be in (0, 1], got 2\n")
    results = [SimpleNamespace(error=None, metrics={"trial_id": "a"}, path="/t/a"),
               SimpleNamespace(error=wrapped, metrics={"trial_id": "b"}, path="/t/b"),
               SimpleNamespace(error=ValueError(), metrics=None, path="/t/trial_c")]
    assert failed_trials(results) == ["trial b failed: raypkg.errors.UsageError: train-frac must be in (0, 1], got 2",
                                      "trial trial_c failed: ValueError"]


def test_every_setting_a_trial_sets_itself_has_its_refusal():
    """A trial's own settings (``TRIAL_SETTINGS``) and those a space may not set (``TRIAL_OWN``,
    each with why) are one list: none is overridden silently."""
    from raypkg.recipe_registry import TRIAL_SETTINGS
    from raypkg.tune_space import TRIAL_OWN, check_trial_own

    assert set(TRIAL_OWN) == set(TRIAL_SETTINGS)
    check_trial_own({"base": dict(TRIAL_SETTINGS)})  # the trial's own values are no override
    for key in TRIAL_SETTINGS:
        with pytest.raises(UsageError, match=f"^the space file's base sets {key}=7, but each Tune trial sets {key} "
                                             "itself"):
            check_trial_own({"base": {key: 7}})
