"""The DeepCore-style pipeline, its cache, the `select` / `run coreset` commands, the benches."""

from __future__ import annotations

import json

import click
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from raypkg.cli import EffrayGroup
from raypkg.data import load_dataset
from raypkg.methods.coreset.commands import run_coreset_command, select_command

CPU = torch.device("cpu")


def load_digits():
    return load_dataset("digits", seed=0)

SELECT_FAST = ["--dataset", "digits", "--model", "logreg", "--pretrain-epochs", "1", "--batch-size", "32",
               "--wandb", "disabled", "--no-progress"]
FAST = [*SELECT_FAST, "--epochs", "3"]  # `select` trains no model: it refuses --epochs


def effray() -> click.Group:
    """`effray` with this package's commands, as raypkg.cli registers them."""
    cli = EffrayGroup(name="effray")
    cli.add_command(select_command)
    run = click.Group("run")
    run.add_command(run_coreset_command)
    cli.add_command(run)
    return cli


def invoke(*args):
    return CliRunner().invoke(effray(), list(args), catch_exceptions=False)


def summary_of(out: str) -> dict:
    run_dir = out.strip().splitlines()[-1].split("run directory: ")[1]
    return json.loads(open(f"{run_dir}/summary.json").read()) | {"dir": run_dir}


def test_run_coreset_phases_selection_table_and_cache(tmp_path):
    out = str(tmp_path)
    first = invoke("run", "coreset", "--selection", "gradmatch", "--fraction", "0.1", "--out", out, *FAST)
    assert first.exit_code == 0, first.output
    s = summary_of(first.output)
    assert set(s["phases"]) >= {"pretrain", "selection", "train"} and s["test_acc"] > 0.3
    assert s["subset_size"] == 135 and s["cached"] == {"pretrain_hits": 0, "selection_hit": False}
    table = pd.read_parquet(f"{s['dir']}/selection.parquet")
    assert list(table.columns[:3]) == ["index", "weight", "score"] and len(table) == 135
    assert table["index"].is_unique and (table["weight"] > 0).all()

    # same config again: warm-up and selection come from the cache, same indices
    again = summary_of(invoke("run", "coreset", "--selection", "gradmatch", "--fraction", "0.1", "--out", out,
                              *FAST).output)
    assert again["cached"] == {"pretrain_hits": 1, "selection_hit": True}
    # charged its original seconds though it took ~0 s here
    assert again["cost_s"]["selection"] == s["cost_s"]["selection"]
    assert again["phases"]["selection"] < again["cost_s"]["selection"]
    assert pd.read_parquet(f"{again['dir']}/selection.parquet")["index"].tolist() == table["index"].tolist()

    # --no-cache recomputes both and, same seed, finds the same indices; `select` shares the warm-up
    fresh = summary_of(invoke("select", "--method", "gradmatch", "--fraction", "0.1", "--no-cache", "--out", out,
                              *SELECT_FAST).output)
    assert fresh["cached"] == {"pretrain_hits": 0, "selection_hit": False} and fresh["test_acc"] is None
    assert pd.read_parquet(f"{fresh['dir']}/selection.parquet")["index"].tolist() == table["index"].tolist()
    assert "train" not in fresh["phases"]


def test_select_grand_writes_every_examples_score(tmp_path):
    res = invoke("select", "--method", "grand", "--class-budget", "5", "--repeats", "2", "--out", str(tmp_path),
                 *SELECT_FAST)
    s = summary_of(res.output)
    assert s["subset_size"] == 50 and s["repeats"] == 2
    scores = pd.read_parquet(f"{s['dir']}/scores.parquet")
    picked = pd.read_parquet(f"{s['dir']}/selection.parquet")
    assert len(scores) == s["train_size"]
    best = scores.set_index("index").loc[picked["index"], "score"]
    assert (best.to_numpy() == picked["score"].to_numpy()).all()


@pytest.mark.slow
def test_bench_coreset_table_adds_up(tmp_path):
    """The saved table's numbers: one row per method and fraction after the full-data row,
    totals = pretrain + selection + train, speed-up = full-data seconds / total, `vs
    rs2` = accuracy difference to RS2 at the same fraction, each method charged the pre-trained
    models it used (GraNd: --repeats of them, uniform none), default weightings, and the
    printed table shows the saved accuracies."""
    import pandas as pd

    from raypkg.bench.coreset import coreset

    methods = ["rs2", "uniform", "grand", "glister", "gradmatch", "craig", "craig:weighting=none"]
    save = tmp_path / "bench.parquet"
    res = CliRunner().invoke(coreset, ["--dataset", "digits", "--model", "logreg", "--fractions", "0.2,0.4",
                                       "--methods", ",".join(methods), "--epochs", "1", "--pretrain-epochs", "1",
                                       "--repeats", "2", "--batch-size", "128", "--save", str(save)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(save)
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert table["method"].tolist() == ["full data"] + [m for m in methods for _ in (0.2, 0.4)]
    assert table["fraction"].tolist() == [1.0] + [0.2, 0.4] * len(methods)
    full = table.iloc[0]
    assert full["total_s"] == full["train_s"] > 0 and full["speed-up"] == 1.0
    parts = table["pretrain_s"] + table["selection_s"] + table["train_s"]
    assert (table["total_s"] - parts).abs().max() < 1e-9
    assert ((table["speed-up"] - full["train_s"] / table["total_s"]).abs() < 1e-9 * table["speed-up"]).all()
    assert table["test_acc"].between(0, 1).all() and full["test_acc"] > 0.5
    for fraction in (0.2, 0.4):
        rows = table[table["fraction"] == fraction].set_index("method")
        diff = rows["test_acc"] - rows.loc["rs2", "test_acc"]
        assert (rows["vs rs2"] - diff).abs().max() < 1e-12
        assert rows.loc["rs2", "vs rs2"] == 0
        assert rows.loc["uniform", "pretrain_s"] == rows.loc["rs2", "pretrain_s"] == 0
        one_model = rows.loc["glister", "pretrain_s"]  # the shared first pre-trained model
        assert one_model > 0 and (rows.loc[["gradmatch", "craig"], "pretrain_s"] == one_model).all()
        assert rows.loc["grand", "pretrain_s"] > one_model  # two pre-trained models
        assert rows["weighting"].to_dict() == {"rs2": "none", "uniform": "none", "grand": "none", "glister": "none",
                                               "gradmatch": "sample", "craig": "sample",
                                               "craig:weighting=none": "none"}
    printed = [line.split() for line in res.output.splitlines() if line[:1].isdigit()]
    assert [float(cols[-3]) for cols in printed] == pytest.approx(table["test_acc"].tolist(), abs=5e-4)


def svp_config(**settings):
    from raypkg.selection.config import CoresetConfig

    return CoresetConfig(**{"dataset": "digits", "selection": "grand", "repeats": 1, "pretrain_epochs": 1,
                            "fraction": 0.3, "epochs": 1, "batch_size": 64, "precision": "fp32",
                            "memory_format": "contiguous", "progress": False, "wandb": "disabled", **settings})


def test_svp_selects_what_its_proxy_selects_on_its_own():
    """``--selection-model P`` (SVP): the warm-up and the scores are P's, at the run's rate
    scaled by default_lr(P) / default_lr(model): bit for bit what a coreset run of P itself
    selects at that rate; the subset then trains ``--model``."""
    import numpy as np

    from raypkg.methods.coreset.recipe import CORESET
    from raypkg.models.defaults import default_lr
    from raypkg.recipe import MemorySink

    scale = default_lr("mlp") / default_lr("lenet5")
    own = CORESET.run(svp_config(model="mlp", lr=[0.03 * scale]).resolved().validate(), MemorySink)
    proxied = CORESET.run(svp_config(model="lenet5", lr=[0.03], selection_model="mlp").resolved().validate(),
                          MemorySink)
    for table, column in (("scores.parquet", "score"), ("selection.parquet", "index")):
        assert np.array_equal(own["tables"][table][column], proxied["tables"][table][column])
    assert proxied["selection_model"] == "mlp" and "selection_model" not in own
    assert proxied["model"] == "lenet5" and proxied["test_acc"] != own["test_acc"]  # a LeNet-5 trained on it


def test_svp_warm_ups_are_cached_apart_from_the_models_own(tmp_path):
    """A proxy's warm-up is its own cache entry: the model's run after it warms up afresh."""
    from raypkg.selection.cache import SelectionCache
    from raypkg.selection.pipeline import pretrain_full

    data = load_digits()
    cache = SelectionCache(tmp_path)
    proxied = pretrain_full(svp_config(model="lenet5", selection_model="mlp").resolved(), data, CPU, None, cache)
    own = pretrain_full(svp_config(model="lenet5").resolved(), data, CPU, None, cache)
    assert (proxied.cache_hits, own.cache_hits) == (0, 0) and proxied.digests != own.digests
    assert type(proxied.models[0]).__name__ != type(own.models[0]).__name__


def test_bench_coreset_compares_each_proxys_choice_with_the_models_own(tmp_path):
    """``bench coreset --selection-models``: a row per model-based method and scorer, the
    proxy's rows with the rank correlation of its scores and the overlap of its subset."""
    from raypkg.bench.coreset import coreset

    save = tmp_path / "svp.parquet"
    res = CliRunner().invoke(coreset, ["--dataset", "digits", "--model", "lenet5", "--fractions", "0.3",
                                       "--methods", "rs2,grand,glister", "--epochs", "1", "--pretrain-epochs", "1",
                                       "--repeats", "1", "--selection-models", "mlp", "--save", str(save)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(save).set_index(["method", "scorer"])
    assert list(table.index) == [("full data", "-"), ("rs2", "-"), ("grand", "lenet5"), ("grand", "mlp"),
                                 ("glister", "lenet5"), ("glister", "mlp")]
    assert -1 <= table.loc[("grand", "mlp"), "spearman"] <= 1 and 0 <= table.loc[("grand", "mlp"), "overlap"] <= 1
    assert pd.isna(table.loc[("glister", "mlp"), "spearman"])  # Glister picks greedily: no per-example scores
    assert 0 <= table.loc[("glister", "mlp"), "overlap"] <= 1 and pd.isna(table.loc[("grand", "lenet5"), "overlap"])


@pytest.mark.slow
def test_bench_selection_facility_location_part_runs_tiny():
    """The in-process vs actors part is covered by tests/ray/test_selection_ray.py."""
    from raypkg.bench.selection import selection

    res = CliRunner().invoke(selection, ["--dataset", "digits", "--methods", "craig", "--skip-scaling",
                                         "--blocks", "4", "--block-size", "12", "--block-budget", "3"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rows = [line for line in res.output.splitlines() if "  ours " in line]
    assert len(rows) == 3
    for line in rows:  # objective / apricot: ours never worse than apricot's greedy beyond rounding
        assert float(line.split()[-2]) > 0.999


def test_bench_selection_without_apricot_is_refused_before_any_work(tmp_path, monkeypatch):
    """apricot-select is a test extra: without it the facility-location part is refused in
    one line at once (it died after 38 s of scaling measurements before)."""
    import importlib.util

    from raypkg.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "apricot" else real(name, *a))
    result = CliRunner().invoke(main, ["bench", "selection", "--save", str(tmp_path / "s")])
    assert result.exit_code == 2 and result.stderr.startswith("error: the facility-location comparison needs "
                                                              "apricot-select")
    assert len(result.stderr.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []
