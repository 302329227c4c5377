"""One recipe per method, whoever runs it: the run directory (CLI, jobs), a Tune trial and a
bench row get the same run. (The package's import structure: test_layering.py.)"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from raypkg.errors import UsageError
from raypkg.recipe import EPOCH_METRICS, MemorySink
from raypkg.recipe_registry import load_recipes, run_trial

SMALL = {
    "train": {},
    "coreset": {"selection": "grand", "repeats": 1, "pretrain_epochs": 1, "fraction": 0.2},
    "lipt": {"shards": 2, "pre_epochs": 1, "fraction": 0.2},
    "crest": {"train_frac": 0.3},
    "sparse": {"density": 0.2},
}
# What a trial reports beyond the epoch row (the seconds of the phases before training)
TRIAL_EXTRAS = {"coreset": {"pretrain_s", "selection_s", "subset_size"},
                "lipt": {"pretrain_s", "merge_s", "selection_s", "subset_size", "merged_test_acc"},
                "sparse": {"density", "R_s"}, "crest": {"crest_regions", "crest_checks"}, "train": set()}


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what a Tune trial sets: the three runs must share it to be equal
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(SMALL))
def test_the_cli_a_tune_trial_and_a_bench_row_run_the_same_recipe(tmp_path, method, one_thread, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = load_recipes()[method]
    config = dict(dataset="digits", model="mlp", epochs=2, wandb="disabled", progress=False, out=str(tmp_path / "runs"),
                  **SMALL[method])
    on_disk = recipe.run(recipe.config_cls(**config, name="cli"))
    reports: list[dict] = []
    run_trial(method, config, reports.append)
    in_memory = recipe.run(recipe.config_cls(**config), MemorySink)

    written = pd.read_parquet(tmp_path / "runs" / "cli" / "metrics.parquet")
    assert list(written["test_acc"]) == [r["test_acc"] for r in reports] == [r["test_acc"] for r in in_memory["rows"]]
    assert len(reports) == 2 and on_disk["test_acc"] == in_memory["test_acc"]
    assert set(EPOCH_METRICS) | TRIAL_EXTRAS[method] <= set(reports[-1])
    assert set(TRIAL_EXTRAS[method]) <= set(recipe.metrics)  # a tune space may name them
    assert on_disk["phases"].keys() == in_memory["phases"].keys() == on_disk["cost_s"].keys()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ([".cache", "cli"] if method in ("coreset", "lipt")
                                                                      else ["cli"])  # the bench row wrote nothing


def test_a_trial_reports_the_phase_seconds_done_before_training(one_thread):
    reports: list[dict] = []
    run_trial("coreset", dict(dataset="digits", model="mlp", epochs=1, selection="glister", pretrain_epochs=1,
                              fraction=0.1), reports.append)
    (row,) = reports
    assert row["pretrain_s"] > 0 and row["selection_s"] > 0 and row["subset_size"] == 135


def test_every_method_row_names_its_recipe_tune_space_commands_and_bench():
    """raypkg.method_registry is the one table of methods: each row's module registers the recipe of
    its name, which `effray tune` finds a space for; its commands and bench import."""
    import click

    from raypkg.method_registry import METHODS, import_object
    from raypkg.recipe_registry import load_cases
    from raypkg.tuning import SPACES_DIR, default_space

    recipes = load_recipes()
    assert set(recipes) >= {m.name for m in METHODS} | {"select"}
    # the frontier's methods, in the table's order whatever imported the recipes first: each case
    # of a method's recipe, by the method's row; a method made from its row brings its algorithm's
    cases = load_cases()
    order = [m.name for m in METHODS]
    rows = [order.index(case.recipe) for case in cases.values()]
    assert rows == sorted(rows) and list(cases)[:2] == ["full", "full-fp32"]  # the baseline first
    for method in METHODS:
        if not method.recipes:
            own = [name for case in import_object(method.algorithm).bench_cases for name in case.methods]
            assert own and [name for name, case in cases.items() if case.recipe == method.name] == own
    # the frontier runs DeepCore's further selectors only when --methods names them
    from raypkg.bench.frontier import frontier_bench
    default = frontier_bench.make_context("frontier", []).params["methods"].split(",")  # a ListOption's default
    assert "el2n" not in default and "grand" in default and "infobatch" in default
    from raypkg.cli import main

    for method in METHODS:
        assert recipes[method.name].name == method.name
        if not method.recipes:  # made from its row: its recipe and its `effray run` command
            assert isinstance(main.commands["run"].commands[method.name], click.Command)
        if (SPACES_DIR / f"{method.name}.yaml").is_file():
            assert default_space(method.name).is_file()
        else:  # a space is optional for a method made from its row (label-smoothing): --space FILE
            assert not method.recipes
            with pytest.raises(UsageError, match="pass one with --space FILE"):
                default_space(method.name)
        for entry in method.commands:
            assert isinstance(import_object(entry.split(":", 1)[1]), click.Command), entry
        assert method.bench is None or isinstance(import_object(method.bench), click.Command)


def test_timings_charge_cached_work_its_own_seconds_and_add_up_repeated_phases():
    from raypkg.tracking.timings import Timings

    timings = Timings()
    timings.add("train", 1.5)
    timings.add("train", 0.5)  # a second training stage adds up
    with timings.phase("selection"):
        pass
    timings.charge("selection", 7.0)  # a cache hit, charged the seconds it first took
    assert timings.phases["train"] == 2.0 and timings.phases["selection"] < 7.0
    assert timings.summary() == {"phases": timings.phases, "cost_s": {"train": 2.0, "selection": 7.0}}
