"""Training configuration: the settings of a run, each with its flag's help, and one check
per setting (over 400 lines for that reason). A run's config is assembled from a file,
flags and a stack above the engine, in ``raypkg.config``.

A config is used as ``cfg.resolved().validate()``: ``resolved()`` returns a copy with
every default that depends on other values filled in, ``validate()`` only checks (it
never changes the config, and probes no output location: the run directory does that
when it opens). A run validates its config once, in ``Recipe.run``. The resolved config
is saved with every run (``config.yaml``); passing that file back with ``--config``
repeats the run exactly.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

from raypkg.errors import UsageError, check_int64, choose
from raypkg.models.defaults import default_lr
from raypkg.paths import check_run_name
from raypkg.storage import default_storage

PRECISIONS = ("auto", "fp32", "bf16")  # raypkg.engine.execution decides auto
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
COMPILES = ("auto", "off", "on")
SCHEDULES = ("constant", "multistep", "cosine", "linear", "piecewise")
SEED_LIMIT = 2**32  # seeds are < 2**32 (numpy's legacy limit; derived seeds multiply them by up to ~2**20)
MAX_THREADS = 1024  # torch threads of one training process (more is a typo, not a machine)
MAX_EPOCHS = 1_000_000  # epochs of one training (more fits 64 bits but is a typo, not a run)
PLACEMENTS = ("pack", "spread", "strict-pack", "strict-spread")  # Ray's placement strategies, lower-cased


def setting(default: Any = None, help: str = "", *, factory: Callable[[], Any] | None = None,
            flag: str | None = None, choices: Sequence[str] | None = None, cli: bool = True) -> Any:
    """A config field that also makes its command-line flag (``raypkg.cli_options.config_options``):
    ``help`` is the flag's help, ``flag`` overrides its name (``"--gpu/--cpu"`` for a switch),
    ``choices`` restricts it, ``cli=False`` keeps the field out of the command line."""
    metadata = {"help": help, "flag": flag, "choices": choices, "cli": cli}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def retuned(owner: type, name: str, default: Any = None, *, factory: Callable[[], Any] | None = None,
            help: str | None = None) -> Any:
    """``owner``'s setting ``name`` (its flag, choices and help) at another default, for a
    config that shares the setting but not the engine's default (DeltaGrad's training run);
    ``help`` replaces the help where the setting's meaning narrows there."""
    source = next(f for f in dataclasses.fields(owner) if f.name == name)
    meta = source.metadata
    return setting(default, meta["help"] if help is None else help, factory=factory, flag=meta["flag"],
                   choices=meta["choices"], cli=meta["cli"])


@dataclass
class RunConfig:
    """What every method's config shares: the data, the model, the run directory and its
    tracking. Every field is also a command-line flag (``raypkg.cli_options.config_options``)."""

    dataset: str = setting("digits", "Dataset name (`effray datasets`), or a plug-in's import path "
                           "MODULE:FACTORY (a function returning (train, test) splits).")
    model: str = setting("mlp", "Model name (`effray models`), or a plug-in's import path MODULE:FACTORY "
                         "(a function (input_shape, num_classes) -> nn.Module).")
    seed: int = setting(0, "Seed for data split, init and shuffling.")
    use_gpu: bool | None = setting(None, "Force GPU or CPU (default: GPU if present).", flag="--gpu/--cpu")
    data_dir: str | None = setting(None, "Directory of the torchvision datasets / ImageFolder tree.")
    download: bool = setting(False, "Allow torchvision to download.")
    train_size: int | None = setting(None, "Training examples of a sized dataset: generated (digits-aug, synthetic) "
                                           "or a class-stratified sample (fashion-mnist).")
    test_size: int | None = setting(None, "Test examples of a sized dataset.")
    flat: bool = setting(False, "Feed flattened features instead of images.", flag="--flat/--images")
    normalize: bool = setting(True, "Standardise inputs with train statistics, or keep pixels in [0, 1].")
    label_noise: float = setting(0.0, "Symmetric label noise, any dataset: a fraction P in [0, 1) of the training "
                                 "labels (exactly round(P*N), drawn from --seed) each changed to another class "
                                 "chosen uniformly; the test split is never touched.")
    image_size: int | None = setting(None, "imagefolder: resize images to this square size (default 64).")
    num_classes: int | None = setting(None, "synthetic: number of classes (default 10).")
    shape: str | None = setting(None, "synthetic: per-sample shape, e.g. 3x32x32 or 64 (default 3x32x32).")
    data_path: str = setting("auto", "imagefolder: memory decodes every image into RAM once; stream reads them "
                             "from disk as training goes (Ray Data); auto streams above 4 GiB decoded.",
                             choices=("auto", "memory", "stream"))
    decode_block: int = setting(256, "--data-path stream: images per Ray Data block, the unit one decode task "
                                "reads (larger: fewer tasks, more memory per task).")
    out: str = setting("runs", "Root directory of run directories.")
    name: str | None = setting(None, "Run directory name (default METHOD-DATASET-MODEL-TIME).")
    storage: str | None = setting(help="Shared path or URI (file://, s3://, gs://, hdfs://) for Ray Train "
                                  "checkpoints (STORAGE/NAME/ray) and a copy of the finished run directory "
                                  "(STORAGE/NAME); needed on a cluster of several nodes. Default: "
                                  "$EFFRAY_STORAGE if set, else none (checkpoints in RUN/ray).",
                                  factory=default_storage)
    placement: str = setting("pack", "Where Ray places the workers and shard actors across the cluster's nodes "
                             "(Ray's placement strategies): pack fills as few nodes as possible, spread "
                             "spreads them when it can, strict-pack needs one node, strict-spread one node each.",
                             choices=PLACEMENTS)
    keep_checkpoints: bool = setting(False, "--storage: keep the Ray Train checkpoints (STORAGE/NAME/ray) "
                                     "of a finished run (default: removed).")
    wandb: str = setting("offline", "W&B mode.", choices=("offline", "online", "disabled"))
    wandb_project: str = setting("effray", "W&B project.")
    progress: bool = setting(True, "Progress bars.")

    # Groups of fields that replace one another: a flag or keyword given drops the config
    # file's (or object's) values of the other fields of its group (``raypkg.config.build_config``).
    EXCLUSIVE: ClassVar[tuple[tuple[str, ...], ...]] = ()
    # Settings that act only with another: field -> (does it act in this config?, what the
    # refusal says after its flag). One set where it cannot act is refused (``check_needs``).
    NEEDS: ClassVar[dict[str, tuple[Callable[[Any], bool], str]]] = {}

    def resolved(self) -> "RunConfig":
        """A copy with every default filled in (numpy integers become int, ``~`` in the local
        paths expanded); idempotent."""
        check_field_types(self)
        return dataclasses.replace(self, **plain_ints(self), **expanded_paths(self))

    def validate(self) -> "RunConfig":
        """Raise a one-line UsageError for any value that cannot work; returns self unchanged."""
        from raypkg.data.noise import check_label_noise
        from raypkg.data.registry import DATASET_SETTINGS, DATASETS, dataset_entry
        from raypkg.models.registry import model_entry

        check_field_types(self)
        check_needs(self)
        dataset = dataset_entry(self.dataset)  # registered, entry point or import path
        model_entry(self.model)
        choose("wandb mode", self.wandb, ("offline", "online", "disabled"))
        choose("data path", self.data_path, ("auto", "memory", "stream"))
        choose("placement", self.placement, PLACEMENTS)
        check_positive(self, "train_size", "test_size", "image_size", "num_classes", optional=True)
        if not 0 <= self.seed < SEED_LIMIT:
            raise UsageError(f"seed must be an integer in [0, 2**32), got {self.seed}")
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None and not dataset.sized:
                sized = ", ".join(n for n, e in DATASETS.items() if e.sized)
                raise UsageError(f"--{name.replace('_', '-')} sets the size of a sized dataset ({sized}); "
                                 f"{self.dataset} has a fixed size")
        for name in DATASET_SETTINGS:  # set for a dataset that does not read it: it would do nothing
            if getattr(self, name) not in (None, False) and name not in dataset.reads and not dataset.plugin:
                readers = ", ".join(n for n, e in DATASETS.items() if name in e.reads)
                raise UsageError(f"--{name.replace('_', '-')} is a setting of --dataset {readers}; {self.dataset} "
                                 "does not use it: leave it out")
        check_wandb_project(self.wandb_project)
        check_positive(self, "decode_block")
        check_label_noise(self.label_noise)
        check_data_dir(self.data_dir, self.download, "download" in dataset.reads)
        check_run_name(self.name)  # --out, the run directory and --storage: RunDir.check, before the data loads
        if self.placement != "pack" and not getattr(self, "workers", 0) and not getattr(self, "actors", 0):
            flags = [flag for name, flag in (("workers", "--workers N"), ("actors", "--actors K"))
                     if hasattr(self, name) and name not in self.NEEDS]  # a setting this method refuses: no hint
            raise UsageError(f"--placement {self.placement} places Ray Train workers or shard actors: it needs "
                             f"{' or '.join(flags) or 'a method that uses them'}")
        if isinstance(getattr(self, "actors", None), int) and self.actors > 0:  # the methods with shard actors
            from raypkg.distributed.placement import MIN_CPUS_PER_ACTOR, check_local_placement

            check_local_placement(self.actors, self.placement, "--actors", MIN_CPUS_PER_ACTOR)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def data_options(self) -> dict[str, Any]:
        """The keyword arguments of ``raypkg.data.load_dataset`` besides the name."""
        return {"data_dir": self.data_dir, "download": self.download, "seed": self.seed,
                "train_size": self.train_size, "test_size": self.test_size, "flat": self.flat,
                "normalize": self.normalize, "image_size": self.image_size, "num_classes": self.num_classes,
                "shape": self.shape, "data_path": self.data_path, "label_noise": self.label_noise}


@dataclass
class TrainConfig(RunConfig):
    """A run of the training engine: RunConfig plus optimisation and placement. Method
    configs extend it."""

    epochs: int = setting(30, "Training epochs.")
    batch_size: int = setting(64, "Mini-batch size (per worker on Ray Train).")
    # One value, or one per phase of the piecewise schedule (the DeltaGrad README's
    # ``--lr 0.1 0.05 --lrlen 10 10``: 0.1 for 10 epochs, then 0.05 for 10).
    lr: list[float] = setting(help="Learning rate; several values with --lrlen make a piecewise schedule. "
                              "Default: the model's (0.1; LeNet-5 0.03, ResNet-34 and -56 0.05, ResNet-50 0.01: "
                              "raypkg.models.defaults).",
                              factory=list)
    lrlen: list[int] = setting(help="Epochs for each --lr value, e.g. `--lr 0.1 0.05 --lrlen 10 10`.", factory=list)
    schedule: str = setting("cosine", "LR schedule (cosine and linear decay to 0 at the last epoch).", choices=SCHEDULES)
    milestones: list[float] = setting(help="multistep: epochs (may be fractional) at which lr *= gamma.", factory=list)
    gamma: float = setting(0.1, "multistep decay factor.")
    lr_warmup_epochs: int = setting(0, "Linear LR warm-up epochs (from 0, per step), any schedule.")
    momentum: float = setting(0.9, "SGD momentum.")
    nesterov: bool = setting(False, "Nesterov momentum.")
    weight_decay: float = setting(5e-4, "L2 weight decay.", flag="--weight-decay/--wd")
    workers: int = setting(0, "0: train in this process; N: Ray Train with N workers.")
    precision: str = setting("auto", "Arithmetic of every pass that trains or scores: bf16 autocast (fp32 weights, "
                             "optimizer and loss) or fp32. auto: bf16 on CUDA or a CPU with avx512_bf16/amx "
                             "when one real batch's forward + backward is timed faster; else fp32. The run's "
                             "config.yaml records the choice.", choices=PRECISIONS)
    memory_format: str = setting("auto", "Layout of a convolutional model's weights and activations. auto: "
                                 "channels_last when one real batch's forward + backward is timed faster "
                                 "(convolutional models only). The run's config.yaml records the choice.",
                                 choices=MEMORY_FORMATS)
    compile: str = setting("auto", "torch.compile the training step's forward and backward (on a GPU with CUDA "
                           "graphs: one launch replays a pass). auto: on a GPU, on when one real batch's step is "
                           "timed faster compiled and the saving over this run's steps exceeds the compile time; "
                           "off on a CPU (it did not pay there). The run's config.yaml records the choice.",
                           choices=COMPILES)
    target_acc: float | None = setting(None, "Time-to-accuracy target: summary.json's tta_s is the seconds from "
                                       "the run's first phase to the end of the first epoch whose test accuracy "
                                       "reaches it, evaluation excluded (tta_eval_s).")
    augment: bool | None = setting(None, "Random crop + flip (default: the dataset's).")
    drop_last: bool = setting(True, "Drop each epoch's ragged last batch (unless it is the only one), as timm's "
                                    "training loader does: a batch of a few examples takes a full step and "
                                    "updates batch norm's running statistics from those few (--keep-last: train "
                                    "it, the default before 2026-11-26).", flag="--drop-last/--keep-last")
    max_failures: int = setting(1, "Ray Train restarts from the last checkpoint.")
    threads: int | None = setting(None, "Torch threads that train, in this process (--workers 0) and in each Ray "
                                  "Train worker alike, so both give the same sums. Default: this process's count "
                                  "(torch's: its cores, or $OMP_NUM_THREADS), shared evenly by N > 1 workers. The "
                                  "run's config.yaml records it.")
    cpus_per_worker: float | None = setting(None, "CPUs each Ray Train worker asks for (default: an even share "
                                            "of the cluster's CPUs, at most 4); smaller lets a restarted worker "
                                            "group fit on fewer nodes.")
    stack: list[str] = setting(help="Algorithms stacked onto this method's training, comma-separated or one --with "
                               "each. Their flags (`effray run NAME --help`) then apply, e.g. --with sparse "
                               "--density 0.05 (raypkg.algorithms).",
                               factory=list, flag="--with")

    # What the method's batch plan is, if it brings one (a stack takes one: raypkg.algorithms).
    BATCH_PLAN: ClassVar[str | None] = None
    # Whether that plan reads streamed images itself, in the training process, as it picks
    # them (InfoBatch's, CREST's), rather than through Ray Data's prefetch (the default plan's).
    PLAN_READS_FILES: ClassVar[bool] = False

    def __post_init__(self) -> None:
        # list-valued keys also accept one number (from a YAML file or a tune space)
        for key in ("lr", "lrlen", "milestones"):
            value = getattr(self, key)
            setattr(self, key, list(value) if isinstance(value, (list, tuple)) else [value])
        if not self.lr:  # none given: the model's own
            self.lr = [default_lr(str(self.model))]
        self.stack = list(stack_of(self.stack))

    def for_training(self) -> "TrainConfig":
        """The config the engine trains with (sparse training's --multiplier stretches it)."""
        return self

    def resolved(self) -> "TrainConfig":
        """``lrlen`` makes the schedule piecewise."""
        cfg = super().resolved()
        return dataclasses.replace(cfg, schedule="piecewise") if cfg.lrlen else cfg

    def validate(self) -> "TrainConfig":
        """Raise a one-line UsageError for any value that cannot work; returns self unchanged."""
        super().validate()
        choose("schedule", self.schedule, SCHEDULES)
        check_epochs(self.epochs)
        check_positive(self, "batch_size")
        check_at_least_zero(self, "workers", "lr_warmup_epochs", "max_failures", "weight_decay", "momentum")
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            raise UsageError(f"threads must be an integer in [1, {MAX_THREADS}], got {self.threads}")
        if self.cpus_per_worker is not None and self.cpus_per_worker <= 0:
            raise UsageError(f"cpus-per-worker must be > 0, got {self.cpus_per_worker:g}")
        if self.max_failures != 1 and not self.workers:  # as --placement and --cpus-per-worker are
            needs = "--workers N" if "workers" not in self.NEEDS else "a method that trains on Ray Train workers"
            raise UsageError(f"--max-failures restarts Ray Train workers from their last checkpoint: it needs {needs}")
        if self.cpus_per_worker is not None and not self.workers:
            raise UsageError("--cpus-per-worker sizes Ray Train workers: it needs --workers N")
        check_lr_lists(self.lr, self.lrlen, self.epochs, piecewise=self.schedule == "piecewise")
        if self.momentum >= 1:
            raise UsageError(f"momentum must be in [0, 1), got {self.momentum:g}")
        if self.nesterov and self.momentum == 0:
            raise UsageError("--nesterov needs a momentum > 0")
        if not 0 < self.gamma <= 1:
            raise UsageError(f"gamma must be in (0, 1], got {self.gamma:g}")
        if any(m <= 0 or m > self.epochs for m in self.milestones):
            raise UsageError(f"milestones must be epochs in (0, {self.epochs}], got {self.milestones}")
        check_target_acc(self.target_acc)
        choose("precision", self.precision, PRECISIONS)
        choose("memory format", self.memory_format, MEMORY_FORMATS)
        choose("compile", self.compile, COMPILES)
        if self.memory_format == "channels_last":  # known from the model's name, before any data loads
            from raypkg.engine.execution import check_memory_format, model_is_convolutional

            check_memory_format(self, model_is_convolutional(str(self.model)))
        if self.lr_warmup_epochs >= self.epochs:
            raise UsageError(f"lr-warmup-epochs must be below epochs ({self.epochs}), got {self.lr_warmup_epochs}")
        if self.workers and not self.use_gpu:
            from raypkg.distributed.placement import check_local_placement

            check_local_placement(self.workers, self.placement)
        return self


WANDB_PROJECT_FORBIDDEN = "/\\#?%:"  # characters W&B refuses in a project name (only once the run starts)


def check_wandb_project(project: str) -> None:
    """A W&B project name W&B accepts: refused before any work, not by wandb.init after it."""
    bad = sorted(set(project) & set(WANDB_PROJECT_FORBIDDEN))
    if not project.strip() or bad or len(project) > 128:
        raise UsageError(f"wandb-project {project!r} is not a W&B project name: 1 to 128 characters, none of "
                         f"{' '.join(WANDB_PROJECT_FORBIDDEN)}")


def check_target_acc(value: float | None, name: str = "target-acc") -> float | None:
    """The one check of a time-to-accuracy target, whatever the entry point (a training
    config, ``bench frontier --target-acc``, ``report --target-acc``): None, or a test
    accuracy in (0, 1] (nan is neither); else a one-line UsageError."""
    if value is not None and not 0 < value <= 1:
        raise UsageError(f"{name} must be a test accuracy in (0, 1], got {value:g}")
    return value


def _type_ok(value: Any, hint: Any) -> bool:
    """Does ``value`` (from a flag, a YAML file or a tune space) fit the annotation ``hint``?"""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, list) and all(_type_ok(v, args[0]) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def _type_name(hint: Any) -> str:
    names = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string",
             type(None): "null"}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        return f"a list of {_type_name(args[0]).replace('an ', '').replace('a ', '')}s"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def check_field_types(cfg) -> None:
    """Every field holds a value of its annotated type (``epochs: .nan`` or ``lr: [nan]``
    is refused here, with the key and what it must be)."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value, hint = getattr(cfg, f.name), hints[f.name]
        if not _type_ok(value, hint):
            raise UsageError(f"{f.name.replace('_', '-')} must be {_type_name(hint)}, got {value!r}")
        ints = [v for v in (value if isinstance(value, list) else [value])
                if isinstance(v, numbers.Integral) and not isinstance(v, bool)]
        for v in ints:
            check_int64(f.name.replace('_', '-'), v)


def field_default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def check_needs(cfg, given=()) -> None:
    """A setting of ``cfg.NEEDS`` that is set (other than its default, or named in ``given``:
    the flags or keywords given) where it cannot act is a one-line UsageError: nothing is
    silently ignored, whether it comes from a flag, a config file, a tune space or the API."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    for name, (acts, says) in getattr(cfg, "NEEDS", {}).items():  # a config without RunConfig's has none
        if (name in given or getattr(cfg, name) != field_default(fields[name])) and not acts(cfg):
            raise UsageError(f"--{name.replace('_', '-')} {says}")


def plain_ints(cfg) -> dict[str, int]:
    """The fields of ``cfg`` holding integral numpy values (from a tune space), as int."""
    return {f.name: int(value) for f in dataclasses.fields(cfg)
            if isinstance(value := getattr(cfg, f.name), numbers.Integral) and not isinstance(value, (bool, int))}


def check_positive(cfg, *names: str, optional: bool = False) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not (optional and value is None) and value <= 0:
            raise UsageError(f"{name.replace('_', '-')} must be a positive integer, got {value}")


def expanded_paths(cfg) -> dict[str, str]:
    """``--out``, ``--data-dir`` and a local ``--storage`` with a leading ``~`` expanded (a
    shell does this only before a space, not in ``--out=~/x`` or a config file)."""
    out = {}
    for name in ("out", "data_dir", "storage"):
        value = getattr(cfg, name, None)
        if isinstance(value, str) and value.startswith("~"):
            out[name] = os.path.expanduser(value)
    return out


def check_at_least_zero(cfg, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < 0:
            raise UsageError(f"{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name):g}")


def check_epochs(epochs: int) -> None:
    """The one check of a training's epochs: a positive integer, at most ``MAX_EPOCHS``."""
    if not 0 < epochs <= MAX_EPOCHS:
        raise UsageError(f"epochs must be a positive integer, at most {MAX_EPOCHS:,}, got {epochs}")


def check_lr_lists(lr: list[float], lrlen: list[int], epochs: int, piecewise: bool = False) -> None:
    """One positive lr, or several with one positive epoch count each (``--lrlen``) that add
    up to at most ``epochs`` (the last lr goes on to the end; more would be cut)."""
    if not lr or any(not math.isfinite(v) or v <= 0 for v in lr):
        raise UsageError(f"lr must be one or more positive finite numbers, got {lr}")
    if piecewise or lrlen:
        if len(lrlen) != len(lr) or any(n <= 0 for n in lrlen):
            raise UsageError(f"--lrlen needs one positive epoch count per --lr value; got lr={lr} lrlen={lrlen}")
        if sum(lrlen) > epochs:
            raise UsageError(f"--lrlen {' '.join(map(str, lrlen))} adds up to {sum(lrlen)} epochs, more than --epochs "
                             f"{epochs}: give --epochs {sum(lrlen)}, or shorter --lrlen")
    elif len(lr) != 1:
        raise UsageError(f"several --lr values need --lrlen (piecewise schedule); got lr={lr}")


def check_data_dir(data_dir: str | None, download: bool = False, downloadable: bool = False) -> None:
    """--data-dir is a directory; one that does not exist yet is one only --download makes,
    and --download needs one to fetch into."""
    if download and data_dir is None:
        raise UsageError("--download fetches the dataset into --data-dir DIR: give --data-dir")
    if data_dir is not None and Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise UsageError(f"data directory {data_dir!r} is a file; give the directory that holds the dataset")
    if data_dir is not None and not download and not Path(data_dir).is_dir():
        raise UsageError(f"data directory {data_dir!r} does not exist: give the directory that holds the dataset"
                         + (", or add --download to fetch it there" if downloadable else ""))


def config_fields(cls=TrainConfig) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def flag_aliases(cls) -> dict[str, str]:
    """Other names of fields, from their flags: ``method`` -> ``selection`` for select's
    ``--selection/--method`` (a switch's ``--gpu/--cpu`` is on/off, not two names)."""
    hints = typing.get_type_hints(cls)
    aliases = {}
    for f in dataclasses.fields(cls):
        flag = f.metadata.get("flag") or ""
        if "/" in flag and bool not in (hints[f.name], *typing.get_args(hints[f.name])):
            for name in flag.split("/"):
                aliases.setdefault(name.lstrip("-").replace("-", "_"), f.name)
    return {alias: name for alias, name in aliases.items() if alias != name}


def listed(names: list[str], most: int = 10) -> str:
    """``names`` comma-separated, the first ``most`` of them and how many more."""
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def stack_of(values) -> tuple[str, ...]:
    """A config's ``stack`` (a name, a list, or a comma-separated string) as a tuple; any
    other value (a mapping ``{sparse: 1}``, a number, a list holding one) is a one-line
    UsageError, not read as a list of its keys."""
    if values is None or isinstance(values, (str, list, tuple)) and not values:
        return ()
    items = values.split(",") if isinstance(values, str) else values
    if not isinstance(items, (list, tuple)) or not all(isinstance(name, str) for name in items):
        raise UsageError(f"stack must be a list of names, got {values!r}")
    return tuple(name.strip() for name in items)


def parse_stack(name: str) -> tuple[str, tuple[str, ...]]:
    """A name and the stack joined to it by ``+``: ``"infobatch+sparse"`` is ``("infobatch",
    ("sparse",))`` (a recipe, a tune space's method, a frontier's stack of cases). The one
    place a ``+`` is read; an empty member stays, for its reader to refuse in its own words."""
    base, *stack = str(name).split("+")
    return base, tuple(stack)
