"""The cached training run DeltaGrad replays, and the minibatch plan it was trained with.

On disk (``<run>/trajectory/``)::

    header.json      sizes, dtype, schedule, dataset/model, data options
    w.bin            [T+1, p] parameters w_0 .. w_T (raw, row-major, memory-mapped)
    g.bin            [T, p]   minibatch gradients g_t = grad F_{B_t}(w_t), before weight decay
    perm.bin         int64 [E, n_members] each epoch's order of the training samples
                     (one row in GD mode, where every step uses every sample)
    membership.pt    holdout (samples never trained on: the pool for additions), and for
                     trajectories rewritten by online requests: removed, added, assign
    checksums.json   size and BLAKE2b digest of each file above, written when the run is
                     finished and verified whenever it is opened: a damaged cache (a
                     truncated or missing file, bytes overwritten in place) is refused
                     with one line naming the file, never served

w.bin and g.bin are opened with ``torch.from_file``: nothing is read until a row is used,
so a history larger than RAM works. A cached run is opened read-only (private mapping,
files chmod 0444): a request can never change it. The learning rate of step t is
``header.lrs[t]`` (one value per epoch, piecewise as ``--lr 0.1 0.05 --lrlen 10 10``).

Minibatches: epoch e's order is ``perm[e]``; step k of the epoch uses positions
[k b, (k+1) b) of it (b = batch size). Deleting samples keeps that structure and drops
them from their batches (a batch that becomes empty is skipped); an added sample is put
in one batch per epoch, chosen at random (``assign[e]``). ``ReplayBatches`` holds this as a
table ``step_of[e, i]`` = the step of epoch e in which sample i is used, or -1.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from raypkg.checksums import SUMS_FILE, verify_checksums, write_checksums
from raypkg.errors import UsageError
from raypkg.paths import atomic_write

DTYPES = {"float64": torch.float64, "float32": torch.float32}
HEADER, W_FILE, G_FILE, PERM_FILE, MEMBERS_FILE = "header.json", "w.bin", "g.bin", "perm.bin", "membership.pt"
FORMAT_VERSION = 1
CACHED_FILES = (HEADER, W_FILE, G_FILE, PERM_FILE, MEMBERS_FILE)


@dataclass
class TrajectoryHeader:
    dataset: str
    model: str
    data: dict  # load_dataset options: seed, train_size, test_size, data_dir
    n: int  # size of the training split (ids are positions in it)
    p: int  # parameters
    layer_sizes: list  # FlatNet sizes [(in, out), ...]
    dtype: str
    batch_size: int  # 0: full batch (GD)
    epochs: int
    steps_per_epoch: int
    weight_decay: float
    lr: list
    lrlen: list
    lrs: list  # learning rate of each step
    seed: int
    n_members: int  # samples in the training run (n minus the holdout)
    requests_applied: int = 0  # online: requests this trajectory already absorbed
    complete: bool = False
    version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def full_batch(self) -> bool:
        return self.batch_size == 0

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def steps_per_epoch(n_members: int, batch_size: int) -> int:
    return 1 if batch_size == 0 else math.ceil(n_members / batch_size)


class ReplayBatches:
    """Which samples each step uses: ``step_of[e, i]`` (-1: sample i not used in epoch e).

    In GD mode there is one row, shared by every epoch, and one step per epoch.
    """

    def __init__(self, step_of: torch.Tensor, epochs: int, steps_per_epoch: int, full_batch: bool):
        self.step_of = step_of
        self.epochs, self.K, self.full_batch = epochs, steps_per_epoch, full_batch
        self.T = epochs * steps_per_epoch
        self.n = step_of.shape[1]
        self._gd_batch: torch.Tensor | None = None
        if full_batch:
            self.sizes = torch.full((self.T,), int((step_of[0] >= 0).sum()), dtype=torch.long)
        else:
            valid = step_of >= 0
            base = (torch.arange(epochs).unsqueeze(1) * steps_per_epoch).expand_as(step_of)
            self.sizes = torch.bincount((base + step_of.long())[valid], minlength=self.T)

    @classmethod
    def from_perms(cls, perms: torch.Tensor, n: int, epochs: int, batch_size: int,
                   removed: torch.Tensor | None = None, added: torch.Tensor | None = None,
                   assign: torch.Tensor | None = None) -> "ReplayBatches":
        rows, n_members = perms.shape
        full = batch_size == 0
        step_of = torch.full((rows, n), -1, dtype=torch.int32)
        if full:
            step_of[0, perms[0]] = 0
        else:
            chunk = (torch.arange(n_members) // batch_size).to(torch.int32)
            for e in range(rows):
                step_of[e, perms[e]] = chunk
        plan = cls(step_of, epochs, steps_per_epoch(n_members, batch_size), full)
        if added is not None and len(added):
            plan = plan.with_added(added, assign)
        if removed is not None and len(removed):
            plan = plan.with_deleted(removed)
        return plan

    def epoch_row(self, t: int) -> tuple[torch.Tensor, int]:
        e, k = divmod(t, self.K)
        return self.step_of[0 if self.full_batch else e], k

    def batch(self, t: int) -> torch.Tensor:
        """Sorted ids of the samples in step t (the same tensor object every step in GD)."""
        if self.full_batch:
            if self._gd_batch is None:
                self._gd_batch = torch.nonzero(self.step_of[0] >= 0).squeeze(1)
            return self._gd_batch
        row, k = self.epoch_row(t)
        return torch.nonzero(row == k).squeeze(1)

    def members(self) -> torch.Tensor:
        """Ids currently trained on (sorted)."""
        return torch.nonzero(self.step_of[0] >= 0).squeeze(1)

    def is_member(self, ids: torch.Tensor) -> torch.Tensor:
        return self.step_of[0, ids] >= 0

    def random_assignment(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """A batch (step within the epoch) for each of ``count`` new samples, per epoch."""
        return torch.randint(0, self.K, (self.epochs, count), generator=generator)

    def request_steps(self, ids: torch.Tensor, assign: torch.Tensor | None = None) -> list[torch.Tensor]:
        """For each step, the (sorted) ids of ``ids`` it uses: their current steps
        (deletions; ``assign`` None) or the steps ``assign`` gives them (additions)."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        if self.full_batch:
            same = ids.sort().values
            return [same] * self.T
        steps = self.step_of[:, ids].long() if assign is None else assign.long()
        t_of = (torch.arange(self.epochs).unsqueeze(1) * self.K + steps).reshape(-1)
        rep = ids.repeat(self.epochs)
        keep = steps.reshape(-1) >= 0
        t_of, rep = t_of[keep], rep[keep]
        order = torch.argsort(t_of * self.n + rep)
        counts = torch.bincount(t_of, minlength=self.T).tolist()
        return list(torch.split(rep[order], counts))

    def with_deleted(self, ids: torch.Tensor) -> "ReplayBatches":
        step_of = self.step_of.clone()
        step_of[:, ids] = -1
        return ReplayBatches(step_of, self.epochs, self.K, self.full_batch)

    def with_added(self, ids: torch.Tensor, assign: torch.Tensor | None) -> "ReplayBatches":
        step_of = self.step_of.clone()
        if self.full_batch:
            step_of[0, ids] = 0
        else:
            step_of[:, ids] = assign.to(torch.int32)
        return ReplayBatches(step_of, self.epochs, self.K, self.full_batch)


def trajectory_dir(run: str | Path) -> Path:
    """Where ``run``'s trajectory is: ``run/trajectory`` for a run directory, else ``run`` itself."""
    run = Path(run)
    return run / "trajectory" if (run / "trajectory").is_dir() else run


def check_is_run(run: str | Path) -> Path:
    """``run``'s trajectory folder, refused in one line when it has no header (not a DeltaGrad run)."""
    path = trajectory_dir(run)
    if not (path / HEADER).is_file():
        raise UsageError(f"{str(run)!r} is not a DeltaGrad run (no trajectory/{HEADER}); "
                         "create one with `effray unlearn train`")
    return path


def _is_unfinished(header_file: Path) -> bool:
    try:
        return not json.loads(header_file.read_text()).get("complete", False)
    except (ValueError, OSError, AttributeError):
        return False


class Trajectory:
    """A cached run: header, memory-mapped w [T+1, p] and g [T, p], permutations, membership."""

    def __init__(self, path: Path, header: TrajectoryHeader, writable: bool):
        self.path, self.header, self.writable = Path(path), header, writable
        h = header
        dtype = h.torch_dtype
        self.w = torch.from_file(str(self.path / W_FILE), shared=writable,
                                 size=(h.steps + 1) * h.p, dtype=dtype).view(h.steps + 1, h.p)
        self.g = torch.from_file(str(self.path / G_FILE), shared=writable,
                                 size=h.steps * h.p, dtype=dtype).view(h.steps, h.p)
        rows = 1 if h.full_batch else h.epochs
        self.perms = torch.from_file(str(self.path / PERM_FILE), shared=False, size=rows * h.n_members,
                                     dtype=torch.long).view(rows, h.n_members).clone()
        self.membership = torch.load(self.path / MEMBERS_FILE)

    # ----- creating and opening --------------------------------------------------------
    @classmethod
    def create(cls, path: Path, header: TrajectoryHeader, perms: torch.Tensor,
               holdout: torch.Tensor) -> "Trajectory":
        """Allocate the files of a new run (header marked incomplete until ``finish``)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        h = header
        size = torch.tensor([], dtype=h.torch_dtype).element_size()
        for name, rows in ((W_FILE, h.steps + 1), (G_FILE, h.steps)):
            with open(path / name, "wb") as f:
                f.truncate(rows * h.p * size)
        order = perms.to(torch.long).contiguous().numpy()
        atomic_write(path / PERM_FILE, order.tofile)
        members = {"holdout": holdout.long(), "removed": torch.zeros(0, dtype=torch.long),
                   "added": torch.zeros(0, dtype=torch.long), "assign": torch.zeros(h.epochs, 0, dtype=torch.long)}
        atomic_write(path / MEMBERS_FILE, lambda tmp: torch.save(members, tmp))
        atomic_write(path / HEADER, lambda tmp: tmp.write_text(json.dumps(asdict(h), indent=1)))
        return cls(path, h, writable=True)

    @classmethod
    def open(cls, run: str | Path, writable: bool = False) -> "Trajectory":
        """Open ``run`` (a run directory or its trajectory/ folder); read-only by default."""
        path = check_is_run(run)
        what = f"the cached DeltaGrad run {str(run)!r}"
        if not (path / SUMS_FILE).is_file() and _is_unfinished(path / HEADER):
            raise UsageError(f"the trajectory in {str(run)!r} is incomplete (training did not finish)")
        verify_checksums(path, what)  # before anything is parsed or mapped
        try:
            header = TrajectoryHeader(**json.loads((path / HEADER).read_text()))
        except (ValueError, TypeError) as e:
            raise UsageError(f"{what} is damaged: {str(path / HEADER)!r} is unreadable ({e})") from None
        if not header.complete:
            raise UsageError(f"the trajectory in {str(run)!r} is incomplete (training did not finish)")
        return cls(path, header, writable)

    def finish(self, read_only: bool = True) -> None:
        """Mark complete; flush; make the cached files read-only."""
        self.header.complete = True
        self.write_header()
        # w and g are shared mappings: reading the files sees what was written to them.
        write_checksums(self.path, list(CACHED_FILES))
        if read_only:
            for name in (*CACHED_FILES, SUMS_FILE):
                os.chmod(self.path / name, 0o444)

    def write_header(self) -> None:
        text = json.dumps(asdict(self.header), indent=1)
        atomic_write(self.path / HEADER, lambda tmp: tmp.write_text(text))

    def copy_to(self, path: Path) -> "Trajectory":
        """A writable copy (online requests rewrite it; the original stays as it is)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name in (W_FILE, G_FILE, PERM_FILE, MEMBERS_FILE, HEADER):
            shutil.copyfile(self.path / name, path / name)
        return Trajectory(path, TrajectoryHeader(**json.loads((path / HEADER).read_text())), writable=True)

    def save_membership(self) -> None:
        atomic_write(self.path / MEMBERS_FILE, lambda tmp: torch.save(self.membership, tmp))

    # ----- what the run trained on ------------------------------------------------------
    @property
    def holdout(self) -> torch.Tensor:
        return self.membership["holdout"]

    def plan(self) -> ReplayBatches:
        m = self.membership
        return ReplayBatches.from_perms(self.perms, self.header.n, self.header.epochs,
                                    self.header.batch_size, removed=m["removed"],
                                    added=m["added"], assign=m["assign"])

    def addable(self) -> torch.Tensor:
        """Ids that may be added: held out at training and not added since."""
        pool = torch.zeros(self.header.n, dtype=torch.bool)
        pool[self.holdout] = True
        pool[self.membership["added"]] = False
        return torch.nonzero(pool).squeeze(1)
