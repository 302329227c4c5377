"""Engine v2: callbacks, batch plans, resume, one trainer for in-process and Ray Train,
the ensemble placement, coreset stages' cache keys and the weighting schemes."""

from __future__ import annotations

import copy
import dataclasses
import re
import time
from pathlib import Path

import pytest
import torch
from helpers import REPO, train_on_subset

from raypkg.data import load_dataset
from raypkg.engine.callbacks import Callback
from raypkg.engine.config import TrainConfig
from raypkg.engine.loop import fit, seed_everything, training_state
from raypkg.engine.plans import ShuffledBatches, WeightedSampling
from raypkg.engine.trainer import train, train_ensemble
from raypkg.models import build_model
from raypkg.selection.config import CoresetConfig
from raypkg.selection.weighting import normalised_weights, training_weights

PACKAGE = REPO / "raypkg"


class CountEvents(Callback):
    """Counts every hook and records the order of the first step's events."""

    def __init__(self):
        self.counts = dict.fromkeys(("fit_start", "epoch_start", "after_backward", "step_end", "epoch_end",
                                     "fit_end"), 0)
        self.order: list[str] = []

    def _hit(self, name: str) -> None:
        self.counts[name] += 1
        if len(self.order) < 6:
            self.order.append(name)

    def on_fit_start(self, ctx): self._hit("fit_start")
    def on_epoch_start(self, ctx): self._hit("epoch_start")
    def on_step_end(self, ctx): self._hit("step_end")
    def on_fit_end(self, ctx): self._hit("fit_end")

    def on_after_backward(self, ctx):
        assert all(p.grad is not None for p in ctx.model.parameters())
        self._hit("after_backward")

    def on_epoch_end(self, ctx, row):
        self._hit("epoch_end")
        row["steps_so_far"] = self.counts["step_end"]

    def state_dict(self):
        return {"counts": dict(self.counts)}

    def load_state_dict(self, state):
        self.counts = dict(state["counts"])


def digits():
    return load_dataset("digits", seed=0)


def test_callbacks_see_every_event_in_order_and_add_columns():
    data = digits()
    cfg = TrainConfig(precision="fp32", memory_format="contiguous", epochs=3, batch_size=64, progress=False).validate()
    counter = CountEvents()
    result = train(cfg, data, callbacks=[counter])
    steps = len(data.train) // 64  # the ragged last batch dropped (--drop-last, the default)
    assert counter.counts == {"fit_start": 1, "epoch_start": 3, "after_backward": 3 * steps, "step_end": 3 * steps,
                              "epoch_end": 3, "fit_end": 1}
    assert counter.order == ["fit_start", "epoch_start", "after_backward", "step_end", "after_backward", "step_end"]
    assert [row["steps_so_far"] for row in result.history] == [steps, 2 * steps, 3 * steps]


class SlowEpochs(Callback):
    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_epoch_end(self, ctx, row):
        time.sleep(self.seconds)


@pytest.mark.parametrize("seconds", [0.0, 0.15])
def test_the_progress_bar_shows_each_epochs_count_beside_its_loss(capsys, seconds):
    """issue 65: the bar drew "0/N" beside every epoch's loss through a whole run whose epochs
    were faster than its redraw interval (an iterated tqdm counts only when it draws). Every
    line drawn shows the epochs done beside the last one's loss; slow epochs draw each."""
    data = digits()
    cfg = TrainConfig(precision="fp32", memory_format="contiguous", epochs=3, batch_size=64, progress=True).validate()
    net = build_model("mlp", data.input_shape, data.num_classes)
    history = fit(net, data.train, data.test, cfg, callbacks=[SlowEpochs(seconds)])
    epoch_of = {f"{row['train_loss']:.3f}": row["epoch"] for row in history}
    drawn = [(int(m[1]), int(m[2]), m[3]) for m in re.finditer(r"(\d+)/(\d+) [^\r\n]*train_loss=([\d.]+)",
                                                               capsys.readouterr().err)]
    assert all(total == 3 and done == epoch_of[loss] for done, total, loss in drawn), drawn
    if seconds:
        assert [done for done, _, _ in drawn] == [1, 2, 3]


class ZeroGradients(Callback):
    def on_after_backward(self, ctx):
        for p in ctx.model.parameters():
            p.grad.zero_()


def test_after_backward_edits_reach_the_optimizer_step():
    data = digits()
    cfg = TrainConfig(precision="fp32", memory_format="contiguous", epochs=1, weight_decay=0.0, progress=False).validate()
    seed_everything(0)
    model = build_model("mlp", data.input_shape, data.num_classes)
    before = [p.detach().clone() for p in model.parameters()]
    fit(model, data.train, None, cfg, callbacks=[ZeroGradients()])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


class KeepFirstHalf(Callback):
    """Trains each batch's first half only (as selective backprop keeps some of a batch)."""

    def on_batch_start(self, ctx):
        b = ctx.batch
        keep = slice(0, len(b.y) // 2)
        ctx.batch = dataclasses.replace(b, positions=b.positions[keep], x=b.x[keep], y=b.y[keep])


class FirstHalves(ShuffledBatches):
    """The plan's batches, each cut to its first half."""

    def batches(self, ctx):
        for planned in super().batches(ctx):
            yield dataclasses.replace(planned, positions=planned.positions[:len(planned.positions) // 2])


def test_a_batch_replaced_at_batch_start_is_what_the_step_trains():
    data = digits()
    cfg = TrainConfig(precision="fp32", memory_format="contiguous", epochs=2, batch_size=32,
                      progress=False).validate()
    trained = []
    for plan, callbacks in ((ShuffledBatches(len(data.train), 32, cfg.seed), [KeepFirstHalf()]),
                            (FirstHalves(len(data.train), 32, cfg.seed), [])):
        seed_everything(0)
        model = build_model("mlp", data.input_shape, data.num_classes)
        rows = fit(model, data.train, None, cfg, plan=plan, callbacks=callbacks)
        trained.append((model, rows))
    (halved, halved_rows), (planned, planned_rows) = trained
    assert [r["train_loss"] for r in halved_rows] == [r["train_loss"] for r in planned_rows]
    for a, b in zip(halved.state_dict().values(), planned.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_from_training_state_equals_training_straight_through():
    data = digits()
    cfg = TrainConfig(precision="fp32", memory_format="contiguous", epochs=4, progress=False).validate()
    seed_everything(0)
    straight = build_model("mlp", data.input_shape, data.num_classes)
    straight_counter = CountEvents()
    rows = fit(straight, data.train, None, cfg, callbacks=[straight_counter])

    seed_everything(0)
    first = build_model("mlp", data.input_shape, data.num_classes)
    saved = {}

    class Interrupted(Exception):
        pass

    class StopAfterTwo(Callback):  # a failure after epoch 2's checkpoint
        def on_epoch_end(self, ctx, row):
            if ctx.epoch == 1 and not saved:
                saved.update(copy.deepcopy(training_state(ctx)))
                raise Interrupted

    with pytest.raises(Interrupted):
        fit(first, data.train, None, cfg, callbacks=[CountEvents(), StopAfterTwo()])
    resumed_counter = CountEvents()
    second = build_model("mlp", data.input_shape, data.num_classes)  # other init: the state must replace it
    resumed_rows = fit(second, data.train, None, cfg, callbacks=[resumed_counter, StopAfterTwo()], resume=saved)
    # epochs 1-2 come back from the saved state; epochs 3-4 are trained after the resume
    assert len(resumed_rows) == len(rows) == 4
    assert [r["train_loss"] for r in resumed_rows[2:]] == [r["train_loss"] for r in rows[2:]]
    assert resumed_counter.counts["step_end"] == straight_counter.counts["step_end"]
    for a, b in zip(straight.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_shuffled_batches_split_by_rank_cover_each_epoch():
    plan = ShuffledBatches(10, batch_size=3, seed=1)
    shares = [plan.order(2, r, 3) for r in range(3)]
    assert set(torch.cat(shares).tolist()) == set(range(10)) and all(len(s) == 4 for s in shares)
    assert plan.steps(2, 0, 3) == 2 and plan.steps(2, 0, 1) == 4


def test_weighted_sampling_draws_in_proportion_to_the_weights():
    weights = torch.tensor([1.0, 3.0, 0.0, 6.0])
    plan = WeightedSampling(weights, batch_size=100, seed=0)
    draws = torch.cat([plan.order(epoch, 0, 1) for epoch in range(500)])
    freq = torch.bincount(draws, minlength=4).double() / len(draws)
    assert freq[2] == 0 and torch.allclose(freq, weights.double() / 10, atol=0.01)
    assert not torch.equal(plan.order(0, 0, 1), plan.order(1, 0, 1))
    assert torch.equal(torch.cat([plan.order(3, r, 2) for r in range(2)]).sort().values,
                       plan.order(3, 0, 1).sort().values)


def test_normalised_weights_have_mean_one_and_respect_the_cap():
    w = torch.cat([torch.ones(900), torch.full((90,), 40.0), torch.full((10,), 3000.0)])
    for cap in (1.5, 2.0, 10.0):
        n = normalised_weights(w, cap).double()
        assert n.mean().item() == pytest.approx(1.0, abs=1e-6) and n.max().item() <= cap * (1 + 1e-6)
        assert torch.equal(n.argsort(stable=True), normalised_weights(w).argsort(stable=True))  # order kept
    assert normalised_weights(w).double().mean().item() == pytest.approx(1.0, abs=1e-6)
    assert normalised_weights(w, float("inf")).max().item() == pytest.approx(3000 * 1000 / w.sum().item())


def test_weighting_schemes_map_to_loss_weights_or_a_sampling_plan():
    w = torch.tensor([1.0, 2.0, 5.0])
    loss_w, plan = training_weights(w, "loss", None, batch_size=2, seed=0)
    assert plan is None and torch.allclose(loss_w, w / w.mean())
    loss_w, plan = training_weights(w, "sample", None, batch_size=2, seed=0)
    assert loss_w is None and isinstance(plan, WeightedSampling)
    assert training_weights(w, "none", 2.0, batch_size=2, seed=0) == (None, None)


def test_unit_weights_under_the_loss_scheme_train_like_no_weights():
    data = digits()
    cfg = TrainConfig(precision="fp32", memory_format="contiguous", epochs=2, progress=False).validate()
    plain = train(cfg, data)
    weights, _ = training_weights(torch.ones(len(data.train)), "loss", 2.0, cfg.batch_size, cfg.seed)
    weighted = train(cfg, data, weights=weights)
    for a, b in zip(plain.model.state_dict().values(), weighted.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_cache_keys_cover_every_field_that_changes_the_data_or_the_model():
    from raypkg.selection.pipeline import PRETRAIN_EXCLUDE, SELECTION_EXCLUDE, config_key, pretrain_config

    base = CoresetConfig(selection="grand", pretrain_epochs=2).resolved().validate()
    for change in ({"normalize": False}, {"num_classes": 5}, {"image_size": 32}, {"shape": "64"},
                   {"flat": True}, {"lr_warmup_epochs": 1}, {"momentum": 0.5}):
        other = dataclasses.replace(base, **change)
        assert config_key(pretrain_config(other, 0), PRETRAIN_EXCLUDE) != \
            config_key(pretrain_config(base, 0), PRETRAIN_EXCLUDE), change
        assert config_key(other, SELECTION_EXCLUDE) != config_key(base, SELECTION_EXCLUDE), change
    # what only the subset training uses leaves both keys alone; the fraction changes the selection only
    for change in ({"epochs": 99}, {"weighting": "none"}, {"workers": 2}, {"out": "elsewhere"}):
        other = dataclasses.replace(base, **change)
        assert config_key(other, SELECTION_EXCLUDE) == config_key(base, SELECTION_EXCLUDE), change
    assert config_key(pretrain_config(dataclasses.replace(base, fraction=0.5), 0), PRETRAIN_EXCLUDE) == \
        config_key(pretrain_config(base, 0), PRETRAIN_EXCLUDE)
    assert config_key(dataclasses.replace(base, fraction=0.5), SELECTION_EXCLUDE) != \
        config_key(base, SELECTION_EXCLUDE)


def test_a_time_to_accuracy_target_is_in_no_cache_key():
    """issue 48: --target-acc only measures the subset's training; adding it reran the warm-up."""
    from raypkg.methods.lipt.config import LiptConfig
    from raypkg.methods.lipt.pretrain import LIPT_PRETRAIN_EXCLUDE
    from raypkg.selection.pipeline import PRETRAIN_EXCLUDE, SELECTION_EXCLUDE, config_key, pretrain_config

    base = CoresetConfig(selection="grand", pretrain_epochs=2).resolved().validate()
    timed = dataclasses.replace(base, target_acc=0.5)
    assert config_key(pretrain_config(timed, 0), PRETRAIN_EXCLUDE) == config_key(pretrain_config(base, 0),
                                                                                    PRETRAIN_EXCLUDE)
    assert config_key(timed, SELECTION_EXCLUDE) == config_key(base, SELECTION_EXCLUDE)
    lipt = LiptConfig()
    assert config_key(dataclasses.replace(lipt, target_acc=0.5), LIPT_PRETRAIN_EXCLUDE) == \
        config_key(lipt, LIPT_PRETRAIN_EXCLUDE)


def test_a_no_normalize_run_does_not_reuse_a_standardised_pretraining(tmp_path):
    from raypkg.methods.coreset.recipe import SELECT

    common = dict(dataset="digits", model="logreg", selection="grand", repeats=1, pretrain_epochs=1, fraction=0.1,
                  out=str(tmp_path), wandb="disabled", progress=False)
    first = SELECT.run(CoresetConfig(**common, name="a"))
    second = SELECT.run(CoresetConfig(**common, name="b", normalize=False))
    assert first["cached"]["pretrain_hits"] == 0 and second["cached"]["pretrain_hits"] == 0
    assert not second["cached"]["selection_hit"]
    third = SELECT.run(CoresetConfig(**common, name="c", normalize=False))
    assert third["cached"] == {"pretrain_hits": 1, "selection_hit": True}


def test_one_backward_call_in_the_training_code():
    """The engine's loop is the one place that trains (DeltaGrad's closed forms, the
    overhead bench's plain reference loop, the sparse backend's and the execution's timing
    probes (the precision bench times the execution's) and the plug-in model check aside: the
    probes time a layer's or a copy of the model's forward + backward, the check runs one
    forward + backward in train mode; none takes an optimizer step outside the benches).
    Proxy selection's proxy, a second model, takes its one step per batch inside the loop's
    ``on_batch_start`` (raypkg.methods.proxy_selection): the engine's model is still trained only here."""
    import ast

    def calls_backward(path: Path) -> bool:
        return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "backward"
                   for node in ast.walk(ast.parse(path.read_text())))

    hits = [path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py") if calls_backward(path)]
    assert sorted(hits) == ["bench/overhead.py", "engine/execution.py", "engine/loop.py", "methods/proxy_selection.py",
                            "plugins.py", "sparsity/backend.py"]


@pytest.mark.slow
def test_weighted_craig_trains_within_three_points_of_its_picks_unweighted():
    """The skewed cluster-size weights (one pick can stand for hundreds of examples) must not
    wreck training: CRAIG's default weighting at fraction 0.3 on digits-aug stays within 3
    points of the same picks trained with unit weights (it was 0.34 vs 0.93 with
    sum(w l) / sum(w) per batch)."""
    from raypkg.data.augment import use_augmentation
    from raypkg.engine.loop import evaluate, pick_device
    from raypkg.recipe import load_data
    from raypkg.selection.pipeline import pretrain, select_stage

    cfg = CoresetConfig(dataset="digits-aug", train_size=6000, test_size=2000, model="mlp", selection="craig",
                        fraction=0.3, pretrain_epochs=2, epochs=8, progress=False, cache=False, precision="fp32",
                        memory_format="contiguous").resolved()
    data, device = load_data(cfg), pick_device(None)
    augment = use_augmentation(cfg, data)
    result, _, _ = select_stage(cfg, data, pretrain(cfg, data, device, augment), device)
    assert result.weights.max() > 20 * result.weights.median()  # the weights really are skewed
    accuracy = {}
    for weighting in ("none", cfg.weighting):
        trained = train_on_subset(dataclasses.replace(cfg, weighting=weighting), data, result)
        accuracy[weighting] = evaluate(trained.model, data.test)["acc"]
    assert cfg.weighting != "none"
    assert accuracy[cfg.weighting] >= accuracy["none"] - 0.03, accuracy


# -- Ray Train: the same fit in the workers ------------------------------------------------

@pytest.mark.slow
def test_ray_train_one_worker_matches_in_process(ray_session, tmp_path):
    """At auto too: the execution is decided once, on the driver (here bf16, by an injected
    measurement on a CPU said to have avx512_bf16), and the worker runs that decision."""
    from raypkg.engine.execution import ExecutionCache, Measurement, resolve_for_data

    data = digits()
    samples = {("fp32", "contiguous"): [2.0] * 5, ("bf16", "contiguous"): [1.0] * 5}
    cfg, execution = resolve_for_data(TrainConfig(epochs=3, progress=False).validate(), data, torch.device("cpu"),
                                      flags={"avx512_bf16"}, cache=ExecutionCache(tmp_path / "execution.json"),
                                      measurer=lambda steps: Measurement(samples, 5, 0.1))
    assert (cfg.precision, cfg.memory_format, execution.source) == ("bf16", "contiguous", "measured")
    local_counter, remote_counter = CountEvents(), CountEvents()
    local = train(cfg, data, callbacks=[local_counter])
    remote = train(dataclasses.replace(cfg, workers=1), data, callbacks=[remote_counter], storage=tmp_path)
    assert [r["train_loss"] for r in remote.history] == pytest.approx([r["train_loss"] for r in local.history],
                                                                      abs=1e-6)
    # The driver's callback got the state of the workers' last checkpoint (taken at the
    # last epoch's end, before on_fit_end).
    assert remote_counter.counts == {**local_counter.counts, "fit_end": 0}
    assert [r["steps_so_far"] for r in remote.history] == [r["steps_so_far"] for r in local.history]
    assert remote.restarts == 0
    # A second run in the same storage trains anew: it does not resume the first one's checkpoint.
    again = train(dataclasses.replace(cfg, workers=1, epochs=2), data, storage=tmp_path)
    assert [r["epoch"] for r in again.history] == [1, 2]


def test_ensemble_models_are_plain_fits_on_their_own_shards():
    data = digits()
    shards = list(torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0)).chunk(3))
    cfg = TrainConfig(precision="fp32", memory_format="contiguous", epochs=1, progress=False).validate()
    result = train_ensemble(cfg, data, shards)
    assert len(result.states) == len(result.histories) == 3 and result.restarts == 0
    for k in (0, 2):
        seed_everything(cfg.seed + 1000 * k)
        model = build_model(cfg.model, data.input_shape, data.num_classes)
        rows = fit(model, data.train.subset(shards[k]), None, dataclasses.replace(cfg, seed=cfg.seed + 1000 * k))
        assert all(torch.equal(v, result.states[k][name]) for name, v in model.state_dict().items())
        assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in result.histories[k]]
    assert not torch.equal(next(iter(result.states[0].values())), next(iter(result.states[1].values())))


def test_ray_train_imports_nothing_from_the_trainer():
    """trainer.py places runs on Ray Train (ray_train.py); ray_train.py must not import
    trainer.py back (the shard code both use lives in engine/ensemble.py)."""
    import ast

    tree = ast.parse((PACKAGE / "engine" / "ray_train.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "raypkg.engine.trainer" not in imported and "raypkg.engine.ensemble" in imported
