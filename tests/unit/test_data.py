"""Dataset registry and augmentation, without Ray.

The real loaders (mnist, fashion-mnist, cifar10, cifar100, imagefolder) are exercised on tiny files
written here in each dataset's own on-disk format, so torchvision's own readers run.
"""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import DIGITS_TRAIN, make_image_tree, write_png

from raypkg.data import DATASETS, load_dataset
from raypkg.data.augment import random_crop_flip
from raypkg.data.sources import digits_aug
from raypkg.data.sources.digits import DIGITS_TEST_FRACTION, load_digits_arrays, stratified_split
from raypkg.errors import UsageError

ALL_NAMES = {"digits", "digits-aug", "synthetic", "mnist", "fashion-mnist", "cifar10", "cifar100", "imagefolder"}


def recover_pixels(x: torch.Tensor, raw_train: np.ndarray) -> np.ndarray:
    """Undo per-channel normalisation with statistics measured independently on the raw
    uint8 train images [N, C, H, W], and round back to uint8."""
    raw = raw_train.astype(np.float64) / 255.0
    mean = raw.mean(axis=(0, 2, 3)).reshape(1, -1, 1, 1)
    std = raw.std(axis=(0, 2, 3)).reshape(1, -1, 1, 1)
    pixels = (x.double().numpy() * std + mean) * 255.0
    return np.rint(pixels).astype(np.int64)


def assert_normalised(x: torch.Tensor) -> None:
    """Train images have mean 0 and std 1 per channel."""
    channels = x.transpose(0, 1).flatten(1).double()
    torch.testing.assert_close(channels.mean(1), torch.zeros(len(channels), dtype=torch.float64),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(channels.std(1, unbiased=False), torch.ones(len(channels), dtype=torch.float64),
                               atol=1e-5, rtol=0)


def assert_indexed(splits) -> None:
    for split in (splits.train, splits.test):
        assert torch.equal(split.index, torch.arange(len(split)))


# ---------------------------------------------------------------- registry


def test_registry_lists_every_dataset_with_a_description():
    import raypkg.data.sources  # noqa: F401

    assert ALL_NAMES <= set(DATASETS)
    assert all(DATASETS[name].description for name in ALL_NAMES)


def test_unknown_dataset_is_a_usage_error_naming_the_choices():
    with pytest.raises(UsageError, match="unknown dataset 'nope'.*digits-aug"):
        load_dataset("nope")


# ---------------------------------------------------------------- digits


def test_digits_shapes_flat_and_index():
    images = load_dataset("digits")
    flat = load_dataset("digits", flat=True)
    assert images.train.x.shape == (DIGITS_TRAIN, 1, 8, 8) and images.test.x.shape == (450, 1, 8, 8)
    assert flat.train.x.shape == (DIGITS_TRAIN, 64) and flat.test.x.shape == (450, 64)
    assert torch.equal(flat.train.x, images.train.x.flatten(1))
    assert images.num_classes == 10 and not images.augmentable
    assert_indexed(images)


def test_digits_split_is_stratified_and_fixed_by_seed():
    _, labels = load_digits_arrays()
    train, test = stratified_split(labels, DIGITS_TEST_FRACTION, seed=0)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(labels)
    for c in range(10):
        n_c = int((labels == c).sum())
        assert int((labels[test] == c).sum()) == int(round(DIGITS_TEST_FRACTION * n_c))

    a, b, other = load_dataset("digits", seed=0), load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.test.x, other.test.x)
    assert torch.equal(torch.bincount(a.test.y), torch.bincount(other.test.y))  # same strata


# ---------------------------------------------------------------- digits-aug


def test_digits_aug_shapes_balance_and_determinism():
    a = load_dataset("digits-aug", train_size=205, test_size=50, seed=3)
    assert a.train.x.shape == (205, 1, 28, 28) and a.test.x.shape == (50, 1, 28, 28)
    assert a.train.x.dtype == torch.float32 and a.num_classes == 10
    counts = torch.bincount(a.train.y, minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 205
    assert torch.equal(torch.bincount(a.test.y, minlength=10), torch.full((10,), 5))
    assert_indexed(a)
    assert_normalised(a.train.x)

    b = load_dataset("digits-aug", train_size=205, test_size=50, seed=3)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.x, b.test.x)
    assert torch.equal(a.train.y, b.train.y)
    other = load_dataset("digits-aug", train_size=205, test_size=50, seed=4)
    assert not torch.equal(a.train.x, other.train.x)

    tiny = load_dataset("digits-aug", train_size=3, test_size=1)
    assert len(set(tiny.train.y.tolist())) == 3 and len(tiny.test) == 1

    flat = load_dataset("digits-aug", train_size=205, test_size=50, seed=3, flat=True)
    assert flat.train.x.shape == (205, 784)
    assert torch.equal(flat.train.x, a.train.x.flatten(1))


def test_digits_aug_train_and_test_come_from_disjoint_source_digits():
    _, labels = load_digits_arrays()
    train_pool, test_pool = stratified_split(labels, DIGITS_TEST_FRACTION, seed=0)
    gen = torch.Generator().manual_seed(0)
    y_train, src_train = digits_aug.balanced_sources(labels, train_pool, 3000, gen)
    y_test, src_test = digits_aug.balanced_sources(labels, test_pool, 1000, gen)
    assert set(src_train.tolist()) == set(train_pool.tolist())  # every train digit used
    assert set(src_test.tolist()) <= set(test_pool.tolist())
    assert not set(src_train.tolist()) & set(src_test.tolist())
    assert torch.equal(torch.from_numpy(labels)[src_train], y_train)
    assert torch.equal(torch.from_numpy(labels)[src_test], y_test)
    uses = torch.bincount(src_train)[torch.from_numpy(train_pool)]
    for c in range(10):  # each digit of a class is used equally often, up to one
        in_class = uses[torch.from_numpy(labels[train_pool] == c)]
        assert in_class.max() - in_class.min() <= 1


def test_digits_aug_sampling_grid_is_affine_grid():
    theta = digits_aug.sampling_maps(50, torch.Generator().manual_seed(0))
    expected = F.affine_grid(theta, [50, 1, 28, 28], align_corners=False)
    torch.testing.assert_close(digits_aug.sampling_grid(theta), expected, atol=1e-5, rtol=0)


def test_digits_aug_places_digits_in_the_mnist_20x20_box(monkeypatch):
    """With every distortion and the noise switched off, a generated image is the 8x8
    digit stretched bilinearly over the central 20x20 box of the 28x28 canvas."""
    for name, value in [("MAX_ROTATION_DEG", 0.0), ("SCALE_RANGE", (1.0, 1.0)), ("MAX_SHEAR", 0.0),
                        ("MAX_SHIFT_PX", 0.0), ("NOISE_STD", 0.0)]:
        monkeypatch.setattr(digits_aug, name, value)
    images, labels = load_digits_arrays()
    source = torch.from_numpy(images).unsqueeze(1)
    pool = np.arange(len(labels))
    x, y = digits_aug.generate(source, 40, labels, pool, torch.Generator().manual_seed(0))
    _, src = digits_aug.balanced_sources(labels, pool, 40, torch.Generator().manual_seed(0))
    box = F.interpolate(source[src], size=(20, 20), mode="bilinear", align_corners=False)
    # Inside the box (away from its 1-pixel rim, where zero padding enters) the two agree.
    torch.testing.assert_close(x[:, :, 5:23, 5:23], box[:, :, 1:19, 1:19], atol=1e-5, rtol=0)
    assert torch.equal(y, torch.from_numpy(labels)[src])
    assert x[:, :, :3].abs().max() == 0 and x[:, :, 25:].abs().max() == 0
    assert x[:, :, :, :3].abs().max() == 0 and x[:, :, :, 25:].abs().max() == 0


def test_digits_aug_distorts_each_copy_differently():
    images, labels = load_digits_arrays()
    source = torch.from_numpy(images).unsqueeze(1)
    pool = np.array([0])  # one source digit: every image is a different distortion of it
    x, _ = digits_aug.generate(source, 8, labels, pool, torch.Generator().manual_seed(0))
    flat = x.flatten(1)
    distances = torch.cdist(flat, flat)
    assert distances[~torch.eye(8, dtype=torch.bool)].min() > 1.0


# ---------------------------------------------------------------- synthetic


def test_synthetic_shapes_balance_determinism():
    a = load_dataset("synthetic", train_size=120, test_size=30, num_classes=3, shape=(2, 6, 5), seed=1)
    assert a.train.x.shape == (120, 2, 6, 5) and a.test.x.shape == (30, 2, 6, 5)
    assert a.num_classes == 3
    assert torch.equal(torch.bincount(a.train.y), torch.full((3,), 40))
    assert torch.equal(torch.bincount(a.test.y), torch.full((3,), 10))
    assert_indexed(a)
    b = load_dataset("synthetic", train_size=120, test_size=30, num_classes=3, shape=(2, 6, 5), seed=1)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x, load_dataset("synthetic", train_size=120, test_size=30, num_classes=3,
                                                    shape=(2, 6, 5), seed=2).train.x)
    flat = load_dataset("synthetic", train_size=120, test_size=30, num_classes=3, shape=(2, 6, 5), seed=1,
                        flat=True)
    assert torch.equal(flat.train.x, a.train.x.flatten(1))
    features = load_dataset("synthetic", train_size=50, test_size=10, shape=(7,))
    assert features.train.x.shape == (50, 7) and features.num_classes == 10
    assert load_dataset("synthetic", train_size=4, test_size=2, shape="2x3x3").input_shape == (2, 3, 3)
    assert load_dataset("synthetic", train_size=4, test_size=2, shape="5").input_shape == (5,)


def test_synthetic_is_learnable_by_nearest_class_mean():
    data = load_dataset("synthetic", train_size=400, test_size=200, num_classes=4, shape=(16,))
    means = torch.stack([data.train.x[data.train.y == c].mean(0) for c in range(4)])
    predicted = torch.cdist(data.test.x, means).argmin(1)
    assert (predicted == data.test.y).float().mean() > 0.9


@pytest.mark.parametrize("options", [dict(shape=(3, 4)), dict(shape=(0,)), dict(shape="3xa"),
                                     dict(num_classes=1), dict(train_size=0), dict(test_size=2.5)])
def test_synthetic_rejects_bad_options(options):
    with pytest.raises(UsageError, match="synthetic"):
        load_dataset("synthetic", **options)


# ---------------------------------------------------------------- mnist (idx files)


def write_idx_images(path, images: np.ndarray) -> None:
    with open(path, "wb") as f:  # magic 2051 = ubyte (0x08), 3 dimensions; sizes big-endian
        f.write(struct.pack(">IIII", 2051, *images.shape))
        f.write(images.astype(np.uint8).tobytes())


def write_idx_labels(path, labels: np.ndarray) -> None:
    with open(path, "wb") as f:  # magic 2049 = ubyte, 1 dimension
        f.write(struct.pack(">II", 2049, len(labels)))
        f.write(labels.astype(np.uint8).tobytes())


def write_idx_set(folder, suffix: str = "", compress=None, seed: int = 0) -> dict:
    """MNIST's four idx files (train 12 images, test 5) in ``folder``, each name ending in
    ``suffix`` and written through ``compress`` (e.g. ``gzip.open``; plain files without);
    the arrays written, by split."""
    rng = np.random.default_rng(seed)
    arrays = {"train": (rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), rng.integers(0, 10, 12).astype(np.uint8)),
              "t10k": (rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), rng.integers(0, 10, 5).astype(np.uint8))}
    folder.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in arrays.items():
        write_idx_images(folder / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx_labels(folder / f"{split}-labels-idx1-ubyte{suffix}", labels)
        if compress is not None:
            for kind in ("images-idx3", "labels-idx1"):
                path = folder / f"{split}-{kind}-ubyte{suffix}"
                raw = path.read_bytes()
                with compress(path, "wb") as f:
                    f.write(raw)
    return arrays


def assert_idx_set(data, arrays: dict) -> None:
    """``data`` holds exactly the images and labels ``write_idx_set`` wrote, normalised."""
    (train_images, train_labels), (test_images, test_labels) = arrays["train"], arrays["t10k"]
    assert data.train.x.shape == (12, 1, 28, 28) and data.test.x.shape == (5, 1, 28, 28) and data.num_classes == 10
    assert torch.equal(data.train.y, torch.from_numpy(train_labels).long())
    assert torch.equal(data.test.y, torch.from_numpy(test_labels).long())
    np.testing.assert_array_equal(recover_pixels(data.train.x, train_images[:, None]), train_images[:, None])
    np.testing.assert_array_equal(recover_pixels(data.test.x, train_images[:, None]), test_images[:, None])
    assert_normalised(data.train.x)
    assert_indexed(data)


def test_mnist_reads_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    arrays = write_idx_set(raw)
    data = load_dataset("mnist", data_dir=str(tmp_path))
    assert_idx_set(data, arrays)
    assert not data.augmentable
    assert load_dataset("mnist", data_dir=tmp_path, flat=True).train.x.shape == (12, 784)

    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UsageError, match=f"{tmp_path}.*--download"):
        load_dataset("mnist", data_dir=str(tmp_path))


def test_fashion_mnist_reads_debian_gzipped_files_without_data_dir(tmp_path, monkeypatch):
    """No --data-dir: Debian's dataset-fashion-mnist files (gzipped idx) where they are
    installed; a missing or corrupt one is one line that says how to get the data."""
    import gzip

    from raypkg.data.sources import fashion_mnist

    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian")
    arrays = write_idx_set(tmp_path / "debian", ".gz", gzip.open)
    data = load_dataset("fashion-mnist")
    assert_idx_set(data, arrays)
    assert data.name == "fashion-mnist" and not data.augmentable
    raw = load_dataset("fashion-mnist", normalize=False, flat=True)
    assert torch.equal(raw.train.x, torch.from_numpy(arrays["train"][0]).reshape(12, -1).float() / 255)

    (tmp_path / "debian" / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not gzip")
    with pytest.raises(UsageError, match="t10k-images-idx3-ubyte.gz is a damaged or truncated gzip file: .*"
                                         "`apt-get --reinstall install dataset-fashion-mnist`") as err:
        load_dataset("fashion-mnist")
    assert "\n" not in str(err.value)
    (tmp_path / "debian" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(UsageError, match="not found: `apt-get install dataset-fashion-mnist`.*--data-dir") as err:
        load_dataset("fashion-mnist")
    assert "\n" not in str(err.value)


def test_fashion_mnist_reads_torchvision_layout_under_data_dir(tmp_path, monkeypatch):
    """--data-dir: torchvision's FashionMNIST/raw/ files, never the Debian ones; files
    missing there are one line naming the directory, --download and the Debian package."""
    from raypkg.data.sources import fashion_mnist

    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "nowhere")
    arrays = write_idx_set(tmp_path / "FashionMNIST" / "raw", seed=1)
    assert_idx_set(load_dataset("fashion-mnist", data_dir=str(tmp_path)), arrays)
    (tmp_path / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(UsageError, match=f"{tmp_path}.*--download.*apt-get install dataset-fashion-mnist") as err:
        load_dataset("fashion-mnist", data_dir=str(tmp_path))
    assert "\n" not in str(err.value)


def test_stratified_sample_keeps_each_class_share_by_largest_remainders():
    """Classes of 6, 3 and 1 examples sampled to 5: shares 3, 1.5 and 0.5, so 3 + 2 + 0 (the
    first of the tied remainders, in class order); positions kept in the split's order."""
    from raypkg.data.sources.in_memory import stratified_sample

    labels = torch.tensor([0, 1, 0, 2, 0, 1, 0, 0, 1, 0])
    images = torch.arange(10.0)
    x, y = stratified_sample("toy", (images, labels), 5, seed=3, flag="train_size")
    assert torch.bincount(y, minlength=3).tolist() == [3, 2, 0]
    assert torch.equal(labels[x.long()], y) and torch.all(x[1:] > x[:-1])
    assert torch.equal(stratified_sample("toy", (images, labels), 5, seed=3, flag="train_size")[0], x)
    assert stratified_sample("toy", (images, labels), None, seed=3, flag="train_size")[0] is images
    assert stratified_sample("toy", (images, labels), 10, seed=3, flag="train_size")[0].tolist() == images.tolist()
    with pytest.raises(UsageError, match="^toy test_size 11: the split holds 10 examples; give at most that$"):
        stratified_sample("toy", (images, labels), 11, seed=3, flag="test_size")


def test_fashion_mnist_train_and_test_size_sample_each_split_by_seed(tmp_path, monkeypatch):
    """--train-size/--test-size on fashion-mnist: rows of the real files, the same for a seed and
    drawn again for another; the whole set without them."""
    import gzip

    from raypkg.data.sources import fashion_mnist

    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian")
    arrays = write_idx_set(tmp_path / "debian", ".gz", gzip.open)
    whole = load_dataset("fashion-mnist", normalize=False, flat=True)
    draws = [load_dataset("fashion-mnist", normalize=False, flat=True, train_size=6, test_size=3, seed=seed)
             for seed in (0, 0, 1, 2, 3)]
    assert (len(draws[0].train), len(draws[0].test)) == (6, 3)
    rows = {tuple(row.tolist()): i for i, row in enumerate(whole.train.x)}
    picked = [rows[tuple(row.tolist())] for row in draws[0].train.x]
    assert picked == sorted(picked) and torch.equal(draws[0].train.y, whole.train.y[picked])
    assert torch.equal(draws[0].train.x, draws[1].train.x) and torch.equal(draws[0].test.x, draws[1].test.x)
    assert any(not torch.equal(draws[0].train.x, other.train.x) for other in draws[2:])
    assert len(load_dataset("fashion-mnist").train) == len(arrays["train"][1])
    with pytest.raises(UsageError, match="fashion-mnist train_size 13: the split holds 12 examples"):
        load_dataset("fashion-mnist", train_size=13)


def test_write_mnist_gives_torchvision_the_generated_set_as_bytes(tmp_path):
    """`effray write-mnist`: torchvision's MNIST reader reads back digits-aug's images as the
    bytes round(255 x) and its labels, train and test; a second write into the folder is refused."""
    from raypkg.data.sources.mnist import export_mnist

    line = export_mnist("digits-aug", tmp_path, 40, 10, seed=3)
    assert line == f"wrote 40 / 10 digits-aug images (train / test) to {tmp_path / 'MNIST' / 'raw'}"
    source = load_dataset("digits-aug", train_size=40, test_size=10, seed=3, normalize=False)
    read = load_dataset("mnist", data_dir=tmp_path, normalize=False)
    for written, back in ((source.train, read.train), (source.test, read.test)):
        assert torch.equal(back.y, written.y)
        assert torch.equal(back.x, (written.x * 255).round() / 255)
    with pytest.raises(UsageError, match="exists"):
        export_mnist("digits-aug", tmp_path, 40, 10, seed=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MNIST"]  # no hidden folder left behind


def cut(path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def swap(a, b) -> None:
    data = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(data)


# issue 72: every way a set of idx files in torchvision's layout failed in the new-user trial (a bare
# AssertionError or ValueError, an IndexError mid-run, a matrix multiply, or nothing at all): the damage
# done to a good set in raw/, and what the one line says. The Debian reader shares the checks.
TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES = "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"
IDX_DAMAGE = {
    "counts": (lambda raw: write_idx_labels(raw / TRAIN_LABELS, np.zeros(11)),
               "holds 12 images and {raw}/train-labels-idx1-ubyte 11 labels"),
    "label range": (lambda raw: write_idx_labels(raw / TRAIN_LABELS, np.full(12, 12)),
                    "holds label 12: labels must be in 0..9"),
    "truncated": (lambda raw: cut(raw / TRAIN_IMAGES, 500), "holds 484 bytes after its header where its shape "
                                                            "[12, 28, 28] needs 9,408: truncated or damaged"),
    "truncated header": (lambda raw: cut(raw / TRAIN_IMAGES, 10), "is truncated inside its header"),
    "empty": (lambda raw: cut(raw / TEST_IMAGES, 0), "t10k-images-idx3-ubyte is empty"),
    "magic": (lambda raw: (raw / TRAIN_IMAGES).write_bytes(b"\x01\x02" + (raw / TRAIN_IMAGES).read_bytes()[2:]),
              "is not an idx file (it does not start with two zero bytes)"),
    "type code": (lambda raw: (raw / TRAIN_IMAGES).write_bytes(b"\0\0\x0d" + (raw / TRAIN_IMAGES).read_bytes()[3:]),
                  "holds type code 0x0d, not 0x08"),
    "swapped": (lambda raw: swap(raw / TRAIN_IMAGES, raw / TRAIN_LABELS),
                "train-images-idx3-ubyte has 1 dimension(s) where images have 3: are the image and label files "
                "swapped?"),
    "zero count": (lambda raw: (write_idx_images(raw / TEST_IMAGES, np.zeros((0, 28, 28))),
                                write_idx_labels(raw / "t10k-labels-idx1-ubyte", np.zeros(0))),
                   "t10k-images-idx3-ubyte holds no examples (shape [0, 28, 28])"),
    "shapes": (lambda raw: write_idx_images(raw / TEST_IMAGES, np.zeros((5, 32, 32))),
               "holds 28x28 images and {raw}/t10k-images-idx3-ubyte 32x32: train and test images must have one "
               "shape"),
    "bad gzip": (lambda raw: (raw / TRAIN_IMAGES).write_bytes(__import__("gzip").compress(
        (raw / TRAIN_IMAGES).read_bytes())[:300]),
                 "is a damaged or truncated gzip file"),
}


@pytest.mark.parametrize("dataset, folder", [("fashion-mnist", "FashionMNIST"), ("mnist", "MNIST")])
@pytest.mark.parametrize("case", IDX_DAMAGE)
def test_damaged_idx_files_are_one_line_naming_the_file(tmp_path, dataset, folder, case):
    raw = tmp_path / folder / "raw"
    write_idx_set(raw)
    damage, says = IDX_DAMAGE[case]
    damage(raw)
    with pytest.raises(UsageError) as err:
        load_dataset(dataset, data_dir=str(tmp_path), train_size=10 if dataset == "fashion-mnist" else None)
    line = str(err.value)
    assert says.format(raw=raw) in line and "\n" not in line, line
    assert "--download" in line  # what mends it: a good copy, or a fresh download
    with pytest.raises(UsageError) as err:  # with --download the file is there: read, not fetched again
        load_dataset(dataset, data_dir=str(tmp_path), download=True)
    assert says.format(raw=raw) in str(err.value) and "could not download" not in str(err.value)


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_gzipped_or_gzip_named_idx_files_read_as_what_they_hold(tmp_path, suffix):
    """torchvision's layout as downloaded (NAME.gz beside or instead of NAME) is read, gzipped or
    not, whatever its name says: a raw file named .gz, a gzipped file without .gz."""
    import gzip

    raw = tmp_path / "MNIST" / "raw"
    arrays = write_idx_set(raw, suffix, gzip.open if suffix == "" else None)
    assert_idx_set(load_dataset("mnist", data_dir=str(tmp_path)), arrays)


def test_the_debian_reader_makes_the_same_checks(tmp_path, monkeypatch):
    import gzip

    from raypkg.data.sources import fashion_mnist

    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path)
    write_idx_set(tmp_path, ".gz", gzip.open)
    labels = struct.pack(">II", 2049, 12) + bytes([12] * 12)  # label 12 of 10 classes
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    with pytest.raises(UsageError) as err:
        load_dataset("fashion-mnist")
    assert "train-labels-idx1-ubyte.gz holds label 12: labels must be in 0..9" in str(err.value)
    assert "apt-get install dataset" not in str(err.value)  # it is installed: reinstall it
    assert "`apt-get --reinstall install dataset-fashion-mnist`" in str(err.value)


def test_with_the_debian_package_installed_no_refusal_says_to_install_it(tmp_path, monkeypatch):
    import gzip

    from raypkg.data.sources import fashion_mnist

    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian")
    write_idx_set(tmp_path / "debian", ".gz", gzip.open)
    with pytest.raises(UsageError) as err:
        load_dataset("fashion-mnist", data_dir=str(tmp_path))
    line = str(err.value)
    assert "apt-get install" not in line and "leave out --data-dir to read the installed dataset-fashion-mnist " \
                                             f"files in {tmp_path / 'debian'}" in line, line


def test_download_into_a_new_data_dir_fetches_or_says_why_not(tmp_path, monkeypatch):
    """--download into a --data-dir that does not exist yet is a download (here refused: no
    network), not "does not exist"; the folders it made are removed."""
    from urllib.error import URLError

    from click.testing import CliRunner

    from raypkg.cli import main

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", offline)
    monkeypatch.chdir(tmp_path)
    for dataset in ("mnist", "fashion-mnist"):
        result = CliRunner().invoke(main, ["train", "--dataset", dataset, "--data-dir", "new/data", "--download",
                                           "--out", "runs", "--wandb", "disabled"])
        assert result.exit_code == 2 and result.stderr.startswith("error: could not download"), result.output
        assert "does not exist" not in result.stderr and len(result.stderr.splitlines()) == 1
        assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- cifar (python batches)


@pytest.fixture
def cifar_files_present(monkeypatch):
    """torchvision checks each CIFAR file's md5 against the real release; tiny files
    cannot match, so only the checksum is skipped: a file must still exist to pass."""
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def write_pickle(path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def cifar_rows(rng, n) -> np.ndarray:
    """n images as the CIFAR release stores them: uint8 rows of 3072 = R, G, B planes of 32x32."""
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


def test_cifar10_reads_python_batches(tmp_path, cifar_files_present):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rows, labels = [], []
    for b in range(1, 6):
        r, y = cifar_rows(rng, 3), rng.integers(0, 10, 3).tolist()
        write_pickle(folder / f"data_batch_{b}", {"batch_label": f"batch {b}", "data": r, "labels": y})
        rows.append(r)
        labels += y
    test_rows, test_labels = cifar_rows(rng, 4), rng.integers(0, 10, 4).tolist()
    write_pickle(folder / "test_batch", {"data": test_rows, "labels": test_labels})
    write_pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})

    data = load_dataset("cifar10", data_dir=str(tmp_path))
    train_images = np.concatenate(rows).reshape(-1, 3, 32, 32)
    assert data.train.x.shape == (15, 3, 32, 32) and data.test.x.shape == (4, 3, 32, 32)
    assert data.num_classes == 10 and data.augmentable and data.crop_padding == 4
    assert data.train.y.tolist() == labels and data.test.y.tolist() == test_labels
    np.testing.assert_array_equal(recover_pixels(data.train.x, train_images), train_images)
    np.testing.assert_array_equal(recover_pixels(data.test.x, train_images),
                                  test_rows.reshape(-1, 3, 32, 32))
    assert_normalised(data.train.x)
    assert_indexed(data)

    (folder / "data_batch_3").unlink()
    with pytest.raises(UsageError, match=f"{tmp_path}.*--download"):
        load_dataset("cifar10", data_dir=str(tmp_path))


def test_cifar100_reads_python_files_with_fine_labels(tmp_path, cifar_files_present):
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    train_rows, fine = cifar_rows(rng, 6), rng.integers(0, 100, 6).tolist()
    test_rows, test_fine = cifar_rows(rng, 3), rng.integers(0, 100, 3).tolist()
    write_pickle(folder / "train", {"data": train_rows, "fine_labels": fine,
                                    "coarse_labels": [f // 5 for f in fine]})
    write_pickle(folder / "test", {"data": test_rows, "fine_labels": test_fine,
                                   "coarse_labels": [f // 5 for f in test_fine]})
    write_pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                                   "coarse_label_names": [f"c{i}" for i in range(20)]})

    data = load_dataset("cifar100", data_dir=str(tmp_path))
    assert data.num_classes == 100 and data.augmentable
    assert data.train.y.tolist() == fine and data.test.y.tolist() == test_fine
    train_images = train_rows.reshape(-1, 3, 32, 32)
    np.testing.assert_array_equal(recover_pixels(data.train.x, train_images), train_images)
    np.testing.assert_array_equal(recover_pixels(data.test.x, train_images), test_rows.reshape(-1, 3, 32, 32))
    flat = load_dataset("cifar100", data_dir=str(tmp_path), flat=True)
    assert flat.train.x.shape == (6, 3072) and not flat.augmentable


# ---------------------------------------------------------------- imagefolder (class folders)


def test_imagefolder_reads_class_folders(tmp_path):
    rng = np.random.default_rng(3)
    train = make_image_tree(tmp_path, rng, "train", {"ant": 3, "bee": 2, "cat": 4})
    val = make_image_tree(tmp_path, rng, "val", {"bee": 2, "cat": 1})  # no "ant": numbering must hold

    data = load_dataset("imagefolder", data_dir=str(tmp_path), image_size=8)
    assert data.train.x.shape == (9, 3, 8, 8) and data.test.x.shape == (3, 3, 8, 8)
    assert data.num_classes == 3 and data.augmentable
    # ImageFolder order: classes sorted by name, files sorted within a class.
    train_images = np.stack([train[p] for p in sorted(train)])
    assert data.train.y.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert data.test.y.tolist() == [1, 1, 2]
    np.testing.assert_array_equal(recover_pixels(data.train.x, train_images), train_images)
    np.testing.assert_array_equal(recover_pixels(data.test.x, train_images),
                                  np.stack([val[p] for p in sorted(val)]))
    assert_indexed(data)

    smaller = load_dataset("imagefolder", data_dir=tmp_path, image_size=4)
    assert smaller.train.x.shape == (9, 3, 4, 4) and smaller.crop_padding >= 1


def test_imagefolder_accepts_test_dir_and_tinyimagenet_val_annotations(tmp_path):
    rng = np.random.default_rng(4)
    make_image_tree(tmp_path, rng, "train", {"n01": 2, "n02": 2})
    make_image_tree(tmp_path, rng, "test", {"n02": 1})
    assert load_dataset("imagefolder", data_dir=tmp_path, image_size=8).test.y.tolist() == [1]

    tiny = tmp_path / "tiny"
    train = make_image_tree(tiny, rng, "train", {"n01": 2, "n02": 2})
    val_pixels = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(3)]
    for k, pixels in enumerate(val_pixels):
        write_png(tiny / "val" / "images" / f"val_{k}.png", pixels)
    (tiny / "val" / "val_annotations.txt").write_text(
        "val_0.png\tn02\t0\t0\t8\t8\nval_1.png\tn01\t0\t0\t8\t8\nval_2.png\tn02\t1\t1\t7\t7\n")
    data = load_dataset("imagefolder", data_dir=tiny, image_size=8)
    assert data.test.y.tolist() == [1, 0, 1]  # annotation order, train numbering
    train_images = np.stack([train[p] for p in sorted(train)])
    np.testing.assert_array_equal(recover_pixels(data.test.x, train_images),
                                  np.stack([p.transpose(2, 0, 1) for p in val_pixels]))


# ---------------------------------------------------------------- missing data


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "imagefolder"])
def test_missing_data_dir_is_one_line_usage_error(tmp_path, name, monkeypatch):
    monkeypatch.setenv("EFFRAY_DATA_DIR", str(tmp_path / "no-cache"))  # cifar10 with no --data-dir reads the cache
    missing = tmp_path / "nowhere"
    with pytest.raises(UsageError) as err:
        load_dataset(name, data_dir=str(missing))
    message = str(err.value)
    assert str(missing) in message and "\n" not in message
    assert "put" in message and ("--download" in message) == (name != "imagefolder")
    with pytest.raises(UsageError, match="--data-dir"):
        load_dataset(name)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "imagefolder"])
def test_existing_dir_without_files_is_a_usage_error(tmp_path, name):
    with pytest.raises(UsageError) as err:
        load_dataset(name, data_dir=str(tmp_path))
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- augmentation


def reference_crop_flip(x, padding, flip, generator):
    """One image at a time, drawing offsets and flips in the documented order."""
    b, _, h, w = x.shape
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    flips = torch.rand(b, generator=generator) < 0.5 if flip else torch.zeros(b, dtype=torch.bool)
    out = torch.empty_like(x)
    for i in range(b):
        padded = F.pad(x[i], (padding, padding, padding, padding))
        window = padded[:, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = window.flip(-1) if flips[i] else window
    return out, dy, dx, flips


def test_random_crop_flip_matches_a_per_image_reference():
    x = torch.randn(64, 3, 6, 5)
    out = random_crop_flip(x, padding=2, flip=True, generator=torch.Generator().manual_seed(7))
    expected, dy, dx, flips = reference_crop_flip(x, 2, True, torch.Generator().manual_seed(7))
    assert out.shape == x.shape
    assert torch.equal(out, expected)
    assert len(set(dy.tolist())) == 5 and len(set(dx.tolist())) == 5  # all offsets occur
    assert 0 < int(flips.sum()) < 64
    assert (out == 0).any()  # zero padding shows up where the window leaves the image


def test_random_crop_flip_flip_only_and_crop_only():
    x = torch.randn(32, 1, 4, 4)
    flipped = random_crop_flip(x, padding=0, flip=True, generator=torch.Generator().manual_seed(0))
    same = (flipped == x).flatten(1).all(1)
    mirrored = (flipped == x.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()

    cropped = random_crop_flip(x, padding=1, flip=False, generator=torch.Generator().manual_seed(0))
    expected, *_ = reference_crop_flip(x, 1, False, torch.Generator().manual_seed(0))
    assert torch.equal(cropped, expected)
    assert torch.equal(random_crop_flip(x, padding=0, flip=False), x)


def test_random_crop_flip_is_deterministic_with_a_seeded_generator():
    x = torch.randn(16, 3, 8, 8)
    a = random_crop_flip(x, 4, True, torch.Generator().manual_seed(3))
    b = random_crop_flip(x, 4, True, torch.Generator().manual_seed(3))
    c = random_crop_flip(x, 4, True, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name", ["digits", "digits-aug"])
def test_normalize_off_keeps_pixels_in_unit_range_and_is_affine_to_normalized(name):
    opts = {"train_size": 200, "test_size": 50} if name == "digits-aug" else {}
    raw = load_dataset(name, normalize=False, **opts)
    std = load_dataset(name, **opts)
    assert raw.train.x.min() >= 0 and raw.train.x.max() <= 1 and raw.train.x.max() > 0.9
    assert abs(float(std.train.x.mean())) < 1e-4
    # the same images: standardised = (raw - mean) / std with one mean/std (1 channel)
    a = std.train.x.flatten()
    b = raw.train.x.flatten()
    slope = (a[1:] - a[0]) / (b[1:] - b[0]).where((b[1:] - b[0]).abs() > 0.1, torch.tensor(float("nan")))
    slope = slope[~slope.isnan()]
    assert torch.allclose(slope, slope.median().expand_as(slope), rtol=1e-3)


# ---------------------------------------------------------------- label noise (--label-noise)


@pytest.mark.parametrize("name, options", [("digits", {}), ("digits-aug", {"train_size": 503, "test_size": 40}),
                                           ("synthetic", {"train_size": 120, "test_size": 30, "num_classes": 3})])
@pytest.mark.parametrize("noise", [0.1, 0.3, 0.55])
def test_label_noise_changes_exactly_round_p_n_training_labels_to_other_classes(name, options, noise):
    clean = load_dataset(name, seed=2, **options)
    noisy = load_dataset(name, seed=2, label_noise=noise, **options)
    changed = torch.nonzero(noisy.train.y != clean.train.y).squeeze(1)
    assert len(changed) == round(noise * len(clean.train))  # every picked label moved to another class
    assert torch.equal(changed, noisy.noisy)
    assert int(noisy.train.y.min()) >= 0 and int(noisy.train.y.max()) < clean.num_classes
    assert torch.equal(noisy.train.x, clean.train.x) and torch.equal(noisy.train.index, clean.train.index)
    # the test split is never touched
    assert torch.equal(noisy.test.y, clean.test.y) and torch.equal(noisy.test.x, clean.test.x)
    assert clean.noisy is None


def test_label_noise_is_seeded_and_symmetric():
    a, b = (load_dataset("digits-aug", train_size=3000, test_size=10, seed=5, label_noise=0.3) for _ in range(2))
    assert torch.equal(a.train.y, b.train.y)  # same seed, same noise
    other = load_dataset("digits-aug", train_size=3000, test_size=10, seed=6, label_noise=0.3)
    clean_other = load_dataset("digits-aug", train_size=3000, test_size=10, seed=6)
    assert not torch.equal(a.noisy, other.noisy)  # another seed, other labels changed
    assert len(other.noisy) == len(a.noisy) == 900
    assert torch.equal(torch.nonzero(other.train.y != clean_other.train.y).squeeze(1), other.noisy)
    # symmetric: from each class, the changed labels spread over all 9 other classes
    clean = load_dataset("digits-aug", train_size=3000, test_size=10, seed=5)
    moves = torch.stack([clean.train.y[a.noisy], a.train.y[a.noisy]], 1)
    assert all(len(torch.unique(moves[moves[:, 0] == c, 1])) == 9 for c in range(10))


def test_label_noise_zero_is_the_clean_data_and_out_of_range_is_refused():
    assert torch.equal(load_dataset("digits", label_noise=0.0).train.y, load_dataset("digits").train.y)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(UsageError, match=r"--label-noise must be in \[0, 1\)"):
            load_dataset("digits", label_noise=bad)


def test_label_noise_is_in_the_selection_cache_keys():
    from raypkg.selection.config import CoresetConfig
    from raypkg.selection.pipeline import PRETRAIN_EXCLUDE, SELECTION_EXCLUDE, config_key

    clean = CoresetConfig(selection="grand").resolved()
    noisy = CoresetConfig(selection="grand", label_noise=0.3).resolved()
    for exclude in (PRETRAIN_EXCLUDE, SELECTION_EXCLUDE):
        assert config_key(clean, exclude) != config_key(noisy, exclude)
    assert noisy.data_options()["label_noise"] == 0.3
