"""``DeltaGradConfig``: the one config of `effray unlearn train` and its bench;
``RequestSettings``: how DeltaGrad serves a request (`effray unlearn delete/add`, tune, bench),
``OnlineSettings``: and a stream of them (`effray unlearn online`); ``DeltaGradTuneConfig``:
DeltaGrad's recipe, the run `effray tune deltagrad` sweeps.

Kept free of torch so that building the command line stays fast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from raypkg.engine.config import RunConfig, check_lr_lists, setting
from raypkg.errors import UsageError, choose

DTYPE_NAMES = ("float64", "float32")  # raypkg.deltagrad.trajectory.DTYPES maps them to torch dtypes


@dataclass
class DeltaGradConfig(RunConfig):
    """`effray unlearn train`: plain SGD (or GD) whose trajectory DeltaGrad replays
    (Wu, Dobriban, Davidson, ICML 2020, Algorithm 1). Momentum and augmentation break exact
    replay, so they exist only to be refused with a clear line."""

    model: str = setting("logreg", "logreg, mlp or lenet300-100 (fed flattened features).")
    epochs: int = setting(20, "Epochs.")
    batch_size: int = setting(256, "Mini-batch size; 0 = full-batch GD.")
    lr: list[float] = setting(help="Learning rate(s), e.g. `--lr 0.1 0.05 --lrlen 10 10`.", factory=lambda: [0.1])
    lrlen: list[int] = setting(help="Epochs for each --lr value.", factory=list)
    weight_decay: float = setting(1e-4, "L2 coefficient beta.", flag="--weight-decay/--wd")
    momentum: float = setting(0.0, "Must be 0: momentum breaks exact replay.")
    augment: bool = setting(False, "Must be off: augmentation breaks exact replay.")
    holdout: float = setting(0.0, "Fraction of the training split left out (the pool for `add`).")
    dtype: str = setting("float64", "Parameters and cache.", choices=DTYPE_NAMES)

    def __post_init__(self) -> None:
        for key in ("lr", "lrlen"):
            value = getattr(self, key)
            setattr(self, key, list(value) if isinstance(value, (list, tuple)) else [value])

    def validate(self) -> "DeltaGradConfig":
        super().validate()
        choose("dtype", self.dtype, DTYPE_NAMES)
        if self.epochs <= 0:
            raise UsageError(f"epochs must be a positive integer, got {self.epochs}")
        if self.batch_size < 0:
            raise UsageError(f"batch-size must be >= 0 (0 = full-batch GD), got {self.batch_size}")
        if self.momentum != 0:
            raise UsageError(f"--momentum {self.momentum}: DeltaGrad replays plain SGD, and momentum "
                             "breaks exact replay; use --momentum 0")
        if self.augment:
            raise UsageError("--augment: random augmentation breaks exact replay; DeltaGrad needs it off")
        check_lr_lists(self.lr, self.lrlen)
        if self.weight_decay < 0:
            raise UsageError(f"weight decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.holdout < 1:
            raise UsageError(f"--holdout must be in [0, 1), got {self.holdout}")
        if self.data_path == "stream":
            raise UsageError("--data-path stream: DeltaGrad replays full-batch gradients over features it "
                             "holds in memory; use --data-path memory")
        return self

    def data_options(self) -> dict:
        """DeltaGrad's models take flattened features, whatever ``flat`` says."""
        return {**super().data_options(), "flat": True, "data_path": "memory"}


def check_hyper(period: int, init: int, m: int, eps: float = 1e-8) -> None:
    """DeltaGrad's T0, j0, m and curvature safeguard, or a one-line UsageError."""
    if period < 1:
        raise UsageError(f"--period (T0) must be >= 1, got {period}")
    if init < 0:
        raise UsageError(f"--init (j0) must be >= 0, got {init}")
    if m < 1:
        raise UsageError(f"-m must be >= 1, got {m}")
    if not eps > 0 or eps == float("inf"):
        raise UsageError(f"--eps must be a positive finite number, got {eps}")


@dataclass
class RequestSettings:
    """DeltaGrad's knobs for one request (Algorithm 1): an explicit step every ``period``
    steps after ``init`` explicit ones, L-BFGS on the last ``m`` pairs; and the request,
    a random ``ratio`` of the training set drawn with ``request_seed``."""

    period: int = setting(5, "T0: an explicit (exact) step every T0 steps after the burn-in.")
    init: int = setting(20, "j0: explicit burn-in steps.")
    m: int = setting(2, "L-BFGS history (s, y pairs).", flag="-m")
    eps: float = setting(1e-8, "Curvature safeguard: pairs with s'y <= eps |s|^2 are skipped.")
    ratio: float | None = setting(None, "Delete (add: from the held-out pool) this fraction of the training set, "
                                        "chosen at random.")
    request_seed: int = setting(0, "Seed of the requests' random samples (and of an addition's batches).",
                                flag="--seed")

    def check_request(self) -> None:
        check_hyper(self.period, self.init, self.m, self.eps)


@dataclass
class OnlineSettings(RequestSettings):
    """A stream of requests (``raypkg.deltagrad.online``): when to retrain exactly."""

    retrain_every: int = setting(0, "Retrain exactly after this many DeltaGrad requests (0: never on a count).")
    drift_tol: float | None = setting(None, "Retrain exactly when an explicit step's gradient and its estimate "
                                            "differ by more than this (relative).")

    def check_request(self) -> None:
        super().check_request()
        if self.retrain_every < 0:
            raise UsageError(f"--retrain-every must be >= 0, got {self.retrain_every}")
        if self.drift_tol is not None and not self.drift_tol > 0:
            raise UsageError(f"--drift-tol must be > 0, got {self.drift_tol}")


@dataclass
class DeltaGradTuneConfig(RequestSettings, DeltaGradConfig):
    """DeltaGrad's recipe (`effray tune deltagrad`): the training run (DeltaGradConfig, or
    an existing cached ``run``) plus the request it serves and the DeltaGrad
    hyperparameters it measures (RequestSettings)."""

    lr: list[float] = setting(factory=lambda: [0.05, 0.02])
    lrlen: list[int] = setting(factory=lambda: [10, 10])
    wandb: str = setting("disabled")
    progress: bool = setting(False)
    run: str | None = setting(None, "An existing cached run (absolute path) instead of training one.")
    kind: str = setting("delete", "delete | add.", choices=("delete", "add"))
    ratio: float = setting(0.01, "Fraction of the samples deleted or added.")
    request_seed: int = setting(1, "Seed of the request's samples.")
    max_ratio: float = setting(0.05, "Largest ||wI - wU|| / ||wU - w*|| that still scores.")
    repeat: int = setting(3, "Best of N timings.")

    def training_config(self) -> DeltaGradConfig:
        """The run a trial trains when no ``run`` is given (holding out the addition pool)."""
        base = {f.name: getattr(self, f.name) for f in dataclasses.fields(DeltaGradConfig)}
        return DeltaGradConfig(**{**base, "holdout": self.ratio if self.kind == "add" else 0.0}).resolved().validate()

    def validate(self) -> "DeltaGradTuneConfig":
        super().validate()
        self.check_request()
        choose("request kind", self.kind, ("delete", "add"))
        if not 0 < self.ratio < 1:
            raise UsageError(f"ratio must be in (0, 1), got {self.ratio}")
        if not self.max_ratio > 0:
            raise UsageError(f"max-ratio must be > 0, got {self.max_ratio}")
        if self.repeat < 1:
            raise UsageError(f"repeat must be >= 1, got {self.repeat}")
        return self
