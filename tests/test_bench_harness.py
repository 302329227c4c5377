"""The benchmark harness (``raypkg.bench.harness``): ratios against a reference row, one
warm-up per recipe before any timed run, and bench input refused in one line before any
training (issue #30)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest
from click.testing import CliRunner

from raypkg.bench.harness import BenchRunner, compare
from raypkg.cli_options import name_list, number_list
from raypkg.cli import main
from raypkg.errors import UsageError


def test_compare_divides_by_the_reference_with_the_same_keys_and_nothing_else():
    frame = pd.DataFrame({"seed": [0, 0, 0, 1, 1], "method": ["full", "a", "b", "full", "a"],
                          "e2e_s": [10.0, 5.0, 20.0, 8.0, 2.0], "test_acc": [0.9, 0.8, 0.95, 0.85, 0.6]})
    out = compare(frame, frame["method"] == "full", ["seed"], "speedup", "delta", rows=frame["method"] != "b")
    assert out["speedup"].tolist()[:2] == [1.0, 2.0] and math.isnan(out["speedup"][2])  # b: outside ``rows``
    assert out["speedup"].tolist()[3:] == [1.0, 4.0]  # seed 1 against seed 1's reference
    assert out["delta"].tolist()[4] == pytest.approx(100 * (0.6 - 0.85))
    out = compare(frame, frame["method"] == "nope", ["seed"], "speedup")  # no reference: NaN
    assert out["speedup"].isna().all()
    out = compare(frame.head(3), frame.head(3)["method"] == "full", [], delta="delta", points=False)
    assert out["delta"].tolist() == pytest.approx([0.0, -0.1, 0.05])  # one reference for all, in fractions


def test_lists_take_each_item_once():
    assert name_list(" a, b ,", "--x") == ["a", "b"] and number_list("1,2", "--n", "counts", int) == [1, 2]
    for parse in (lambda: name_list("rs2,rs2", "--methods"), lambda: number_list("0.1,0.3,0.1", "--fractions", "x")):
        with pytest.raises(UsageError, match="more than once"):
            parse()


def test_the_runner_warms_each_recipe_up_once_before_its_first_timed_run(tmp_path):
    from raypkg.engine.config import TrainConfig

    runs = []
    recipe = SimpleNamespace(name="r", run=lambda cfg, sink, data, **shared: runs.append(cfg.epochs) or {})
    runner = BenchRunner("test", str(tmp_path / "t"))
    cfg = TrainConfig(epochs=5)
    runner.run(recipe, cfg, data=None)
    runner.run(recipe, cfg, data=None)
    runner.run(recipe, cfg, data=None, key="other backend")
    assert runs == [1, 5, 5, 1, 5]  # an untimed one-epoch run before the first of each (recipe, key)


# Each refused in one line with exit status 2, before any data is loaded or anything trains.
REFUSED = [
    (["frontier", "--methods", "rs2,rs2"], "--methods names rs2 more than once"),  # crashed after all the training
    (["frontier", "--fractions", "0.1,0.1"], "--fractions names 0.1 more than once"),
    (["frontier", "--methods", ","], "--methods takes comma-separated names"),  # ran only the full-data row
    (["frontier", "--lr", "0.1,0.2"], "--lr takes one value here"),  # named --lrlen, which frontier lacks
    (["crest", "--datasets", ","], "--datasets takes comma-separated names"),  # a KeyError traceback
    (["crest", "--fracs", "0.1,0.1"], "--fracs names 0.1 more than once"),
    (["coreset", "--methods", "grand,grand"], "--methods names grand more than once"),
    (["lipt", "--merge", "zeros,zeros"], "--merge names zeros more than once"),
    (["sparse", "--setups", "digits:mlp,digits:mlp"], "--setups names digits:mlp more than once"),
    (["overhead", "--workers", "1,1"], "--workers names 1 more than once"),
    (["data", "--modes", ","], "--modes takes comma-separated names"),
]


@pytest.mark.parametrize("args, says", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_bad_bench_input_is_one_line_before_any_work(tmp_path, monkeypatch, args, says):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["bench", *args, "--save", str(tmp_path / "b")])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], \
        result.output
    assert list(tmp_path.iterdir()) == []
