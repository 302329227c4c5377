"""A batch-norm model (resnet20) through every pipeline that accepts it, tiny and in-process,
and the state digest over integer and 0-dim buffers (batch norm's ``num_batches_tracked``
made every cached coreset / LiPT run of a BN model crash before)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from helpers import DIGITS_TRAIN

from raypkg.cli import main
from raypkg.selection.cache import state_digest

TINY = ["--dataset", "digits", "--model", "resnet20", "--epochs", "1", "--batch-size", "64", "--seed", "0",
        "--wandb", "disabled", "--no-progress"]


def run_cli(*args) -> dict:
    """Run `effray ARGS` in this process; the run's summary.json (with its directory)."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run_dir = result.output.strip().splitlines()[-1].split("run directory: ")[1]
    return json.loads(open(f"{run_dir}/summary.json").read()) | {"dir": run_dir}


def test_state_digest_covers_integer_and_zero_dim_buffers():
    bn = torch.nn.BatchNorm2d(3)
    state = bn.state_dict()
    assert state["num_batches_tracked"].dim() == 0 and state["num_batches_tracked"].dtype == torch.long
    before = state_digest(state)
    assert state_digest({k: v.clone() for k, v in state.items()}) == before  # bytes, not identity
    bn.train()
    bn(torch.randn(4, 3, 2, 2))  # one batch: num_batches_tracked 0 -> 1 and the running statistics move
    assert state_digest(bn.state_dict()) != before
    counter_only = dict(state, num_batches_tracked=torch.tensor(7))
    assert state_digest(counter_only) != before  # the 0-dim integer's value is hashed
    assert state_digest(dict(state, num_batches_tracked=torch.tensor(7, dtype=torch.int32))) != \
        state_digest(counter_only)  # and its dtype
    assert state_digest({"empty": torch.zeros(0), "flag": torch.tensor(True)}) != \
        state_digest({"empty": torch.zeros(0), "flag": torch.tensor(False)})


def without_epochs(args: list[str]) -> list[str]:
    i = args.index("--epochs")
    return args[:i] + args[i + 2:]


@pytest.mark.slow
def test_resnet20_selects_and_trains_on_a_coreset_and_hits_the_cache(tmp_path):
    out = ["--out", str(tmp_path)]
    picked = run_cli("select", "--method", "grand", "--fraction", "0.1", "--pretrain-epochs", "1",
                     "--repeats", "2", *out, *without_epochs(TINY))  # select trains no subset
    table = pd.read_parquet(f"{picked['dir']}/selection.parquet")
    assert len(table) == picked["subset_size"] == round(0.1 * picked["train_size"]) and table["index"].is_unique
    run = run_cli("run", "coreset", "--selection", "grand", "--fraction", "0.1", "--pretrain-epochs", "1",
                  "--repeats", "2", *out, *TINY)
    # the BN warm-ups (digests over num_batches_tracked) are found again, and so is the selection
    assert run["cached"] == {"pretrain_hits": 2, "selection_hit": True}
    assert pd.read_parquet(f"{run['dir']}/selection.parquet")["index"].tolist() == table["index"].tolist()
    assert run["test_acc"] is not None and run["test_acc"] > 0


@pytest.mark.slow
def test_resnet20_runs_lipt_and_a_rerun_reuses_its_shard_models(tmp_path):
    args = ["run", "lipt", "--selection", "grand", "--fraction", "0.3", "--shards", "2", "--pre-epochs", "1",
            "--bn-samples", "256", "--out", str(tmp_path), *TINY]
    first = run_cli(*args)
    assert len(first["shard_test_acc"]) == 2 and first["cached"]["pretrain_hits"] == 0
    again = run_cli(*args)
    assert again["cached"]["pretrain_hits"] == 3  # 2 shard models + the merged one, BN buffers included
    assert again["merged_test_acc"] == first["merged_test_acc"]


@pytest.mark.slow
def test_resnet20_runs_crest(tmp_path):
    s = run_cli("run", "crest", "--train-frac", "0.3", "--random-subset-size", "0.05", "--out", str(tmp_path),
                *TINY)
    assert s["steps"] == round(0.3 * DIGITS_TRAIN) // 64  # one epoch at f = 0.3 of digits' 1347 examples
    checks = pd.read_parquet(f"{s['dir']}/checks.parquet")
    assert s["checks"] == len(checks) > 0 and s["regions"] == 1 + int(checks["reselect"].sum())


@pytest.mark.slow
@pytest.mark.parametrize("growth", ["random", "gradient"])
def test_resnet20_sparse_training_keeps_its_density(tmp_path, growth):
    s = run_cli("run", "sparse", "--sparse", "--density", "0.1", "--growth", growth, "--update-frequency", "5", "--agc",
                "--out", str(tmp_path), *TINY)
    model = torch.load(f"{s['dir']}/model.pt", weights_only=True)
    from raypkg.models import build_model
    from raypkg.sparsity.masks import maskable_parameters

    net = build_model("resnet20", (1, 8, 8), 10)
    net.load_state_dict(model)
    params = maskable_parameters(net).values()
    density = sum(int((p != 0).sum()) for p in params) / sum(p.numel() for p in params)
    assert density == pytest.approx(0.1, abs=0.01)
