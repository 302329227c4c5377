"""The benchmark harness (``raypkg.bench.harness``): ratios against a reference row, one
warm-up per recipe before any timed run, and the list flags' parsing (the benches' bad
input is in test_bad_input.py's table)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from raypkg.bench.harness import BenchRunner, compare
from raypkg.cli_options import name_list, number_list
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
    assert number_list("0.05,1", "--density", "densities", unit=True) == [0.05, 1.0]
    for text in ("0,0.5", "0.5,1.01", "nan"):
        with pytest.raises(UsageError, match=r"--density takes comma-separated densities in \(0, 1\]"):
            number_list(text, "--density", "densities", unit=True)


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
