"""Space files for `effray tune`: parsing and refusal of bad ones (no Ray needed), and
`check_sweep`, what a finished sweep directory must hold (used by the tests that run Tune:
tests/test_platform_cli.py, every `effray tune` of tests/test_readme.py)."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

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


def expected_trials(spec: dict, num_samples: int) -> int:
    """Trials a sweep runs: num_samples times every grid point (`search: grid` sweeps each
    choice entry as a grid too)."""
    count = num_samples
    for dist in (spec.get("space") or {}).values():
        (kind, args), = dist.items()
        if kind == "grid" or kind == "choice" and spec["search"] == "grid":
            count *= len(args)
    return count


def check_sweep(sweep, spec: dict, num_samples: int, printed_value: float | None = None):
    """A finished sweep directory against its space: trials.parquet holds one row per trial;
    the best is the max (min) of the metric over them (the printed value, to 4 decimals);
    best_config.yaml is the base plus the config of a trial that reached it."""
    import math

    import pandas as pd

    trials = pd.read_parquet(sweep / "trials.parquet")
    best = yaml.safe_load((sweep / "best_config.yaml").read_text())
    assert len(trials) == expected_trials(spec, num_samples), trials
    scores = trials[spec["metric"]]
    top = scores.max() if spec["mode"] == "max" else scores.min()
    assert math.isfinite(top), scores
    if printed_value is not None:
        assert abs(printed_value - top) <= 5e-5, (printed_value, top)
    for key, value in (spec.get("base") or {}).items():
        if key not in spec.get("space", {}):
            assert best[key] == value, key
    columns = [c for c in trials if c.startswith("config/")]  # numbers and flags (strings are not kept)
    assert columns or not spec.get("space"), list(trials)
    winners = trials[scores == top]
    assert any(all(best[c.removeprefix("config/")] == row[c] for c in columns) for _, row in winners.iterrows()), \
        (best, winners[columns])
    return trials, best


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
