"""The benchmark harness (``raypkg.bench.harness``): ratios against a reference row, one
warm-up per recipe before any timed run, each table's W&B run, and the list flags' parsing
(the benches' bad input is in test_bad_input.py's table)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest

from raypkg.bench.harness import BenchRunner, compare
from raypkg.cli_options import name_list, number_list
from raypkg.errors import UsageError
from raypkg.plots import hbar


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
    assert name_list(" a, b ", "--x") == ["a", "b"] and number_list("1,2", "--n", "counts", int) == [1, 2]
    for parse in (lambda: name_list("a,,b", "--x"), lambda: name_list("a,", "--x")):
        with pytest.raises(UsageError, match="has an empty item"):
            parse()
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


def test_a_point_that_trains_as_an_earlier_one_takes_its_run(tmp_path):
    """Full training at auto where auto resolves to fp32 and contiguous weights is full-fp32's
    training, bit for bit: the runner runs it once (``same_training``)."""
    import dataclasses

    from raypkg.bench.harness import Point
    from raypkg.data.registry import load_dataset
    from raypkg.engine.config import TrainConfig

    runs = []
    recipe = SimpleNamespace(name="r", run=lambda cfg, sink, data, **shared: runs.append(cfg.epochs) or {
        "cost_s": {"train": 0.1 * cfg.epochs}, "test_acc": 0.5 + cfg.epochs / 100})
    data = load_dataset("digits")
    cfg = TrainConfig(model="logreg", epochs=3, precision="fp32", memory_format="contiguous")
    configs = (cfg, cfg, dataclasses.replace(cfg, epochs=2), cfg)
    points = [Point(f"p{i}", recipe, c, {"method": f"m{i}"}) for i, c in enumerate(configs)]
    done = BenchRunner("test", str(tmp_path / "t")).rows(points, data, ("train",), "e2e_s")
    assert runs == [1, 3, 2]  # the warm-up, p0, p2: p1 and p3 take p0's run
    assert [(row["method"], row["e2e_s"], row["test_acc"]) for row, _ in done] == [
        ("m0", pytest.approx(0.3), 0.53), ("m1", pytest.approx(0.3), 0.53), ("m2", pytest.approx(0.2), 0.52),
        ("m3", pytest.approx(0.3), 0.53)]


def logged(run, kind: str, bench: str) -> dict:
    """What a W&B offline run logged under ``bench/``: key -> its media file (kind: table, images)."""
    return {p.name.rsplit("_", 2)[0]: p for p in (run / "files" / "media" / kind / bench).iterdir()}


@pytest.mark.slow
def test_each_table_is_one_wandb_run_with_its_tables_and_plots(tmp_path, monkeypatch):
    for var, value in (("WANDB_MODE", "offline"), ("WANDB_SILENT", "true")):
        monkeypatch.setenv(var, value)  # the runner sets them for its process; put back after the test
    monkeypatch.delenv("EFFRAY_WANDB_MODE", raising=False)
    frame = pd.DataFrame({"method": ["full", "uniform"], "total_s": [2.0, 1.0], "test_acc": [0.9, 0.8]})
    summary = frame.assign(seeds=3)
    runner = BenchRunner("coreset", str(tmp_path / "b"), wandb="offline")
    written = runner.finish(frame, list(frame.columns), extra={"-summary": summary},
                            plot=lambda f, ax: hbar(f, ax, "method", ["total_s"], "seconds"))
    assert [p.name for p in written] == ["b.parquet", "b.png", "b-summary.parquet"]
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    tables = logged(run, "table", "coreset")
    assert set(tables) == {"table", "summary"}
    for key, table in (("table", frame), ("summary", summary)):
        content = json.loads(tables[key].read_text())
        assert content["columns"] == list(table.columns) and content["data"] == table.values.tolist()
    assert set(logged(run, "images", "coreset")) == {"plot"}
    BenchRunner("coreset", str(tmp_path / "quiet"), wandb="disabled").finish(frame, list(frame.columns))
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1  # disabled: no W&B run


def test_wandb_online_without_a_key_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no W&B settings, no netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "disabled")  # put back after the test
    with pytest.raises(UsageError, match="^--wandb online needs a W&B API key"):
        BenchRunner("coreset", str(tmp_path / "b"), wandb="online")
    assert list(tmp_path.iterdir()) == []


def test_bench_overhead_knows_the_fp32_rate_of_the_gpus_it_names_and_no_other():
    from raypkg.bench.overhead import known_peak

    assert known_peak("NVIDIA H100 80GB HBM3") == known_peak("NVIDIA H200") == 67.0
    assert known_peak("NVIDIA A100-SXM4-80GB") == 19.5
    assert known_peak("Tesla") is None  # not one of them (a one-word name raised IndexError before)
