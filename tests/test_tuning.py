"""Space files for `effray tune`: parsing and refusal of bad ones (no Ray needed)."""

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
