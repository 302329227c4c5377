"""The Python API (raypkg.run / raypkg.train): the recipes the CLI runs, with a result."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from helpers import REPO

import raypkg
from raypkg.errors import UsageError


def test_importing_raypkg_loads_neither_torch_nor_ray():
    code = "import sys, raypkg; print(sorted(m for m in ('torch', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_run_returns_the_summary_the_metrics_and_the_run_directory(tmp_path):
    result = raypkg.run("sparse", dataset="digits", epochs=2, density=0.2, out=str(tmp_path), name="s",
                        wandb="disabled", progress=False)
    assert result.run_dir == tmp_path / "s"
    assert result.summary == json.loads((tmp_path / "s" / "summary.json").read_text())
    pd.testing.assert_frame_equal(result.metrics, pd.read_parquet(tmp_path / "s" / "metrics.parquet"))
    assert list(result.metrics["epoch"]) == [1, 2] and result.test_acc == result.summary["test_acc"]
    # a run's config.yaml (plus a change on top) runs again through the same call
    config = yaml.safe_load((tmp_path / "s" / "config.yaml").read_text())
    again = raypkg.run("sparse", config, name="again")
    assert list(again.metrics["train_loss"]) == list(result.metrics["train_loss"])
    from_file = raypkg.run("sparse", str(tmp_path / "s" / "config.yaml"), save=False)  # or the file itself
    assert list(from_file.metrics["train_loss"]) == list(result.metrics["train_loss"])


def test_save_false_writes_nothing_and_gives_the_same_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = dict(dataset="digits", model="logreg", epochs=2, progress=False, wandb="disabled")
    in_memory = raypkg.train(save=False, **settings)
    assert in_memory.run_dir is None and list(tmp_path.iterdir()) == []
    on_disk = raypkg.train(out=str(tmp_path / "runs"), **settings)
    assert list(in_memory.metrics["test_acc"]) == list(on_disk.metrics["test_acc"])


def test_save_false_writes_no_selection_cache(tmp_path, monkeypatch):
    """issue 48: a warm-up and a selection in memory wrote OUT/.cache (runs/.cache by default);
    with save=False nothing is written under --out or the working directory."""
    work, out = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    quiet = dict(dataset="digits", model="logreg", progress=False, wandb="disabled")
    coreset = raypkg.run("coreset", save=False, out=str(out), selection="grand", repeats=1, pretrain_epochs=1,
                         epochs=1, fraction=0.2, **quiet)
    lipt = raypkg.run("lipt", save=False, selection="glister", shards=2, pre_epochs=1, epochs=1, **quiet)
    assert coreset.run_dir is None and lipt.run_dir is None
    assert coreset.summary["cached"]["pretrain_hits"] == 0  # nothing read either
    assert list(work.iterdir()) == [] and not out.exists()


@pytest.mark.parametrize("call, message", [
    (lambda: raypkg.run("nosuch"), "unknown method 'nosuch'"),
    (lambda: raypkg.run("crest", learning_rate=0.1), "unknown setting(s) learning_rate for crest"),
    (lambda: raypkg.run("crest", epochs=0), "epochs must be a positive integer"),
    (lambda: raypkg.run("train", model=lambda shape, n: None), "is not a module-level function or class"),
    (lambda: raypkg.run("train", save="no"), "save must be True or False, got 'no'"),
    (lambda: raypkg.run("train", ["epochs", 2]), "config must be a config object, a mapping or a config file's path"),
    (lambda: raypkg.run("train", "/no/such/config.yaml"), "cannot read config file '/no/such/config.yaml'"),
    (lambda: raypkg.run("train", config=["epochs", 2]), "config must be a config object, a mapping or"),
    (lambda: raypkg.run("train", save=1), "save must be True or False, got 1"),
    (lambda: raypkg.run("select", method="kmeans"), "unknown selection method 'kmeans'"),
    (lambda: raypkg.run("train", seed=2**64), "does not fit a 64-bit integer"),
    (lambda: raypkg.run("train", **{f"k{i:04}": 1 for i in range(2000)}), "k0009 and 1990 more for train"),
    # issue 72: a method that is no name was a TypeError
    (lambda: raypkg.run(None), "method must be a recipe name (one of: coreset, crest, deltagrad, "),
    (lambda: raypkg.run(123), "got 123"),
    (lambda: raypkg.run(""), "unknown method ''; choose one of: coreset"),
])
def test_bad_settings_raise_the_clis_one_line(call, message):
    with pytest.raises(UsageError) as error:
        call()
    assert message in str(error.value) and "\n" not in str(error.value)


def readme_python_block(section: str) -> str:
    """The ```python block of README section ``section``."""

    text = (REPO / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return body.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path):
    code = readme_python_block("From Python")
    script = tmp_path / "example.py"
    script.write_text(code + "\nprint('test_acc', result.summary['test_acc'], len(result.metrics))\n")
    from helpers import bare_env

    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                         env=bare_env(), timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "test_acc 0." in out.stdout and out.stdout.strip().endswith(" 5")  # 5 epochs' rows
    assert len(list((tmp_path / "runs").glob("crest-crest-digits-mlp-*"))) == 1  # the lipt run wrote nothing


def test_a_model_and_data_given_as_factories_run_by_their_import_paths(tmp_path):
    from plugin_example import data, models

    result = raypkg.run("crest", model=models.bn_net, data=data.tabular, epochs=2, out=str(tmp_path), name="p",
                        wandb="disabled", progress=False)
    assert result.summary["model"] == "plugin_example.models:bn_net"
    assert result.summary["dataset"] == "plugin_example.data:tabular"
    config = yaml.safe_load((tmp_path / "p" / "config.yaml").read_text())  # the import paths round-trip
    assert list(raypkg.run("crest", config, name="q").metrics["train_loss"]) == list(result.metrics["train_loss"])


def test_method_is_a_keyword_of_the_recipe_too():
    """``run``'s recipe is positional only: ``method=`` is select's ``--method`` (its
    ``selection``), as on the command line."""
    result = raypkg.run("select", method="uniform", fraction=0.1, pretrain_epochs=0, save=False, progress=False)
    assert result.summary["method"] == "select-uniform"


def test_the_api_names_every_recipe_where_a_name_is_unknown():
    """No hand-kept list of methods (the docstring's once omitted InfoBatch): an unknown name is
    refused with the registry's names, and every `effray run` command is one of them."""
    from raypkg.cli import main
    from raypkg.errors import UsageError
    from raypkg.recipe_registry import load_recipes

    with pytest.raises(UsageError) as refused:
        raypkg.run("nothing", save=False)
    assert all(name in str(refused.value) for name in load_recipes())
    assert set(main.commands["run"].commands) <= set(load_recipes())


def test_every_deltagrad_recipe_runs_from_the_api(tmp_path):
    """issue 72: unlearn-request and unlearn-online raised AttributeError ('RequestConfig' object
    has no attribute 'NEEDS') from the API, while the CLI commands worked."""
    trained = raypkg.run("unlearn-train", epochs=1, out=str(tmp_path), name="dg", wandb="disabled", progress=False)
    run = str(trained.run_dir)
    request = raypkg.run("unlearn-request", run=run, ratio=0.01, save=False, wandb="disabled")
    assert request.summary["kind"] == "delete" and request.run_dir is None
    online = raypkg.run("unlearn-online", run=run, requests=2, save=False, wandb="disabled", progress=False)
    assert online.summary["kind"] == "delete" and len(online.metrics) == 2
    with pytest.raises(UsageError, match="unknown setting\\(s\\) learning_rate for unlearn-request"):
        raypkg.run("unlearn-request", run=run, learning_rate=0.1)
