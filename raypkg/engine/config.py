"""Training configuration: one dataclass, loadable from YAML/JSON, overridable by flags.

The resolved config is saved with every run (``config.yaml``); passing that file back
with ``--config`` repeats the run exactly.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raypkg.errors import UsageError, choose

SCHEDULES = ("constant", "multistep", "cosine", "piecewise")


@dataclass
class TrainConfig:
    dataset: str = "digits"
    model: str = "mlp"
    epochs: int = 30
    batch_size: int = 64
    # One value, or one per phase of the piecewise schedule (the DeltaGrad README's
    # ``--lr 0.1 0.05 --lrlen 10 10``: 0.1 for 10 epochs, then 0.05 for 10).
    lr: list[float] = field(default_factory=lambda: [0.1])
    lrlen: list[int] = field(default_factory=list)
    schedule: str = "cosine"
    milestones: list[int] = field(default_factory=list)  # multistep: epochs where lr *= gamma
    gamma: float = 0.1
    lr_warmup_epochs: int = 0  # linear LR warm-up from 0 (in steps), any schedule
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    seed: int = 0
    workers: int = 0  # 0: in-process; N >= 1: Ray Train with N workers
    use_gpu: bool | None = None  # None: use a GPU when there is one
    amp: bool = True  # mixed precision, on GPU only
    augment: bool | None = None  # None: the dataset's default (crop+flip for 32x32 images)
    data_dir: str | None = None
    download: bool = False
    train_size: int | None = None
    test_size: int | None = None
    flat: bool = False
    normalize: bool = True  # False: pixels in [0, 1], no standardisation
    image_size: int | None = None  # imagefolder: square size images are resized to
    num_classes: int | None = None  # synthetic: class count
    shape: str | None = None  # synthetic: per-sample shape, e.g. "3x32x32" or "64"
    out: str = "runs"
    name: str | None = None  # run directory name; default method-dataset-model-time
    wandb: str = "offline"  # offline | online | disabled
    wandb_project: str = "effray"
    max_failures: int = 1  # Ray Train: restarts from the last checkpoint
    progress: bool = True

    def __post_init__(self) -> None:
        # list-valued keys also accept one number (from a YAML file or a tune space)
        for key in ("lr", "lrlen", "milestones"):
            value = getattr(self, key)
            setattr(self, key, list(value) if isinstance(value, (list, tuple)) else [value])

    def validate(self) -> "TrainConfig":
        """Raise a one-line UsageError for any value that cannot work."""
        import raypkg.data.sources  # noqa: F401  (registers the datasets)
        import raypkg.models.zoo  # noqa: F401  (registers the models)
        from raypkg.data.registry import DATASETS
        from raypkg.models.registry import MODELS

        choose("dataset", self.dataset, DATASETS)
        choose("model", self.model, MODELS)
        choose("schedule", self.schedule, SCHEDULES)
        choose("wandb mode", self.wandb, ("offline", "online", "disabled"))
        for name in ("epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise UsageError(f"{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        if self.workers < 0:
            raise UsageError(f"workers must be >= 0, got {self.workers}")
        check_lr_lists(self.lr, self.lrlen, piecewise=self.schedule == "piecewise")
        if self.lrlen:
            self.schedule = "piecewise"
        check_data_dir(self.data_dir)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_lr_lists(lr: list[float], lrlen: list[int], piecewise: bool = False) -> None:
    """One positive lr, or several with one positive epoch count each (``--lrlen``)."""
    if not lr or any(v <= 0 for v in lr):
        raise UsageError(f"lr must be one or more positive numbers, got {lr}")
    if piecewise or lrlen:
        if len(lrlen) != len(lr) or any(n <= 0 for n in lrlen):
            raise UsageError(f"--lrlen needs one positive epoch count per --lr value; got lr={lr} lrlen={lrlen}")
    elif len(lr) != 1:
        raise UsageError(f"several --lr values need --lrlen (piecewise schedule); got lr={lr}")


def check_data_dir(data_dir: str | None) -> None:
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UsageError(f"data directory {data_dir!r} does not exist")


def config_fields(cls=TrainConfig) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def read_config_file(path: str | Path, cls=TrainConfig) -> dict[str, Any]:
    """Read a YAML or JSON mapping of config keys; unknown keys are a UsageError."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f"cannot read config file {str(path)!r}: {e.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        first = str(e).splitlines()[0]
        raise UsageError(f"config file {str(path)!r} is not valid YAML/JSON: {first}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"config file {str(path)!r} must hold a mapping of keys to values")
    unknown = sorted(set(data) - config_fields(cls))
    if unknown:
        raise UsageError(f"unknown key(s) {', '.join(unknown)} in config file {str(path)!r}; "
                         f"allowed: {', '.join(sorted(config_fields(cls)))}")
    return data


def resolve_config(cls=TrainConfig, config_file: str | None = None, **flags) -> Any:
    """File values, then flags that were given (not None) on top, validated."""
    values = read_config_file(config_file, cls) if config_file else {}
    values.update({k: v for k, v in flags.items() if v is not None and v != ()})
    try:
        return cls(**values).validate()
    except TypeError as e:  # a value of the wrong type in the file, e.g. `epochs: [3]`
        raise UsageError(f"bad config value: {e}") from None
