"""Models and datasets defined outside effray (issue 19): by import path, by entry point,
through every method, on Ray Train workers, in cache keys and config files.

The plug-ins are tests/plugin_example (tests/ is on sys.path under pytest)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from helpers import TESTS_DIR, bare_env, without_ray_noise
from torch.func import functional_call, grad, vmap

from raypkg.cli import main
from raypkg.data.base import DataSplits, IndexedDataset
from raypkg.data.plugins import as_splits
from raypkg.data.registry import load_dataset
from raypkg.engine.config import TrainConfig
from raypkg.errors import UsageError
from raypkg.models.base import ModuleClassifier
from raypkg.models.registry import build_model, check_model
from raypkg.selection.embeddings import FactoredEmbedding, logit_gradients, logits_and_features

BN_NET, MLP = "plugin_example.models:bn_net", "plugin_example.models:mlp"
TABULAR, DIGITS = "plugin_example.data:tabular", "plugin_example.data:digits"
QUIET = ["--wandb", "disabled", "--no-progress"]


@pytest.fixture(autouse=True)
def keep_pythonpath(monkeypatch):
    """Resolving a plug-in adds its directory to PYTHONPATH (for Ray's processes): undo it."""
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))


def run_cli(*args) -> dict:
    """`effray ARGS` in this process: the run's summary, its directory and its epoch rows."""
    result = CliRunner().invoke(main, [*args, *QUIET], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run_dir = result.output.strip().splitlines()[-1].split("run directory: ")[1]
    summary = json.loads(Path(run_dir, "summary.json").read_text())
    metrics = Path(run_dir, "metrics.parquet")
    return summary | {"dir": run_dir, "rows": pd.read_parquet(metrics) if metrics.exists() else None}


# ------------------------------------------------------------------------------ models

def test_a_plain_module_is_wrapped_and_its_output_is_unchanged():
    data = load_dataset(TABULAR)
    torch.manual_seed(0)
    model = build_model(BN_NET, data.input_shape, data.num_classes)
    assert isinstance(model, ModuleClassifier) and model.head_name == "scores" and model.head is model.net.scores
    assert model.feature_dim == 32 and list(model.state_dict())[0].startswith("net.")
    x = data.train.x[:50]
    for train_mode in (False, True):
        model.train(train_mode)
        with torch.no_grad():
            expected = model.net(x)
            assert torch.equal(model(x), expected)
            if not train_mode:  # batch norm in train mode uses the batch statistics: one pass each
                assert torch.equal(model.forward_head(model.forward_features(x)), expected)
    # a registered model and a Classifier returned by a plug-in are not wrapped
    assert not isinstance(build_model("mlp", (12,), 4), ModuleClassifier)
    own = build_model("plugin_example.models:OwnClassifier", (12,), 4)
    assert type(own).__name__ == "OwnClassifier" and own.feature_dim == 16


def test_closed_form_embeddings_equal_autograd_for_a_wrapped_model():
    data = load_dataset(TABULAR)
    torch.manual_seed(0)
    model = build_model(BN_NET, data.input_shape, data.num_classes).double()
    model.train()
    model(data.train.x.double())  # batch-norm running statistics that are not the initial ones
    model.eval()
    x, y = data.train.x[:40].double(), data.train.y[:40]
    z, h = logits_and_features(model, x)
    exact_z = model(x)
    assert torch.equal(z, exact_z.detach())
    emb = FactoredEmbedding(logit_gradients(z, y), h)

    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, xi, yi):
        return torch.nn.functional.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    exact = torch.cat([grads["net.scores.bias"], grads["net.scores.weight"].flatten(1)], 1)
    torch.testing.assert_close(emb.materialize(), exact, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("factory, message", [
    ("wrong_size", r"must output \[batch, 4\] logits for 4 classes, got \(4, 5\)"),
    ("softmax_output", r"its output is not its last nn.Linear's \('0.3'\) output"),
    ("no_linear", "has no nn.Linear layer"),
    ("not_a_module", "returned a dict, not a torch nn.Module"),
    ("raises", "its factory failed: RuntimeError: no weights file"),
    ("exits", "its factory failed: SystemExit: 3"),
    ("frozen", "has no parameter that requires a gradient"),
    ("breaks_in_training", r"fails in a training step \(train mode"),
])
def test_check_model_refuses_what_selection_cannot_use(factory, message):
    data = load_dataset(TABULAR)
    cfg = TrainConfig(dataset=TABULAR, model=f"plugin_example.models:{factory}")
    with pytest.raises(UsageError, match=message):
        check_model(cfg, data)


@pytest.mark.slow
def test_a_plugin_module_that_raises_keyboardinterrupt_on_import_is_one_line():
    """Indistinguishable from a Ctrl-C during the import: one ``interrupted:`` line, status 130."""
    proc = subprocess.run([sys.executable, "-m", "raypkg.cli", "train", "--model", "plugin_example.interrupts:f"],
                          capture_output=True, text=True, env=bare_env(PYTHONPATH=TESTS_DIR), timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 130 and len(lines) == 1 and lines[0].startswith("interrupted: "), proc.stderr


def test_tiny_training_splits_get_the_same_note_built_in_or_plugin(capsys):
    """Built-in (``--train-size 5``) or a plug-in's three examples: both train, with one note,
    and so does DeltaGrad's `unlearn train`, which loads flattened data."""
    import raypkg

    for method, settings in (("train", {"dataset": "synthetic", "train_size": 5, "test_size": 5, "shape": "4"}),
                             ("train", {"dataset": "plugin_example.data:three_examples"}),
                             ("unlearn-train", {"dataset": "synthetic", "train_size": 5, "test_size": 5})):
        raypkg.run(method, model="logreg", epochs=1, progress=False, save=False, **settings)
        notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
        assert len(notes) == 1 and "fewer than 10 per class" in notes[0], (method, notes)
    raypkg.run("train", model="logreg", epochs=1, progress=False, save=False, dataset=TABULAR)
    assert "note: " not in capsys.readouterr().err


def test_check_model_passes_good_models_and_keeps_the_random_state():
    data = load_dataset(TABULAR)
    state = torch.get_rng_state()
    for model in (BN_NET, MLP, "plugin_example.models:OwnClassifier", "mlp", "resnet20"):
        check_model(TrainConfig(dataset=TABULAR, model=model), data)
    assert torch.equal(torch.get_rng_state(), state)


# ---------------------------------------------------------------------------- datasets

def test_dataset_factories_return_pairs_datasets_or_splits():
    tabular = load_dataset(TABULAR)
    assert tabular.input_shape == (12,) and tabular.num_classes == 4 and not tabular.augmentable
    assert tabular.train.x.dtype == torch.float32 and tabular.train.y.dtype == torch.long
    assert torch.equal(tabular.train.index, torch.arange(240))
    listed = load_dataset("plugin_example.data:as_list_of_pairs")  # a list of (x, y) items
    assert torch.equal(listed.test.x, tabular.test.x) and torch.equal(listed.test.y, tabular.test.y)
    # num_classes given as a third item; numpy arrays; DataSplits as they are
    x, y = torch.randn(6, 2, 3).double().numpy(), torch.tensor([0, 1, 0, 1, 0, 1]).numpy()
    splits = as_splits("t", ((x, y), (x[:2], y[:2]), 5))
    assert splits.num_classes == 5 and splits.input_shape == (2, 3) and splits.train.x.dtype == torch.float32
    given = DataSplits("s", IndexedDataset(torch.zeros(3, 2), torch.tensor([0, 1, 2]), 3),
                       IndexedDataset(torch.zeros(1, 2), torch.tensor([2]), 3))
    assert as_splits("s", given) is given
    # a factory that takes the DataOptions gets the seed (and counts as sized)
    assert not torch.equal(load_dataset(DIGITS, seed=0).test.y, load_dataset(DIGITS, seed=1).test.y)
    TrainConfig(dataset=DIGITS, train_size=10).resolved().validate()
    with pytest.raises(UsageError, match="has a fixed size"):
        TrainConfig(dataset=TABULAR, train_size=10).resolved().validate()


@pytest.mark.parametrize("factory, message", [
    ("wrong_type", "returned a str; a dataset factory returns DataSplits or"),
    ("labels_out_of_range", r"test labels must be in \[0, 3\), found 4"),
    ("negative_labels", r"train labels must be in \[0, 3\), found -1"),
    ("length_mismatch", r"x of shape \(20, 3\) and y of shape \(19,\)"),
    ("shape_mismatch", r"train samples have shape \(3,\), test samples \(4,\)"),
    ("float_labels", "labels must be integers"),
    ("two_arguments", "takes no argument or one"),
    ("nan_inputs", r"the train inputs hold 2 non-finite values \(NaN or inf\); training on them gives NaN losses"),
    ("one_class", "every training label is 3; a classifier needs at least two classes"),
    ("a_billion_classes", "1000000000 classes; effray takes at most 100,000"),
])
def test_bad_dataset_factories_are_refused_in_one_line(factory, message):
    with pytest.raises(UsageError, match=message):
        load_dataset(f"plugin_example.data:{factory}")


@pytest.mark.parametrize("name, message", [
    ("plugin_example.nope:f", "cannot import 'plugin_example.nope'.*PYTHONPATH"),
    ("plugin_example.broken:f", "No module named 'effray_no_such_dependency'$"),
    ("plugin_example.models:nope", "has no attribute 'nope'"),
    ("plugin_example.models:NOT_CALLABLE", "'NOT_CALLABLE' is not callable"),
    ("plugin_example.models:no_arguments", r"takes \(input_shape, num_classes\)"),
    (":f", "give an import path MODULE:FACTORY"),
    ("nope", "unknown model 'nope'; choose one of: .*mlp.*; or give an import path"),
])
def test_bad_import_paths_are_refused_by_validate(name, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig(model=name).resolved().validate()


def test_the_working_directory_is_searched_and_plugin_directories_reach_child_processes(tmp_path, monkeypatch):
    from raypkg.plugins import load_factory

    (tmp_path / "cwd_plugin.py").write_text("from plugin_example.models import bn_net\n")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    assert load_factory("model", "cwd_plugin:bn_net").__name__ == "bn_net"
    assert str(tmp_path) in sys.path  # searched after everything else
    assert os.environ["PYTHONPATH"].split(os.pathsep) == ["/somewhere", str(tmp_path)]
    load_factory("model", "torch.nn:Linear")  # an installed package: PYTHONPATH stays as it is
    assert os.environ["PYTHONPATH"].split(os.pathsep) == ["/somewhere", str(tmp_path)]


# -------------------------------------------------------------------------- entry points

def write_distribution(root: Path) -> None:
    """An installed distribution as importlib.metadata sees one: NAME.dist-info on sys.path."""
    info = root / "effray_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: effray-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[effray.models]\ndemo-bn = {BN_NET}\nmlp = {BN_NET}\n\n[effray.datasets]\ndemo-tabular = {TABULAR}\n")


def test_entry_points_are_listed_and_resolve_by_name(tmp_path, monkeypatch):
    write_distribution(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    models = CliRunner().invoke(main, ["models"]).output.splitlines()
    assert "demo-bn       A small batch-norm MLP whose classifier layer is `scores`. (plug-in " \
           f"{BN_NET})" in models
    assert sum(line.split()[0] == "mlp" for line in models) == 1  # a built-in name wins
    datasets = CliRunner().invoke(main, ["datasets"]).output.splitlines()
    assert any(line.startswith("demo-tabular") and TABULAR in line for line in datasets)
    assert isinstance(build_model("demo-bn", (12,), 4), ModuleClassifier)
    assert not isinstance(build_model("mlp", (12,), 4), ModuleClassifier)
    assert load_dataset("demo-tabular").num_classes == 4
    summary = run_cli("train", "--dataset", "demo-tabular", "--model", "demo-bn", "--epochs", "1",
                      "--out", str(tmp_path / "runs"))
    assert summary["dataset"] == "demo-tabular" and summary["test_acc"] > 0.5


# ------------------------------------------------------------ equality and config files

def test_plugins_train_bit_identically_to_the_registered_mlp_and_digits(tmp_path):
    # One execution for both: --precision auto measures each model name apart, and on a CPU with avx512_bf16
    # one may choose bf16 and the other fp32 (CI, stop 96).
    common = ["train", "--epochs", "3", "--batch-size", "64", "--seed", "0", "--out", str(tmp_path),
              "--precision", "fp32"]
    builtin = run_cli(*common, "--dataset", "digits", "--model", "mlp")
    plugin = run_cli(*common, "--dataset", DIGITS, "--model", MLP)
    assert len(plugin["rows"]) == 3
    assert plugin["rows"]["train_loss"].tolist() == builtin["rows"]["train_loss"].tolist()
    assert plugin["rows"]["test_loss"].tolist() == builtin["rows"]["test_loss"].tolist()
    assert plugin["test_acc"] == builtin["test_acc"]
    # the config.yaml the run wrote names the plug-ins by import path and repeats the run
    saved = Path(plugin["dir"], "config.yaml")
    assert yaml.safe_load(saved.read_text())["model"] == MLP
    again = run_cli("train", "--config", str(saved), "--name", "again")
    assert again["rows"]["train_loss"].tolist() == plugin["rows"]["train_loss"].tolist()


def test_cache_keys_hash_the_plugin_source(tmp_path, monkeypatch):
    from raypkg.selection.cache import digest
    from raypkg.selection.config import CoresetConfig
    from raypkg.selection.pipeline import PRETRAIN_EXCLUDE, config_key

    module = tmp_path / "edited_plugin.py"
    module.write_text("from plugin_example.models import bn_net as net\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = CoresetConfig(dataset=TABULAR, model="edited_plugin:net")
    before = config_key(cfg, PRETRAIN_EXCLUDE)
    assert config_key(cfg, PRETRAIN_EXCLUDE) == before
    module.write_text("from plugin_example.models import bn_net as net  # edited\n")
    assert config_key(cfg, PRETRAIN_EXCLUDE) != before
    # registered models and datasets add no source hash: the key is the settings' alone
    # (less the stack, which config_key leaves out)
    plain = CoresetConfig()
    values = {k: v for k, v in dataclasses.asdict(plain).items() if k not in PRETRAIN_EXCLUDE | {"stack"}}
    assert config_key(plain, PRETRAIN_EXCLUDE) == digest(values)


# ---------------------------------------------------------------------- every method

TINY = ["--dataset", TABULAR, "--model", BN_NET, "--epochs", "2", "--batch-size", "32", "--seed", "0"]


@pytest.mark.parametrize("method", [
    ["run", "crest", "--train-frac", "0.3", "--random-subset-size", "0.1"],
    ["run", "lipt", "--shards", "2", "--pre-epochs", "1", "--selection", "grand", "--fraction", "0.3",
     "--bn-samples", "128"],
    ["run", "coreset", "--selection", "grand", "--fraction", "0.2", "--pretrain-epochs", "1"],
    ["run", "coreset", "--selection", "craig", "--fraction", "0.2", "--pretrain-epochs", "1"],
    ["run", "sparse", "--sparse", "--density", "0.3", "--update-frequency", "3"],
], ids=lambda m: " ".join(m[1:3]))
def test_every_method_runs_a_plugin_model_with_batch_norm_on_a_plugin_dataset(tmp_path, method):
    summary = run_cli(*method, "--out", str(tmp_path), *TINY)
    assert summary["model"] == BN_NET and summary["dataset"] == TABULAR
    assert summary["test_acc"] is not None and summary["test_acc"] > 0.3  # 4 classes: chance is 0.25
    state = torch.load(Path(summary["dir"], "model.pt"))
    assert "net.scores.weight" in state and "net.body.2.running_mean" in state


RAY_OVERLOADED = """\x1b[36m(TrainController pid=29650)\x1b[0m Failed to send resource request for train-3005. \
If this only happens transiently during network partition or CPU being overloaded, it's safe to ignore this error.
\x1b[36m(TrainController pid=29650)\x1b[0m Traceback (most recent call last):
\x1b[36m(TrainController pid=29650)\x1b[0m   File "ray/train/v2/.../autoscaling_coordinator_client.py", line 58, in send
\x1b[36m(TrainController pid=29650)\x1b[0m     ray.get(
\x1b[36m(TrainController pid=29650)\x1b[0m ray.exceptions.GetTimeoutError: Get timed out: some object(s) not ready.
[ray train] epoch 1/2
"""


# What a sweep that succeeded printed once in the suite (Tune ended its trial's actor with
# SIGTERM while Python ran a weakref callback): the prefix, the _weakrefset frame and the
# SystemExit line as seen; the handler's frame as ray/_private/worker.py has it
TRIAL_SIGTERM = """\x1b[36m(trial pid=18666)\x1b[0m Exception ignored in: <function WeakSet.__init__.<locals>._remove>
\x1b[36m(trial pid=18666)\x1b[0m Traceback (most recent call last):
\x1b[36m(trial pid=18666)\x1b[0m   File "/usr/lib/python3.11/_weakrefset.py", line 39, in _remove
\x1b[36m(trial pid=18666)\x1b[0m     def _remove(item, selfref=ref(self)):
\x1b[36m(trial pid=18666)\x1b[0m   File "ray/_private/worker.py", line 1063, in sigterm_handler
\x1b[36m(trial pid=18666)\x1b[0m SystemExit: 1
best test_acc = 0.9644 with config:
"""


def test_only_rays_own_noise_and_its_tracebacks_are_left_out():
    """What CI's busy machine printed once (a run that succeeded): the warning and its
    traceback go, the run's own line stays; so does a trial's SIGTERM reported as an
    ignored exception. A traceback of anything else stays, an ignored exception too."""
    assert without_ray_noise(RAY_OVERLOADED) == "[ray train] epoch 1/2"
    assert without_ray_noise(TRIAL_SIGTERM) == "best test_acc = 0.9644 with config:"
    other = "(RayTrainWorker pid=7) Traceback (most recent call last):\n(RayTrainWorker pid=7) ValueError: x"
    assert without_ray_noise(RAY_OVERLOADED + other).endswith(other)
    ignored = TRIAL_SIGTERM.replace("SystemExit: 1", "ValueError: x")
    assert without_ray_noise(ignored) == ignored.rstrip("\n")


@pytest.mark.slow
def test_a_local_run_beside_another_ray_starts_its_own_and_its_workers_import_the_plugins(ray_session, tmp_path):
    """`effray train --workers 2` (the console script, whose sys.path lacks the working
    directory) run from the directory that holds the plug-in package, with nothing on
    PYTHONPATH: both Ray Train workers import it. This test process runs a Ray instance
    beside it: the run starts its own private Ray, so no driver joins this one and it keeps
    its resources, and it ends without a traceback (with two Ray instances on the machine,
    Ray Train's placement-group cleaner used to die with "Found multiple active Ray
    instances" in a run that succeeded)."""
    from ray._private.state import jobs

    drivers, resources = len(jobs()), ray_session.available_resources()
    effray = Path(sys.executable).parent / "effray"
    env = bare_env(EFFRAY_RAY_NUM_CPUS="2")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([str(effray), "train", "--workers", "2", *TINY, "--out", str(tmp_path), *QUIET],
                          cwd=TESTS_DIR, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ray: started a private local Ray with 2 CPUs" in proc.stdout
    assert "Traceback" not in without_ray_noise(proc.stderr), proc.stderr[-3000:]
    assert len(jobs()) == drivers, jobs()
    assert ray_session.available_resources() == resources
    run_dir = proc.stdout.strip().splitlines()[-1].split("run directory: ")[1]
    summary = json.loads(Path(run_dir, "summary.json").read_text())
    assert summary["workers"] == 2 and summary["test_acc"] > 0.3
    assert len(pd.read_parquet(Path(run_dir, "metrics.parquet"))) == 2
