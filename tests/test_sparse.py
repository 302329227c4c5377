"""Sparse training: ERK masks, masks kept exactly, prune/regrow, RigL, AGC, Ray Train ranks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from raypkg.data import load_dataset
from raypkg.engine.config import TrainConfig
from raypkg.engine.loop import fit, seed_everything
from raypkg.models import build_model
from raypkg.sparse.masks import (StaticMask, erk_densities, layer_densities, maskable_parameters,
                                 random_masks)


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc1 = nn.Linear(4 * 6 * 6, 64)
        self.ln = nn.LayerNorm(64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x))).flatten(1)
        return self.fc2(torch.relu(self.ln(self.fc1(x))))


def test_maskable_parameters_skip_biases_and_norms():
    assert list(maskable_parameters(ConvNet())) == ["conv.weight", "fc1.weight", "fc2.weight"]


@pytest.mark.parametrize("density", [0.1, 0.3])
def test_erk_overall_density_and_saturated_layers_dense(density):
    model = ConvNet()
    params = maskable_parameters(model)
    dens = erk_densities(model, density)
    total = sum(p.numel() for p in params.values())
    # the small conv (score 11/36) saturates at these densities (eps*score > 1) and is dense
    assert dens["conv.weight"] == 1.0
    assert all(0 < d <= 1 for d in dens.values())
    masks = random_masks(model, density, "ERK", torch.Generator().manual_seed(0))
    on = sum(int(m.sum()) for m in masks.values())
    assert abs(on - density * total) <= len(masks)  # within one weight per layer
    for name, m in masks.items():
        assert int(m.sum()) == round(dens[name] * m.numel())
    # the other layers keep d_l = eps * score_l with one eps, and eps * score_l > 1 for dense ones
    score = {name: sum(p.shape) / p.numel() for name, p in params.items()}
    eps = {dens[name] / score[name] for name in params if dens[name] < 1}
    assert len(eps) == 1 or max(eps) - min(eps) < 1e-9 * max(eps)
    assert all(next(iter(eps)) * score[name] > 1 for name in params if dens[name] == 1)
    uniform = layer_densities(model, density, "uniform")
    assert set(uniform.values()) == {density}


def _fit_digits(callbacks, epochs=2, model_name="mlp", seed=0, **cfg_kw):
    data = load_dataset("digits", seed=0)
    cfg = TrainConfig(epochs=epochs, seed=seed, progress=False, nesterov=True, **cfg_kw).validate()
    seed_everything(seed)
    model = build_model(model_name, data.input_shape, data.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    rows = fit(model, data.train, data.test, cfg, callbacks=callbacks, optimizer=optimizer, progress=False)
    return model, optimizer, rows


def _assert_masked_exactly(model, optimizer, masks):
    params = maskable_parameters(model)
    for name, mask in masks.items():
        p = params[name]
        assert torch.all(p[~mask] == 0), name
        assert torch.all(optimizer.state[p]["momentum_buffer"][~mask] == 0), name


def test_static_mask_keeps_weights_and_momentum_zero():
    cb = StaticMask(0.1, "ERK", seed=3)
    model, optimizer, rows = _fit_digits([cb], epochs=2, model_name="lenet5")
    _assert_masked_exactly(model, optimizer, cb.masks)
    expected = random_masks(model, 0.1, "ERK", torch.Generator().manual_seed(3))
    assert all(torch.equal(cb.masks[k], expected[k]) for k in expected)
    total = sum(m.numel() for m in cb.masks.values())
    assert rows[-1]["density"] <= sum(int(m.sum()) for m in cb.masks.values()) / total
    assert rows[-1]["density"] > 0.05
    state = cb.state_dict()
    assert all(m.dtype == torch.bool for m in state["masks"].values())
