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
from raypkg.tuning import read_space


def write(tmp_path, spec) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_shipped_train_space_parses():
    spec = read_space("tune_spaces/train.yaml")
    assert spec["method"] == "train" and spec["metric"] == "test_acc" and "lr" in spec["space"]


@pytest.mark.parametrize("spec, message", [
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
