"""``DeltaGradConfig``: the training run of `effray unlearn train` and its bench;
``RequestSettings``: how DeltaGrad serves a request (`effray unlearn delete/add`, tune, bench),
``OnlineSettings``: and a stream of them (`effray unlearn online`); ``DeltaGradTuneConfig``:
the run `effray tune deltagrad` sweeps. The recipes' configs (``raypkg.methods.deltagrad.recipe``):
``UnlearnTrainConfig`` (train), ``RequestConfig`` (delete/add) and ``OnlineConfig`` (online),
the last two served from a cached run (``CachedRunConfig``).

Kept free of torch so that building the command line stays fast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from raypkg.engine.config import (
    RunConfig,
    TrainConfig,
    check_epochs,
    check_field_types,
    check_lr_lists,
    retuned,
    setting,
)
from raypkg.errors import UsageError, choose
from raypkg.methods.deltagrad import METHODS
from raypkg.paths import check_run_name

DTYPE_NAMES = ("float64", "float32")  # raypkg.methods.deltagrad.trajectory.DTYPES maps them to torch dtypes


@dataclass
class DeltaGradConfig(RunConfig):
    """`effray unlearn train`: plain SGD (or GD) whose trajectory DeltaGrad replays
    (Wu, Dobriban, Davidson, ICML 2020, Algorithm 1). Momentum and augmentation break exact
    replay, so they exist only to be refused with a clear line.

    It is not a TrainConfig: DeltaGrad trains a flat parameter vector by its own replayable
    step (``raypkg.methods.deltagrad.replay``), so the engine's other settings (schedule, precision,
    workers, --with, ...) would be flags it cannot honour. The training settings it shares
    are TrainConfig's (flag, choices, help: ``retuned``) at the paper's defaults."""

    model: str = retuned(RunConfig, "model", "logreg", help="logreg, mlp or lenet300-100 (fed flattened features).")
    epochs: int = retuned(TrainConfig, "epochs", 20)
    batch_size: int = retuned(TrainConfig, "batch_size", 256, help="Mini-batch size; 0 = full-batch GD.")
    lr: list[float] = retuned(TrainConfig, "lr", factory=lambda: [0.1],
                              help="Learning rate(s), e.g. `--lr 0.1 0.05 --lrlen 10 10`.")
    lrlen: list[int] = retuned(TrainConfig, "lrlen", factory=list)
    weight_decay: float = retuned(TrainConfig, "weight_decay", 1e-4)
    momentum: float = retuned(TrainConfig, "momentum", 0.0, help="Must be 0: momentum breaks exact replay.")
    augment: bool = retuned(TrainConfig, "augment", False, help="Must be off: augmentation breaks exact replay.")
    normalize: bool = retuned(RunConfig, "normalize", False,
                              help="Standardise inputs with train statistics, or keep pixels in [0, 1] as DeltaGrad's "
                                   "paper does (the default; standardised, lr 0.1 oscillates on digits-aug).")
    holdout: float = setting(0.0, "Fraction of the training split left out (the pool for `add`).")
    dtype: str = setting("float64", "Parameters and cache.", choices=DTYPE_NAMES)

    def __post_init__(self) -> None:
        for key in ("lr", "lrlen"):
            value = getattr(self, key)
            setattr(self, key, list(value) if isinstance(value, (list, tuple)) else [value])

    def validate(self) -> "DeltaGradConfig":
        super().validate()
        choose("dtype", self.dtype, DTYPE_NAMES)
        check_epochs(self.epochs)
        if self.batch_size < 0:
            raise UsageError(f"batch-size must be >= 0 (0 = full-batch GD), got {self.batch_size}")
        if self.momentum != 0:
            raise UsageError(f"--momentum {self.momentum}: DeltaGrad replays plain SGD, and momentum "
                             "breaks exact replay; use --momentum 0")
        if self.augment:
            raise UsageError("--augment: random augmentation breaks exact replay; DeltaGrad needs it off")
        check_lr_lists(self.lr, self.lrlen, self.epochs)
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


# `effray bench deltagrad`'s training setting (its flags' defaults; also the frontier's DeltaGrad panel's):
# the paper's MNIST setting (Wu et al. 2020, section 5) on digits-aug. Pixels stay in [0, 1] as the
# paper's MNIST (ToTensor without Normalize), where lr 0.1 is stable (standardised, lr 0.1 oscillates);
# DeltaGradConfig's default too.
BENCH_RUN = {"dataset": "digits-aug", "normalize": False, "batch_size": 16384, "epochs": 20, "lr": [0.1, 0.05],
             "lrlen": [10, 10], "weight_decay": 1e-4, "seed": 0}


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
    """A stream of requests (``raypkg.methods.deltagrad.online``): when to retrain exactly."""

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
    repeat: int = setting(3, "Timed rounds of each method, interleaved; the median counts.")

    def training_config(self) -> DeltaGradConfig:
        """The run a trial trains when no ``run`` is given (holding out the addition pool)."""
        base = {f.name: getattr(self, f.name) for f in dataclasses.fields(DeltaGradConfig)}
        return DeltaGradConfig(**{**base, "holdout": self.ratio if self.kind == "add" else 0.0}).resolved().validate()

    def validate(self) -> "DeltaGradTuneConfig":
        from raypkg.methods.deltagrad.trajectory import check_is_run

        super().validate()
        self.check_request()
        if self.run is not None:  # the cached run a trial opens: there, before Ray starts
            check_is_run(self.run)
        choose("request kind", self.kind, ("delete", "add"))
        if not 0 < self.ratio < 1:
            raise UsageError(f"ratio must be in (0, 1), got {self.ratio}")
        if not self.max_ratio > 0:
            raise UsageError(f"max-ratio must be > 0, got {self.max_ratio}")
        if self.repeat < 1:
            raise UsageError(f"repeat must be >= 1, got {self.repeat}")
        return self


@dataclass
class ExactGradientSettings:
    """How exact gradient sums are computed (``raypkg.methods.deltagrad.exact``): in-process, or as
    partial sums over Ray shard actors; and torch's threads."""

    actors: int = setting(0, "Exact gradients as partial sums over K Ray shard actors (0: in-process).")
    threads: int | None = setting(None, "torch threads (default: 1 for small steps, else torch's default).")

    def check_gradients(self) -> None:
        if self.actors < 0:
            raise UsageError(f"--actors must be >= 0, got {self.actors}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {self.threads}")


@dataclass
class UnlearnTrainConfig(ExactGradientSettings, DeltaGradConfig):
    """`effray unlearn train`: the training run (DeltaGradConfig) and its exact gradients."""

    def validate(self) -> "UnlearnTrainConfig":
        super().validate()
        self.check_gradients()
        return self


@dataclass
class CachedRunConfig(ExactGradientSettings):
    """A run served from a cached DeltaGrad run ``run`` (its directory or trajectory/).
    ``resolved()`` fills in what that run was trained on (dataset, model, label noise) and
    ``out``, where this run's directory goes: the cached run's ``FOLDER``."""

    FOLDER: ClassVar[str] = "requests"

    run: str | None = setting(None, "The cached run (`effray unlearn train`'s run directory).", cli=False)
    # RunConfig's settings that serving a cached run has (not a RunConfig: its data and model are the run's)
    use_gpu: bool | None = retuned(RunConfig, "use_gpu")
    name: str | None = retuned(RunConfig, "name", help="Name of the request's directory under RUN/requests.")
    wandb: str = retuned(RunConfig, "wandb", "offline")
    # filled in by resolved(): what the cached run was trained on, and where this run's directory goes
    dataset: str | None = setting(None, cli=False)
    model: str | None = setting(None, cli=False)
    label_noise: float = setting(0.0, cli=False)
    out: str | None = setting(None, cli=False)
    # the rest of what the run directory (raypkg.recipe.run_directory) reads
    wandb_project: str = setting("effray", cli=False)
    storage: str | None = setting(None, cli=False)
    keep_checkpoints: bool = setting(False, cli=False)

    def resolved(self) -> "CachedRunConfig":
        """A copy with the cached run's dataset, model and label noise, and ``out``, filled in
        (from its header, unverified: ``load`` verifies the run before anything uses it)."""
        check_field_types(self)
        if self.run is None:
            return dataclasses.replace(self)
        return dataclasses.replace(self, **trained_on(self.run),
                                   out=self.out or str(run_root(self.run) / self.FOLDER))

    def validate(self) -> "CachedRunConfig":
        from raypkg.methods.deltagrad.trajectory import check_is_run

        if not self.run:
            raise UsageError("give the cached run: the run directory of `effray unlearn train`")
        check_is_run(self.run)  # before its folder is probed for this run's directory
        self.check_gradients()
        choose("wandb mode", self.wandb, ("offline", "online", "disabled"))
        check_run_name(self.name)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_root(run: str | Path) -> Path:
    """The run directory holding ``run``'s trajectory (requests and streams are written beside it)."""
    from raypkg.methods.deltagrad.trajectory import trajectory_dir

    path = trajectory_dir(run)
    return path.parent if path.name == "trajectory" else path


def trained_on(run: str | Path) -> dict:
    """The dataset, model and label noise in ``run``'s trajectory header (none when it has no
    readable header: opening the run then refuses it in one line)."""
    import json

    from raypkg.methods.deltagrad.trajectory import HEADER, trajectory_dir

    try:
        header = json.loads((trajectory_dir(run) / HEADER).read_text())
        data = header.get("data") or {}
        return {"dataset": header["dataset"], "model": header["model"],
                "label_noise": data.get("label_noise", 0.0)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


@dataclass
class RequestConfig(CachedRunConfig, RequestSettings):
    """`effray unlearn delete` / `add`: one request (``kind``), its ids (``ids_file`` or a
    random ``ratio``), DeltaGrad's settings (RequestSettings) and which ``method`` serves it."""

    kind: str = setting("delete", "Delete training samples or add held-out ones.", choices=("delete", "add"),
                        cli=False)
    ids_file: str | None = setting(None, "File of training-set ids.", cli=False)
    method: str = setting("both", "DeltaGrad, the baseline retrain, or both side by side.", choices=METHODS)

    def validate(self) -> "RequestConfig":
        self.check_request()
        super().validate()
        choose("request kind", self.kind, ("delete", "add"))
        choose("method", self.method, METHODS)
        return self


@dataclass
class OnlineConfig(CachedRunConfig, OnlineSettings):
    """`effray unlearn online`: a stream of ``requests`` requests of one ``kind``, each
    ``ratio_per_request`` of the training set or ``samples_per_request`` samples."""

    FOLDER: ClassVar[str] = "online"

    name: str | None = retuned(RunConfig, "name", help="Name of the stream's directory under RUN/online.")
    requests: int = setting(10, "Requests in the stream.")
    ratio_per_request: float | None = setting(None, "Each request's size as a fraction of the training set.")
    samples_per_request: int | None = setting(None, "Each request's size in samples (default 1).")
    kind: str = setting("delete", "Each request deletes training samples or adds held-out ones.",
                        choices=("delete", "add"))
    method: str = setting("both", "both: also K sequential exact retrains, for time and distance.",
                          choices=("deltagrad", "both"))
    progress: bool = setting(True, "A progress bar advancing per request (with its seconds and ||wI - wU||).")

    def validate(self) -> "OnlineConfig":
        self.check_request()
        super().validate()
        choose("request kind", self.kind, ("delete", "add"))
        choose("method", self.method, ("deltagrad", "both"))
        if self.requests < 1:
            raise UsageError(f"--requests must be >= 1, got {self.requests}")
        if self.ratio_per_request is not None and self.samples_per_request is not None:
            raise UsageError("give at most one of --ratio-per-request and --samples-per-request")
        if self.ratio_per_request is not None and not 0 < self.ratio_per_request < 1:
            raise UsageError(f"--ratio-per-request must be in (0, 1), got {self.ratio_per_request}")
        if self.samples_per_request is not None and self.samples_per_request < 1:
            raise UsageError(f"--samples-per-request must be >= 1, got {self.samples_per_request}")
        return self
