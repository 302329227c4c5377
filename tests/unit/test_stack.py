"""Stacks (``raypkg.algorithms``): a method with others on its training through one engine
call (`effray run infobatch --with sparse`, ``raypkg.run("infobatch+sparse")``), refused
before any work where it cannot hold, and bit for bit the method alone when the added
member does nothing."""

from __future__ import annotations

import json
import math
import pickle
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

import raypkg
from raypkg.algorithms import stackable
from raypkg.cli import main
from raypkg.engine.loop import CLOCK_COLUMNS
from raypkg.errors import UsageError

TINY = dict(dataset="digits", model="mlp", epochs=2, progress=False)


def same_rows(a, b, skip=()) -> bool:
    """Two runs' metrics rows, equal but for the clock's columns and ``skip``."""
    drop = lambda rows: [{k: v for k, v in r.items() if k not in (*CLOCK_COLUMNS, *skip)} for r in rows]  # noqa: E731
    return drop(a.summary["rows"]) == drop(b.summary["rows"])


def test_a_member_that_does_nothing_leaves_the_method_bit_for_bit():
    """Sparse training turned off (--dense, no AGC) adds no callback; InfoBatch pruning no
    example (ratio 0) shuffles as the engine does and weighs every loss 1."""
    alone = raypkg.run("infobatch", save=False, **TINY)
    dense = raypkg.run("infobatch+sparse", save=False, sparse=False, **TINY)
    assert same_rows(alone, dense) and dense.summary["test_acc"] == alone.summary["test_acc"]
    assert dense.summary["sparse"]["method_variant"] == "dense" and dense.summary["sparse"]["density"] == 1.0

    sparse = raypkg.run("sparse", save=False, density=0.2, **TINY)
    unpruned = raypkg.run("sparse+infobatch", save=False, density=0.2, prune_ratio=0.0, **TINY)
    assert same_rows(sparse, unpruned, skip=("infobatch_kept",))
    assert unpruned.summary["mask_digest"] == sparse.summary["mask_digest"]
    assert unpruned.summary["infobatch"]["steps_saved"] == 0.0


def test_crest_stacks_as_the_others_do_from_either_side():
    """CREST added with --with trains as CREST alone; CREST with sparse masks trains the
    same whichever of the two is the method and which is added (given the same training
    settings)."""
    crest, clocks = dict(TINY, train_frac=0.3, batch_size=32), ("crest_selection_s", "crest_check_s")
    alone = raypkg.run("crest", save=False, **crest)
    added = raypkg.run("train+crest", save=False, **crest)
    assert same_rows(alone, added, clocks) and added.summary["crest"]["steps"] == alone.summary["steps"]
    same = dict(crest, density=0.2, schedule="cosine", nesterov=False)  # sparse's own training defaults differ
    masked = raypkg.run("sparse+crest", save=False, **same)
    selected = raypkg.run("crest+sparse", save=False, **same)
    assert same_rows(masked, selected, clocks) and masked.summary["mask_digest"] == selected.summary["sparse"]["mask_digest"]
    assert masked.summary["test_acc"] == selected.summary["test_acc"]


def test_the_summary_names_the_stack_and_keeps_each_members_notes_apart():
    result = raypkg.run("infobatch+sparse", save=False, density=0.2, **TINY)
    s = result.summary
    assert s["method"] == "infobatch+sparse" and s["stack"] == ["sparse"]
    assert s["steps"] < s["full_steps"]  # InfoBatch's notes, at the top level as when it runs alone
    assert s["sparse"]["density"] == pytest.approx(0.2, abs=0.01) and "density" not in s
    assert s["sparse"]["epochs"] == s["epochs"] == 2  # both wrote `epochs`: each under its own name


def test_the_members_act_in_order_data_plan_masks_then_gradient_correction():
    from raypkg.algorithms import stack_members
    from raypkg.data import load_dataset
    from raypkg.methods.infobatch.plan import InfoBatch
    from raypkg.methods.sparse.agc import AGCorrection
    from raypkg.methods.sparse.algorithm import SparseTrainingAlgorithm
    from raypkg.methods.sparse.dst import SparseTraining
    from raypkg.recipe_registry import find_recipe

    run = SimpleNamespace(data=load_dataset("digits", seed=0), shared={})
    for method, own in (("sparse+infobatch", SparseTrainingAlgorithm), ("infobatch+sparse", None)):
        cfg = find_recipe(method).config_cls(agc=True, stack=[method.split("+")[1]])
        if own is None:
            from raypkg.methods.infobatch.algorithm import InfoBatchPruning as own
        members = stack_members(cfg, run, lambda c: own(c, run))
        assert [m.name for m in members] == ["infobatch", "sparse"]
        callbacks = [cb for m in members for cb in m.callbacks]
        assert [type(cb) for cb in callbacks] == [InfoBatch, SparseTraining, AGCorrection]
        assert sum(m.plan is not None for m in members) == 1


def test_multiplier_stretches_the_training_every_member_builds_from():
    """--multiplier 2 doubles the epochs; InfoBatch's pruned epochs (delta of them) follow."""
    s = raypkg.run("infobatch+sparse", save=False, multiplier=2, delta=1.0, density=0.2, **TINY).summary
    assert s["epochs"] == 4 and len(s["kept_per_epoch"]) == 4
    assert all(kept < s["train_size"] for kept in s["kept_per_epoch"][1:])  # epochs 2-4 prune too


@pytest.mark.parametrize("method, settings, says", [
    ("crest+infobatch", {}, "one batch plan, and this stack has 2 (CREST's coreset mini-batches; InfoBatch's"),
    ("coreset+infobatch", {}, "one batch plan"),
    ("lipt+sparse", {}, "sparse and this method both set density"),
    ("train+deltagrad", {}, "deltagrad does not stack: it trains on its own"),
    ("train+coreset", {}, "coreset does not stack: it selects its subset in stages before training"),
    ("sparse+lipt", {}, "lipt does not stack"),
    ("train+train", {}, "train does not stack"),
    ("train+nothing", {}, "the algorithms that stack are " + ", ".join(stackable())),  # the registry's
    ("lipt+crest", {}, "crest and this method both set actors"),
    ("crest+crest", {}, "this method is crest already"),
    ("sparse+sparse", {}, "this method is sparse already"),
    ("train+sparse+sparse", {}, "names sparse twice"),
    ("infobatch", {"density": 0.1}, "density is a setting of sparse: it needs --with sparse"),
    ("infobatch+sparse", {"agc_gamma": 0.2}, "--agc-gamma needs --agc"),
])
def test_what_cannot_stack_is_refused_in_one_line_before_any_work(method, settings, says):
    with pytest.raises(UsageError, match=says.replace("(", r"\(").replace(")", r"\)")):
        raypkg.run(method, save=False, **TINY, **settings)


def test_the_command_line_stacks_refuses_and_its_config_repeats_the_run(tmp_path):
    common = ["--dataset", "digits", "--model", "logreg", "--epochs", "2", "--out", str(tmp_path), "--wandb",
              "disabled", "--no-progress"]
    bad = CliRunner().invoke(main, ["run", "infobatch", "--density", "0.1", *common])
    assert bad.exit_code == 2 and bad.stderr == "error: --density is a setting of sparse: it needs --with sparse\n"
    bad = CliRunner().invoke(main, ["run", "crest", "--with", "infobatch", *common])
    assert bad.exit_code == 2 and "one batch plan" in bad.stderr and not list(tmp_path.iterdir())

    ok = CliRunner().invoke(main, ["run", "coreset", "--selection", "rs2", "--fraction", "0.3", "--with", "sparse",
                                   "--density", "0.3", "--name", "a", *common])
    assert ok.exit_code == 0, ok.output
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["method"] == "coreset-rs2+sparse" and summary["sparse"]["method_variant"] == "RigL-ITOP"
    assert (tmp_path / "a" / "masks.pt").is_file() and (tmp_path / "a" / "selection.parquet").is_file()
    config = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert config["stack"] == ["sparse"] and config["density"] == 0.3
    again = CliRunner().invoke(main, ["run", "coreset", "--config", str(tmp_path / "a" / "config.yaml"),
                                      "--name", "b"])
    assert again.exit_code == 0, again.output
    first, second = (pd.read_parquet(tmp_path / name / "metrics.parquet").drop(columns=list(CLOCK_COLUMNS))
                     for name in ("a", "b"))
    pd.testing.assert_frame_equal(first, second)


def test_a_stacked_config_pickles_to_its_own_class_and_a_plain_class_refuses_a_stack():
    """Ray Train and Tune send configs to other processes; the class is made at run time."""
    from raypkg.engine.config import TrainConfig
    from raypkg.recipe_registry import find_recipe

    cls = find_recipe("infobatch+sparse").config_cls
    cfg = cls(density=0.3, stack=["sparse"], epochs=3)
    again = pickle.loads(pickle.dumps(cfg))
    assert type(again) is cls and again == cfg
    with pytest.raises(UsageError, match="does not match the config's class"):  # refused before any data loads
        find_recipe("train").run(TrainConfig(stack=["sparse"], epochs=1))


def test_a_tune_space_sweeps_a_stacked_setting_and_refuses_a_stack_that_cannot_hold(tmp_path):
    from raypkg.tune_space import check_trial_config, read_space

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"method": "infobatch+sparse", "base": {"dataset": "digits", "epochs": 2},
                                     "space": {"density": {"choice": [0.05, 0.2]}}}))
    check_trial_config(read_space(space))  # every trial's config is valid
    space.write_text(yaml.safe_dump({"method": "infobatch", "base": {"stack": ["sparse"]},
                                     "space": {"density": {"choice": [0.05, 1.5]}}}))
    with pytest.raises(UsageError, match="density must be in"):
        check_trial_config(read_space(space))
    space.write_text(yaml.safe_dump({"method": "crest+infobatch", "space": {"epochs": {"choice": [1, 2]}}}))
    with pytest.raises(UsageError, match="one batch plan"):
        read_space(space)


def test_the_frontier_names_a_stack_with_plus_and_refuses_one_that_cannot_hold():
    from raypkg.bench.frontier import build_points, method_names, preset_settings

    settings = preset_settings("digits-aug:mlp", {"fractions": [0.3], "budgets": [1.0], "workers": 0,
                                                  "curve_schedules": ["cosine"]})
    points = build_points(settings, ["full-fp32", "infobatch+rigl-itop", "rs2+rigl-itop"], seed=0)
    assert [(p.labels["method"], p.labels["setting"]) for p in points] == [  # by their first grid
        ("full-fp32", "b=1"), ("rs2+rigl-itop", "f=0.3,d=0.05"), ("infobatch+rigl-itop", "d=0.05")]
    stacked = points[2].cfg
    assert stacked.stack == ["sparse"] and stacked.density == 0.05 and stacked.prune_ratio == 0.5
    assert points[0].cfg.precision == "fp32" and math.isnan(points[2].labels["fraction"])
    with pytest.raises(UsageError, match="one batch plan"):
        build_points(settings, ["rs2+infobatch"], seed=0)
    with pytest.raises(UsageError, match="rs2\\+crest: crest and this method both set actors"):
        build_points(settings, ["rs2+crest"], seed=0)
    added = {p.labels["method"]: p.cfg.stack for p in build_points(settings, ["rigl-itop+crest",
                                                                             "full+label-smoothing"], seed=0)}
    assert added == {"rigl-itop+crest": ["crest"], "full+label-smoothing": ["label-smoothing"]}
    with pytest.raises(UsageError, match="unknown method"):
        method_names("rs2+nothing")


def test_each_added_algorithm_counts_its_own_flops_in_the_frontier():
    """Sparse masks count every forward pass at their density; label smoothing changes nothing."""
    from raypkg.bench.frontier import build_points, preset_settings, stacked_examples

    settings = preset_settings("digits-aug:mlp", {"fractions": [0.3], "budgets": [1.0], "workers": 0})
    points = {p.labels["method"]: p for p in build_points(settings, ["infobatch+rigl-itop", "full+label-smoothing"],
                                                          seed=0, n=1000)}
    per_example = lambda density=1.0, init="ERK": 100.0 * density  # noqa: E731
    summary = {"kept_per_epoch": [640, 384]}  # whole batches of 64: nothing dropped
    assert stacked_examples(points["infobatch+rigl-itop"], summary, 1000, per_example) == (1024, 1024 * 5.0)
    epochs, seen = points["full+label-smoothing"].cfg.epochs, 1000 // 64 * 64  # the ragged 40 dropped
    assert stacked_examples(points["full+label-smoothing"], {}, 1000, per_example) == (epochs * seen,
                                                                                       epochs * seen * 100.0)


def test_a_stack_reuses_the_warm_up_and_the_selection_of_the_method_alone(tmp_path):
    """The stack acts on the subset's training only: the cache keys leave it out. (Runs that
    save: a run in memory neither reads nor writes OUT/.cache, issue 48.)"""
    common = dict(dataset="digits", model="mlp", epochs=2, selection="grand", fraction=0.3, pretrain_epochs=1,
                  repeats=1, out=str(tmp_path), progress=False, wandb="disabled")
    alone = raypkg.run("coreset", **common).summary
    stacked = raypkg.run("coreset+sparse", density=0.3, **common).summary
    assert alone["cached"] == {"pretrain_hits": 0, "selection_hit": False}
    assert stacked["cached"] == {"pretrain_hits": 1, "selection_hit": True}


def test_the_summary_line_of_a_stacked_sparse_run_names_the_stack(tmp_path):
    """issue 48: `run sparse --with infobatch` printed `RigL-ITOP digits/mlp: ...`."""
    result = CliRunner().invoke(main, ["run", "sparse", "--with", "infobatch", "--dataset", "digits", "--model", "mlp",
                                       "--epochs", "1", "--out", str(tmp_path), "--wandb", "disabled", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert any(line.startswith("RigL-ITOP+infobatch digits/mlp: test_acc") for line in result.stdout.splitlines())


def test_every_method_has_its_docs_page_and_the_with_help_names_each_that_stacks():
    """The lists a method would be added to by hand are made from the registry instead:
    --with's help; what stays by hand is the method's own page, docs/methods/NAME.md."""
    from helpers import REPO

    from raypkg.algorithms import stackable
    from raypkg.method_registry import METHODS

    help_text = CliRunner().invoke(main, ["train", "--help"], terminal_width=400).output
    assert all(name in help_text.split("Those that stack:")[1] for name in stackable())
    pages = {p.stem for p in (REPO / "docs/methods").glob("*.md")}
    assert {m.name for m in METHODS} - {"train"} <= pages
