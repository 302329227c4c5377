"""Layer freezing (raypkg.methods.layer_freezing): the schedule's closed form, the layers in forward
order, frozen parameters that do not move while the others do, level 0 as plain training bit
for bit, the freeze across a checkpoint, its work as counted for the frontier, and its stacks."""

from __future__ import annotations

import copy

import pytest
import torch
from click.testing import CliRunner
from helpers import DIGITS_TRAIN
from torch import nn

import raypkg
from raypkg.cli import main
from raypkg.data import load_dataset
from raypkg.engine.callbacks import Callback
from raypkg.engine.config import TrainConfig
from raypkg.engine.loop import CLOCK_COLUMNS, fit, seed_everything, training_state
from raypkg.methods.layer_freezing import (
    FreezeLayers,
    LayerFreezing,
    forward_layers,
    frozen_fraction,
    frozen_layers,
    train_work,
)
from raypkg.methods.sparse.dst import SparseTraining
from raypkg.models import build_model

TINY = dict(dataset="digits", model="mlp", epochs=3, progress=False, drop_last=False)  # every example: the closed forms count 1347 an epoch
MLP_LAYER_FLOPS = (2 * 64 * 300, 2 * 300 * 10)  # digits' 64 features -> 300 -> 10 classes


def rows(result, drop=("frozen_layers",)) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in CLOCK_COLUMNS + drop} for row in result.summary["rows"]]


def small_net() -> nn.Module:
    """Three layers: [Linear + its batch norm], [Linear], [head]."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 10))


def engine_config(epochs: int = 4) -> TrainConfig:
    return TrainConfig(precision="fp32", memory_format="contiguous", epochs=epochs, progress=False).validate()


def test_the_schedule_is_composers_closed_form():
    """f(t) = 0 up to start, then level (t - start) / (1 - start), t = epoch / epochs; k = floor(f L)."""
    assert [frozen_layers(e, 10, 0.5, 1.0, 20) for e in range(10)] == [0, 0, 0, 0, 0, 0, 4, 8, 12, 16]
    assert [frozen_layers(e, 10, 0.5, 0.5, 20) for e in range(10)] == [0, 0, 0, 0, 0, 0, 2, 4, 6, 8]
    assert [frozen_layers(e, 4, 0.0, 1.0, 3) for e in range(4)] == [0, 0, 1, 2]
    assert frozen_layers(7, 10, 0.5, 1.0, 10) == 4  # (0.7 - 0.5) / 0.5 x 10 = 3.9999... in floats
    assert frozen_fraction(3, 4, 0.25, 0.8) == pytest.approx(0.8 * (0.75 - 0.25) / 0.75)
    assert all(frozen_layers(e, 10, 1.0, 1.0, 20) == 0 and frozen_layers(e, 10, 0.0, 0.0, 20) == 0 for e in range(10))
    assert max(frozen_layers(e, 7, 0.0, 1.0, 5) for e in range(7)) == 4  # never every layer: the head trains


def test_layers_are_weight_layers_in_forward_order_with_their_batch_norm():
    resnet = build_model("resnet20", (64,), 10)
    layers = forward_layers(resnet, torch.zeros(1, 64))
    assert len(layers) == 20 and layers[0] == ["features.0", "features.1"] and layers[-1] == ["head"]
    assert layers[1:3] == [["features.3.conv1", "features.3.bn1"], ["features.3.conv2", "features.3.bn2"]]

    class Registered(nn.Module):  # registration order (head first) is not forward order
        def __init__(self):
            super().__init__()
            self.head, self.body, self.norm = nn.Linear(8, 2), nn.Linear(4, 8), nn.BatchNorm1d(8)

        def forward(self, x):
            return self.head(self.norm(self.body(x)))

    assert forward_layers(Registered(), torch.zeros(1, 4)) == [["body", "norm"], ["head"]]


def test_level_zero_or_start_one_is_plain_training_bit_for_bit():
    plain = raypkg.run("train", save=False, **TINY)
    for settings in ({"freeze_level": 0.0}, {"freeze_start": 1.0}):
        unfrozen = raypkg.run("layer-freezing", save=False, **settings, **TINY)
        assert rows(unfrozen) == rows(plain) and unfrozen.summary["test_acc"] == plain.summary["test_acc"]
        assert unfrozen.summary["frozen_per_epoch"] == [0, 0, 0] and unfrozen.summary["backward_share"] == 1.0
    seed_everything(0)
    net, reference = small_net(), small_net()
    fit(net, load_dataset("digits", seed=0).train, None, engine_config(), callbacks=[FreezeLayers(0.0, 0.0)])
    fit(reference, load_dataset("digits", seed=0).train, None, engine_config())
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), reference.state_dict().values()))


class Watch(Callback):
    """Each epoch: which parameters moved, their gradients, whether each layer's output needed
    a backward graph, and batch norm's running mean; after the freezing callback."""

    def __init__(self):
        self.epochs: list[dict] = []

    def on_epoch_start(self, ctx):
        self.before = {k: v.detach().clone() for k, v in ctx.model.named_parameters()}
        self.mean = ctx.model[2].running_mean.clone()
        self.graph: dict[int, bool] = {}
        self.hooks = [ctx.model[i].register_forward_hook(self.record(i)) for i in (1, 4, 6)]
        self.grads: set[str] = set()

    def record(self, index):
        def hook(module, args, output):
            self.graph[index] = output.requires_grad
        return hook

    def on_after_backward(self, ctx):
        self.grads |= {k for k, p in ctx.model.named_parameters() if p.grad is not None}

    def on_epoch_end(self, ctx, row):
        for hook in self.hooks:
            hook.remove()
        moved = {k for k, p in ctx.model.named_parameters() if not torch.equal(p, self.before[k])}
        self.epochs.append({"moved": moved, "grads": self.grads, "graph": dict(self.graph),
                            "bn_stats_moved": not torch.equal(ctx.model[2].running_mean, self.mean)})


def test_frozen_layers_stay_bit_for_bit_and_the_others_train():
    """Epochs 0-3 freeze 0, 0, 1, 2 of the 3 layers (start 0, level 1): a frozen layer's
    parameters are equal before and after its epoch (no gradient, so no weight decay or
    momentum step), its output carries no backward graph, batch norm's statistics still move."""
    data = load_dataset("digits", seed=0)
    net, freezing, watch = small_net(), FreezeLayers(0.0, 1.0), Watch()
    cfg = engine_config()
    assert cfg.momentum > 0 and cfg.weight_decay > 0  # both would move a parameter without a gradient
    fit(net, data.train, None, cfg, callbacks=[freezing, watch])
    assert freezing.frozen_per_epoch == [0, 0, 1, 2]
    layer_params = [{"1.weight", "1.bias", "2.weight", "2.bias"}, {"4.weight", "4.bias"}, {"6.weight", "6.bias"}]
    for epoch, k in enumerate(freezing.frozen_per_epoch):
        trained = set().union(*layer_params[k:])
        seen = watch.epochs[epoch]
        assert seen["moved"] == trained and seen["grads"] == trained, epoch
        assert seen["graph"] == {1: k < 1, 4: k < 2, 6: True}, epoch
        assert seen["bn_stats_moved"]
    assert all(p.requires_grad for p in net.parameters())  # the model leaves the fit as it came


def test_the_freeze_survives_a_checkpoint_and_resume():
    """Interrupted after epoch 2 (its training state saved), resumed with a fresh model and
    callback: the same weights, schedule and work counts as straight through."""
    data = load_dataset("digits", seed=0)
    straight, straight_freezing = small_net(), FreezeLayers(0.0, 1.0)
    fit(straight, data.train, None, engine_config(), callbacks=[straight_freezing])
    saved = {}

    class Interrupted(Exception):
        pass

    class StopAfterTwo(Callback):
        def on_epoch_end(self, ctx, row):
            if ctx.epoch == 2 and not saved:
                saved.update(copy.deepcopy(training_state(ctx)))
                raise Interrupted

    with pytest.raises(Interrupted):
        fit(small_net(), data.train, None, engine_config(), callbacks=[FreezeLayers(0.0, 1.0), StopAfterTwo()])
    assert saved["callbacks"][0]["frozen"] == 1
    torch.manual_seed(5)
    resumed, resumed_freezing = nn.Sequential(*small_net()), FreezeLayers(0.0, 1.0)
    for p in resumed.parameters():
        p.data.normal_()  # another init: the state replaces it
    fit(resumed, data.train, None, engine_config(), callbacks=[resumed_freezing, StopAfterTwo()], resume=saved)
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))
    assert resumed_freezing.state_dict() == straight_freezing.state_dict()
    restored = FreezeLayers(0.0, 1.0)
    restored.load_state_dict(torch.load(_saved(saved), weights_only=True)["callbacks"][0])  # plain data
    assert restored.frozen == 1 and restored.layers == straight_freezing.layers


def _saved(state: dict):
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def test_its_work_is_the_unfrozen_layers_backward_and_the_frontier_charges_it():
    """The MLP's 2 layers, 4 epochs from start 0: layer 1 frozen in epochs 2 and 3, so those
    epochs' backward is 2 x the head's forward FLOPs only."""
    result = raypkg.run("layer-freezing", save=False, freeze_start=0.0, **{**TINY, "epochs": 4})
    notes, (first, head) = result.summary, MLP_LAYER_FLOPS
    assert notes["layers"] == 2 and notes["frozen_per_epoch"] == [0, 0, 1, 1]
    assert notes["examples_seen"] == 4 * DIGITS_TRAIN
    assert notes["forward_flops"] == 4 * DIGITS_TRAIN * (first + head)
    assert notes["backward_flops"] == DIGITS_TRAIN * 2 * (2 * (first + head) + 2 * head)
    share = (2 + 2 * head / (first + head)) / 4
    assert notes["backward_share"] == pytest.approx(share, rel=1e-12)
    assert [r["frozen_layers"] for r in notes["rows"]] == [0, 0, 1, 1]
    from raypkg.recipe_registry import load_cases

    case = load_cases()["layer-freezing"]
    cfg = case.config("layer-freezing", None, {}, dict(TINY), DIGITS_TRAIN)
    seen, flops = case.examples(cfg, notes, DIGITS_TRAIN, lambda density=1.0, init="ERK": first + head)
    assert seen == 4 * DIGITS_TRAIN and flops == pytest.approx(seen * (first + head) * (1 + 2 * share) / 3)
    assert 3 * flops == pytest.approx(notes["forward_flops"] + notes["backward_flops"])
    cfg.epochs, cfg.freeze_start = 4, 0.0  # the stack's estimate: the mean frozen fraction (0 + 1/4 + 1/2 + 3/4) / 4
    estimate = LayerFreezing.stacked_flops(cfg, lambda density=1.0, init="ERK": 3.0 * density)
    assert estimate(0.5) == pytest.approx(1.5 * train_work(1 - 0.375)) and train_work(1.0) == 1.0


def test_its_command_runs_with_no_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", "layer-freezing", "--epochs", "4", "--wandb", "disabled",
                                       "--no-progress"])  # 2 epochs would freeze nothing: refused (issue 65)
    assert result.exit_code == 0, result.output
    assert "froze up to 1 of 2 layers; training work 85.6% of plain training's" in result.stdout
    assert "layer-freezing digits/mlp: test_acc" in result.stdout


def test_added_to_infobatch_it_charges_the_examples_infobatch_kept():
    alone = raypkg.run("infobatch", save=False, **TINY)
    unfrozen = raypkg.run("infobatch+layer-freezing", save=False, freeze_level=0.0, **TINY)
    assert rows(unfrozen) == rows(alone)
    stacked = raypkg.run("infobatch+layer-freezing", save=False, freeze_start=0.0, **TINY)
    notes = stacked.summary["layer-freezing"]
    assert notes["frozen_per_epoch"] == [0, 0, 1] and notes["examples_seen"] == sum(stacked.summary["kept_per_epoch"])
    assert notes["backward_share"] < 1.0


def test_with_sparse_masks_a_frozen_layer_keeps_its_weights_and_its_mask():
    """RigL's updates leave a frozen layer's mask alone (its weights cannot regrow), its
    masked weights stay 0, and the unfrozen layers' masks still change."""
    data = load_dataset("digits", seed=0)

    class Masks(Callback):
        def __init__(self, dst):
            self.dst, self.epochs = dst, []

        def on_epoch_start(self, ctx):
            self.start = {k: m.clone() for k, m in self.dst.masks.items()}

        def on_epoch_end(self, ctx, row):
            self.epochs.append({k for k, m in self.dst.masks.items() if not torch.equal(m, self.start[k])})

    net, dst, freezing = small_net(), SparseTraining(0.3, "ERK", seed=1, growth="gradient", update_frequency=3), \
        FreezeLayers(0.0, 1.0)
    masks, watch = Masks(dst), Watch()
    fit(net, data.train, None, engine_config(), callbacks=[freezing, dst, masks, watch])
    assert freezing.frozen_per_epoch == [0, 0, 1, 2]
    assert masks.epochs[1] == {"1.weight", "4.weight", "6.weight"} and masks.epochs[3] == {"6.weight"}
    assert watch.epochs[3]["moved"] == {"6.weight", "6.bias"}
    for name, mask in dst.masks.items():
        assert torch.all(dict(net.named_parameters())[name][~mask] == 0), name
    stacked = raypkg.run("sparse+layer-freezing", save=False, freeze_start=0.0, update_frequency=5, **TINY)
    assert stacked.summary["layer-freezing"]["frozen_per_epoch"] == [0, 0, 1] and stacked.summary["density"] < 0.1
