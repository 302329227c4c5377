"""The model registry: every name builds for every input kind, keeps the feature/head
split, and the CIFAR networks have the published sizes. CPU only, no Ray."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import raypkg.models.zoo  # noqa: F401  (registers the builders)
from raypkg.errors import UsageError
from raypkg.models import MODELS, build_model
from raypkg.models.zoo.resnet_cifar import BasicBlock, OptionAShortcut

EXPECTED = {
    "logreg", "mlp", "lenet300-100", "lenet5", "resnet20", "resnet32", "resnet56",
    "resnet18", "resnet34", "wrn-16-8", "wrn-22-8", "wrn-28-2", "vgg-c", "resnet50",
}
FULLY_CONNECTED = {"logreg", "mlp", "lenet300-100"}
CONV = sorted(EXPECTED - FULLY_CONNECTED)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def batch(shape, size=2, seed=0):
    return torch.randn(size, *shape, generator=torch.Generator().manual_seed(seed))


def test_registry_holds_every_model_with_a_description():
    assert EXPECTED <= set(MODELS)
    for entry in MODELS.values():
        assert entry.description.strip()


def check_split(model, x, num_classes):
    """forward == forward_head(forward_features), with the advertised shapes."""
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    assert isinstance(model.head, nn.Linear)
    assert model.feature_dim == model.head.in_features
    assert model.head.out_features == num_classes
    assert features.shape == (x.shape[0], model.feature_dim)
    assert logits.shape == (x.shape[0], num_classes)
    assert torch.isfinite(logits).all()
    assert torch.equal(logits, model.forward_head(features))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_digits_images_and_flat_features(name):
    """1x8x8 digits and the same digits as 64 flat features give the same architecture."""
    image = build_model(name, (1, 8, 8), 10)
    flat = build_model(name, (64,), 10)
    assert n_params(image) == n_params(flat)
    x = batch((1, 8, 8))
    check_split(image, x, 10)
    flat.load_state_dict(image.state_dict())
    flat.eval()
    with torch.no_grad():
        assert torch.equal(flat(x.reshape(2, 64)), image(x))
    # Gradients reach the first layer through the features (nothing detached).
    image.train()
    image(x).logsumexp(1).sum().backward()
    first = next(p for p in image.parameters() if p.dim() > 1)
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cifar_shape_and_many_classes(name):
    check_split(build_model(name, (3, 32, 32), 100), batch((3, 32, 32)), 100)


@pytest.mark.parametrize("name, shape", [
    ("lenet5", (1, 28, 28)), ("vgg-c", (1, 28, 28)), ("lenet5", (784,)),
    ("resnet20", (3, 7, 7)), ("lenet5", (3, 224, 224)), ("resnet50", (1, 224, 224)),
])
def test_other_image_sizes(name, shape):
    model = build_model(name, shape, 10)
    check_split(model, batch(shape, size=1 if name == "resnet50" else 2), 10)


@pytest.mark.parametrize("name, published", [
    ("resnet20", 0.27e6), ("resnet56", 0.85e6),  # He et al. 2016, Table 6
    ("resnet18", 11.17e6),  # CIFAR-style ResNet-18, 10 classes
    ("wrn-28-2", 1.47e6),  # Zagoruyko & Komodakis 2016 (1.5M; 1.47M exactly)
])
def test_parameter_counts_match_published(name, published):
    count = n_params(build_model(name, (3, 32, 32), 10))
    assert abs(count - published) / published < 0.02, count


def test_lenet5_is_the_classic_network_on_32x32():
    # C1 156 + C3 2,416 + F5 48,120 + F6 10,164 + output 850 (LeCun et al. 1998).
    assert n_params(build_model("lenet5", (1, 32, 32), 10)) == 61_706
    assert n_params(build_model("lenet5", (1, 28, 28), 10)) == 61_706


def test_option_a_shortcut_is_parameter_free_subsampling_plus_zeros():
    model = build_model("resnet20", (3, 32, 32), 10)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 9
    shortcuts = [b.shortcut for b in blocks if isinstance(b.shortcut, OptionAShortcut)]
    assert len(shortcuts) == 2  # entering the 32- and 64-map stages
    assert all(n_params(s) == 0 for s in shortcuts)
    # Every conv is 3x3: no projection anywhere.
    assert all(m.kernel_size == (3, 3) for m in model.modules() if isinstance(m, nn.Conv2d))
    x = batch((16, 9, 9))
    out = shortcuts[0](x)
    assert out.shape == (2, 32, 5, 5)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])
    assert torch.equal(out[:, 16:], torch.zeros(2, 16, 5, 5))


def test_convolutions_have_kaiming_init():
    model = build_model("resnet18", (3, 32, 32), 10)
    conv = model.features[-3].conv2  # last block: 512 -> 512, 3x3
    fan_out = conv.out_channels * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.02)


def test_resnet50_stem_depends_on_image_size():
    small = build_model("resnet50", (3, 32, 32), 10)
    assert small.features[0].kernel_size == (3, 3) and small.features[0].stride == (1, 1)
    assert isinstance(small.features[3], nn.Identity)
    large = build_model("resnet50", (1, 224, 224), 10)
    assert large.features[0].kernel_size == (7, 7) and large.features[0].in_channels == 1
    assert isinstance(large.features[3], nn.MaxPool2d)
    assert large.feature_dim == 2048
    assert "3x3" in MODELS["resnet50"].description


def test_wide_resnet_dropout_is_off_by_default_and_configurable():
    assert all(block.dropout == 0.0 for block in build_model("wrn-28-2", (64,), 10).features[1:-4])
    model = build_model("wrn-28-2", (64,), 10, dropout=0.3)
    assert all(block.dropout == 0.3 for block in model.features[1:-4])
    with pytest.raises(UsageError, match="dropout"):
        build_model("wrn-28-2", (64,), 10, dropout=1.5)


def test_unknown_model_names_the_allowed_ones():
    with pytest.raises(UsageError) as err:
        build_model("resnet19", (3, 32, 32), 10)
    message = str(err.value)
    assert "resnet19" in message
    for name in EXPECTED:
        assert name in message


@pytest.mark.parametrize("name", CONV)
@pytest.mark.parametrize("shape", [(65,), (2, 3, 8, 8), (3072,)])
def test_conv_models_refuse_shapes_they_cannot_view_as_images(name, shape):
    with pytest.raises(UsageError) as err:
        build_model(name, shape, 10)
    assert name in str(err.value) and str(shape) in str(err.value)


@pytest.mark.parametrize("name", sorted(FULLY_CONNECTED))
def test_fully_connected_models_take_any_flat_size(name):
    check_split(build_model(name, (65,), 3), batch((65,)), 3)


def test_a_model_trains_at_its_own_default_learning_rate_unless_one_is_given(tmp_path):
    """raypkg.models.defaults: every model it names is registered; a run with no --lr takes
    the model's rate (LeNet-5's 0.03), records it in config.yaml, and that file re-runs it."""
    from raypkg.config import resolve_config
    from raypkg.engine.config import TrainConfig
    from raypkg.models.defaults import DEFAULT_LR, MODEL_LR

    assert set(MODEL_LR) <= set(MODELS) and DEFAULT_LR not in MODEL_LR.values()
    assert TrainConfig(model="lenet5").lr == [MODEL_LR["lenet5"]] and TrainConfig().lr == [DEFAULT_LR]
    assert TrainConfig(model="lenet5", lr=[0.2]).lr == [0.2]
    assert resolve_config(TrainConfig, None, model="lenet5").lr == [MODEL_LR["lenet5"]]
    recorded = tmp_path / "config.yaml"  # what a run writes: the resolved config, lr included
    recorded.write_text(f"model: lenet5\nlr: {MODEL_LR['lenet5']}\n")
    assert resolve_config(TrainConfig, str(recorded), model="mlp").lr == [MODEL_LR["lenet5"]]  # the file's rate
