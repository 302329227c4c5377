"""Configs at the edges: ``resolved()`` fills defaults into a copy, ``validate()`` only
checks, ``resolve_config`` lets a flag replace the file's values of its exclusive group;
the mask settings and DeltaGrad's request knobs are declared once."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from raypkg.algorithms import method_config
from raypkg.config import resolve_config
from raypkg.engine.config import TrainConfig
from raypkg.errors import UsageError
from raypkg.methods.deltagrad.commands import unlearn
from raypkg.methods.deltagrad.config import DeltaGradConfig, DeltaGradTuneConfig, OnlineSettings, RequestSettings
from raypkg.methods.lipt.config import LiptConfig
from raypkg.methods.sparse.config import SparseConfig
from raypkg.selection.config import CoresetConfig
from raypkg.sparsity.settings import MaskSettings

# Inputs that validate() used to fill in or rewrite.
UNRESOLVED = [
    TrainConfig(lr=[0.1, 0.05], lrlen=[10, 10], epochs=20, seed=np.int64(3)),
    CoresetConfig(selection="craig", budget=100),
    CoresetConfig(selection="craig", options={"chunk": 512}, weight_cap=3.0),
    SparseConfig(epochs=10),
    SparseConfig(epochs=8, lr=[0.1, 0.01], lrlen=[4, 4]),
    LiptConfig(selection="glister", batch_size=np.int64(32)),
    method_config("crest")(lr=[0.1, 0.05], lrlen=[1, 2], epochs=3),
    DeltaGradConfig(seed=np.int64(2)),
    DeltaGradTuneConfig(period=np.int64(4)),
]


@pytest.mark.parametrize("cfg", UNRESOLVED, ids=lambda c: type(c).__name__)
def test_validate_changes_nothing(cfg):
    before = copy.deepcopy(cfg)
    assert cfg.validate() is cfg
    assert cfg == before
    assert [type(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)] == \
        [type(getattr(before, f.name)) for f in dataclasses.fields(before)]


@pytest.mark.parametrize("cfg", UNRESOLVED, ids=lambda c: type(c).__name__)
def test_resolved_is_a_valid_copy_and_idempotent(cfg):
    before = copy.deepcopy(cfg)
    resolved = cfg.resolved()
    assert resolved is not cfg and cfg == before
    assert resolved.resolved() == resolved
    assert resolved.validate() is resolved
    assert not any(isinstance(getattr(resolved, f.name), np.integer) for f in dataclasses.fields(resolved))


def test_resolved_fills_what_validate_used_to():
    assert TrainConfig(lr=[0.1, 0.05], lrlen=[10, 10], epochs=20).resolved().schedule == "piecewise"
    assert SparseConfig(epochs=10).resolved().milestones == [5, 7.5]
    assert SparseConfig(epochs=8, lr=[0.1, 0.01], lrlen=[4, 4]).resolved().milestones == []  # piecewise
    craig = CoresetConfig(selection="craig", budget=100).resolved()
    assert (craig.fraction, craig.budget, craig.weighting, craig.weight_cap) == (None, 100, "sample", 2.0)
    assert "max_dense" in craig.options
    assert CoresetConfig().resolved().fraction == 0.1
    assert CoresetConfig(class_budget=5).resolved().fraction is None
    given = CoresetConfig(selection="craig", weighting="loss", weight_cap=4.0).resolved()
    assert (given.weighting, given.weight_cap) == ("loss", 4.0)


def test_resolved_refuses_what_it_cannot_fill():
    with pytest.raises(UsageError, match="unknown selection method 'nope'"):
        CoresetConfig(selection="nope").resolved()
    with pytest.raises(UsageError, match="unknown option"):
        CoresetConfig(selection="uniform", options={"eta": 1}).resolved()
    with pytest.raises(UsageError, match="epochs must be an integer"):
        SparseConfig(epochs=[3]).resolved()


def test_the_fraction_help_still_names_its_default():
    field = next(f for f in dataclasses.fields(CoresetConfig) if f.name == "fraction")
    assert field.default is None and "default 0.1" in field.metadata["help"]


def test_several_sizes_are_refused():
    with pytest.raises(UsageError, match="exactly one of --fraction, --budget and --class-budget"):
        CoresetConfig(fraction=0.2, budget=100).resolved().validate()


@pytest.mark.parametrize("file, flags, expected", [
    ("budget: 100\n", {"fraction": 0.2}, (0.2, None, None)),
    ("fraction: 0.2\n", {"budget": 100}, (None, 100, None)),
    ("fraction: 0.2\n", {"class_budget": 7}, (None, None, 7)),
    ("budget: 100\n", {}, (None, 100, None)),
    ("epochs: 3\n", {}, (0.1, None, None)),
])
def test_a_flag_replaces_the_files_values_of_its_exclusive_group(tmp_path, file, flags, expected):
    path = tmp_path / "config.yaml"
    path.write_text(file)
    absent = {"fraction": None, "budget": None, "class_budget": None}  # flags not given parse to None
    cfg = resolve_config(CoresetConfig, str(path), **{**absent, **flags, "out": str(tmp_path)})
    assert (cfg.fraction, cfg.budget, cfg.class_budget) == expected


def test_two_flags_of_one_group_are_refused(tmp_path):
    with pytest.raises(UsageError, match="exactly one of"):
        resolve_config(CoresetConfig, None, fraction=0.2, budget=100, out=str(tmp_path)).validate()


# ----- one mask config ---------------------------------------------------------------------

def test_sparse_and_lipt_share_the_mask_settings():
    names = {f.name for f in dataclasses.fields(MaskSettings)}
    assert names == {"density", "sparse_init", "scale_init", "sparse_backend"}
    for cls in (SparseConfig, LiptConfig):
        assert issubclass(cls, MaskSettings) and names <= {f.name for f in dataclasses.fields(cls)}
    assert not hasattr(LiptConfig(), "sparse_scale_init")
    assert (LiptConfig().density, LiptConfig().sparse_init) == (0.05, "ERK")


@pytest.mark.parametrize("cls", [SparseConfig, LiptConfig])
def test_bad_mask_settings_are_refused_by_one_check(cls):
    with pytest.raises(UsageError, match=r"density must be in \(0, 1\], got 1.5"):
        cls(density=1.5).resolved().validate()
    with pytest.raises(UsageError, match="unknown sparse init 'erk'"):
        cls(sparse_init="erk").resolved().validate()


def test_masks_check_density_once_with_the_shared_check():
    import torch

    from raypkg.sparsity.masks import layer_densities

    model = torch.nn.Linear(4, 3)
    with pytest.raises(UsageError, match=r"density must be in \(0, 1\]"):
        layer_densities(model, 0.0, "ERK")
    with pytest.raises(UsageError, match="unknown sparse init"):
        layer_densities(model, 0.5, "random")


# ----- DeltaGrad's request knobs -----------------------------------------------------------

def test_request_knobs_are_declared_once():
    knobs = {f.name for f in dataclasses.fields(RequestSettings)}
    assert {"period", "init", "m", "eps", "ratio", "request_seed"} <= knobs
    for cls in (DeltaGradTuneConfig, OnlineSettings):
        assert issubclass(cls, RequestSettings)
    tune = DeltaGradTuneConfig()
    assert (tune.period, tune.init, tune.m, tune.ratio, tune.request_seed) == (5, 20, 2, 0.01, 1)


@pytest.mark.parametrize("command, flags", [
    ("delete", {"--period", "--init", "-m", "--eps", "--ratio", "--seed"}),
    ("add", {"--period", "--init", "-m", "--eps", "--ratio", "--seed"}),
    ("online", {"--period", "--init", "-m", "--eps", "--seed", "--retrain-every", "--drift-tol"}),
])
def test_request_commands_take_their_flags_from_the_settings(command, flags):
    params = unlearn.commands[command].params
    options = {opt for p in params for opt in p.opts}
    assert flags <= options
    assert sum(opt == "--seed" for p in params for opt in p.opts) == 1


@pytest.mark.parametrize("settings, message", [
    (RequestSettings(period=0), "--period (T0) must be >= 1"),
    (RequestSettings(init=-1), "--init (j0) must be >= 0"),
    (RequestSettings(m=0), "-m must be >= 1"),
    (OnlineSettings(retrain_every=-1), "--retrain-every must be >= 0"),
    (OnlineSettings(drift_tol=0.0), "--drift-tol must be > 0"),
])
def test_request_knobs_are_checked(settings, message):
    with pytest.raises(UsageError) as e:
        settings.check_request()
    assert message in str(e.value)


# ----- one validation per run ------------------------------------------------------------

@pytest.mark.parametrize("command", [["train", "--model", "logreg"], ["run", "crest", "--train-frac", "0.3"],
                                     ["run", "sparse"], ["run", "coreset", "--selection", "uniform"]])
def test_a_cli_run_validates_its_config_exactly_once(tmp_path, monkeypatch, command):
    """RunConfig.validate is the root every config class's validate calls (super()), so
    its calls count full validations: the command resolves, ``Recipe.run`` validates."""
    from click.testing import CliRunner

    from raypkg.cli import main
    from raypkg.engine.config import RunConfig

    calls = []
    validate = RunConfig.validate
    monkeypatch.setattr(RunConfig, "validate", lambda self: calls.append(type(self).__name__) or validate(self))
    result = CliRunner().invoke(main, [*command, "--epochs", "1", "--out", str(tmp_path), "--wandb", "disabled",
                                       "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(calls) == 1, calls


def test_unlearn_commands_validate_their_config_once_and_a_refused_request_writes_nothing(tmp_path, monkeypatch):
    """`effray unlearn train` and `delete` run recipes: ``Recipe.run`` validates each config
    once; a request refused by its config or by the cached run leaves no run directory."""
    from click.testing import CliRunner

    from raypkg.cli import main
    from raypkg.engine.config import RunConfig
    from raypkg.methods.deltagrad.config import RequestConfig

    calls = []
    for cls in (RunConfig, RequestConfig):  # a request's config is no RunConfig: its own validate counts
        validate = cls.validate
        monkeypatch.setattr(cls, "validate", lambda self, validate=validate: calls.append(type(self).__name__)
                            or validate(self))

    def unlearn(*args):
        return CliRunner().invoke(main, ["unlearn", *map(str, args), "--wandb", "disabled"])

    result = unlearn("train", "--model", "logreg", "--epochs", "1", "--out", tmp_path, "--name", "dg", "--no-progress")
    assert result.exit_code == 0, result.output
    assert calls == ["UnlearnTrainConfig"]
    calls.clear()
    result = unlearn("delete", tmp_path / "dg", "--ratio", "0.01", "--name", "served")
    assert result.exit_code == 0, result.output
    assert calls == ["RequestConfig"]
    for refused in (["--ratio", "0.01", "--period", "0"], ["--ratio", "0.00001"]):  # its config; the cached run
        result = unlearn("delete", tmp_path / "dg", *refused, "--name", "refused")
        assert result.exit_code == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert sorted(p.name for p in (tmp_path / "dg" / "requests").iterdir()) == ["served"]


def test_a_bad_out_is_refused_before_the_run_directory_opens(tmp_path):
    from click.testing import CliRunner

    from raypkg.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = CliRunner().invoke(main, ["train", "--epochs", "1", "--out", str(blocker), "--wandb", "disabled"])
    assert result.exit_code == 2 and "--out" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert blocker.read_text() == "not a directory"


def test_a_leading_tilde_in_local_paths_is_the_home_directory(tmp_path, monkeypatch):
    """`--out=~/x` or `out: ~/x` in a config file reach effray unexpanded (a shell expands
    only a word that starts with ~): they mean $HOME/x, never ./~/x."""
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = TrainConfig(out="~/runs", data_dir="~/data", storage="~/store").resolved()
    assert (cfg.out, cfg.data_dir, cfg.storage) == (f"{tmp_path}/runs", f"{tmp_path}/data", f"{tmp_path}/store")
    assert TrainConfig(storage="s3://bucket/~x").resolved().storage == "s3://bucket/~x"  # URIs untouched
