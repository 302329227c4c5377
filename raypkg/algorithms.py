"""Algorithms: what a method does while the engine trains, as callbacks and at most one
batch plan on its loop (as Composer's algorithms act on events), so that methods stack.

Every recipe's training stage ends in ``train_stack(run, own)``: the method's own algorithm
(None for full-data training) and those its config's ``stack`` names (``--with sparse``)
train together through one ``raypkg.engine.trainer.train`` call, which wires the sink, the
augmentation and the storage once. The method's own notes stay at the summary's top
level; an added algorithm's go under its name (``summary["sparse"]["R_s"]``).

- **Built from the run** (``Algorithm(cfg, run)``): the config that trains, and the run's
  data, what earlier stages left (``run.state``), the pools its caller lends
  (``run.shared``) and a stack of resources closed when the run ends (``run.resources``:
  CREST opens its shard actors there).
- **Order** (``Algorithm.order``): the data plan first, then the loss, then the masks,
  then the average of the weights (EMA); callbacks act in that order (AGC, a gradient
  correction, acts after the masks: ``raypkg.methods.sparse.algorithm``).
- **Refused before any work** (``stacked_class``): a name that does not stack (the row's
  ``stacks`` says why), two batch plans, and a setting two members both define; and a
  config whose class is not its stack's (``check_stack``, as a recipe runs it).

A method that stacks is one ``Algorithm`` subclass, found from its row's name in
``raypkg.method_registry.METHODS`` (``raypkg/methods/NAME.py``, or ``algorithm.py`` of the
package ``raypkg/methods/NAME/``): its ``settings`` (a ``MethodSettings`` dataclass of its own
fields, free of torch, mixed into the config that trains), its callbacks, and its docstring,
the help of `effray run NAME`. That command's config is ``method_config(NAME)``, the training
config with the settings mixed in. A row with no recipe module of its own gets its recipe
made by the registry (``raypkg.recipe_registry.algorithm_recipe``) and its command by the
CLI. A method from outside effray is the same class in a module of its own, named by its
import path (``MODULE:CLASS``: ``raypkg.method_registry.find_method`` yields its row); its
settings' flags may not be effray's own (``method_settings``), and its code raising inside
training fails the run in one line naming its frame (``plugin_failure``).

This module sits below the recipes: it imports neither ``raypkg.recipe`` nor the registry at import (a ``run`` here is a ``raypkg.recipe.Run``, the recipe's, handed down;
the recipe imports ``check_stack`` from here).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

from raypkg.errors import UsageError

if TYPE_CHECKING:
    from raypkg.engine.trainer import TrainResult

# Algorithm.order: callbacks act on every event in this order.
DATA, LOSS, MASKS, AVERAGE = 0, 1, 2, 3


class MethodSettings:
    """The base of a method's settings: a dataclass of its own fields (``setting()``), free
    of torch, mixed into a config that trains (``method_config``, or another method's with
    ``--with``). No batch plan (``BATCH_PLAN``: what its plan is called, if it brings one)
    and no setting that acts only with another (``NEEDS``) unless it says; ``validate``
    runs the training config's checks, then every mixed-in settings class's own
    ``checks()``, each once."""

    BATCH_PLAN: ClassVar[str | None] = None
    NEEDS: ClassVar[dict] = {}

    def checks(self) -> None:
        """Raise a one-line UsageError for a setting of this class that cannot work."""

    def validate(self):
        super().validate()  # the config's it is mixed into (TrainConfig's)
        for cls in reversed(type(self).__mro__):  # the settings mixed in first check first
            if "checks" in vars(cls):
                vars(cls)["checks"](self)
        return self


def kept_count(batch_size: int, keep: float) -> int:
    """round(keep x B), halves rounded up, at least 1: the examples of a batch that a method
    choosing inside each batch trains (selective backprop, proxy selection)."""
    return max(1, math.floor(keep * batch_size + 0.5))


class Algorithm:
    """One method's part of a training run, built from the config that trains and the run
    (``__init__(cfg, run)``): ``plan`` (None: the engine's shuffled batches), ``callbacks``,
    and for a fixed subset the ``split`` it trains on and its example ``weights``.
    ``finish`` writes its artifacts and returns its notes.

    What the platform reads off the class: ``metrics``, the columns it adds to the epoch
    rows; ``check(cfg, data)``, its check against the loaded data (a note, or a UsageError);
    ``bench_cases``, its rows in `effray bench frontier` (``raypkg.recipe.BenchCase``);
    ``stacked_flops``, what it does to their FLOPs when added to another method's; and
    ``headline(summary)`` if it has one, a line its `effray run NAME` prints first. A method
    that stacks names its ``settings`` (a ``MethodSettings``), and its docstring is the help
    of its `effray run NAME` (``method_config``)."""

    name: ClassVar[str]
    settings: ClassVar[type | None] = None
    # fields `effray run NAME`'s config sets its own way, as dataclasses.make_dataclass takes
    # them: (name, type, setting(...)); a default of its own (progressive resizing's model)
    command_fields: ClassVar[tuple] = ()
    order: ClassVar[int] = DATA
    metrics: ClassVar[tuple[str, ...]] = ()
    bench_cases: ClassVar[tuple] = ()
    headline: ClassVar[Callable[[dict], str] | None] = None
    plan: Any = None
    callbacks: Sequence = ()
    split: Any = None  # the DataSplits it trains on (None: the run's)
    weights: Any = None  # one per training example (None: all 1)

    @staticmethod
    def check(cfg, data) -> str | None:
        return None

    @staticmethod
    def stacked_flops(cfg, per_example: Callable[..., float]) -> Callable[..., float]:
        """The frontier's forward FLOPs per example of a method with this algorithm added
        (``per_example(density=1.0, init="ERK")``: the model's, dense or masked); unchanged
        unless the algorithm changes what a forward pass costs (sparse masks)."""
        return per_example

    def finish(self, run, trained: "TrainResult") -> dict:
        return {}


def stackable() -> dict[str, Any]:
    """The methods that stack onto another's training, by name."""
    from raypkg.method_registry import METHODS

    return {m.name: m for m in METHODS if not m.stacks}


@functools.cache
def method_config(name: str) -> type:
    """The config of `effray run NAME` for a method that stacks: the training config with
    its algorithm's settings mixed in (what ``--with NAME`` adds to full training), its
    docstring (the command's help) the algorithm's. Named as its settings are (``EmaSettings``:
    ``EmaConfig``); it pickles by the method's name (``_reduce``). ``name`` may be a plug-in's
    (``MODULE:CLASS``, an entry point's: ``raypkg.method_registry.find_method``)."""
    from raypkg.engine.config import TrainConfig
    from raypkg.method_registry import find_method, import_object

    method = find_method(name)
    if method is None or method.stacks:
        raise UsageError(f"{name}: the algorithms that stack are {', '.join(stackable())}, or MODULE:CLASS")
    algorithm = import_object(method.algorithm)
    settings = method_settings(method)
    title = settings.__name__.removesuffix("Settings") + "Config"
    cls = dataclasses.make_dataclass(title, list(algorithm.command_fields), bases=(settings, TrainConfig),
                                     namespace={"__doc__": algorithm.__doc__, "__reduce__": _reduce, "METHOD": name})
    cls.__module__ = __name__
    cls.BASE = cls
    return cls


# The flags of every training command that are not a config's fields.
COMMAND_FLAGS = {"--config", "--address", "--help", "-h"}


def flags_of(cls: type) -> dict[str, str]:
    """Every command-line flag of config or settings class ``cls``'s fields: flag -> field
    (``--x/--no-x`` both, a field's own ``flag`` and its other names)."""
    found = {}
    for f in dataclasses.fields(cls):
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        switch = isinstance(f.default, bool) and "/" not in flag  # --x/--no-x
        names = flag.split("/") if "/" in flag else [flag, *(["--no-" + flag[2:]] if switch else [])]
        found.update(dict.fromkeys(names, f.name))
    return found


def method_settings(method) -> type:
    """The settings of ``method``'s algorithm (a ``raypkg.method_registry.Method``); a plug-in's
    whose flags clash with effray's own (the training config's, ``--config``, ``--address``)
    refused in one line (a built-in's are tested)."""
    from raypkg.engine.config import TrainConfig
    from raypkg.method_registry import import_object

    settings = import_object(method.settings)
    if method.plugin:
        own = {**flags_of(TrainConfig), **dict.fromkeys(COMMAND_FLAGS, "")}
        clash = sorted(flag for flag in flags_of(settings) if flag in own)
        if clash:
            raise UsageError(f"method {method.name!r}: its setting {', '.join(clash)} clashes with effray's own flag "
                             f"of that name: rename it in {settings.__name__}")
    return settings


def method_point(method: str, value, s: dict, common: dict, n: int | None):
    """A ``BenchCase``'s ``config`` for a method that is one algorithm: its command's config
    (``method_config``) with the fields every frontier point shares."""
    return method_config(method)(**common)


def stacked_class(cls: type, stack: tuple[str, ...], where: str = "--with",
                  example: Callable[[str], str] | None = None) -> type:
    """``cls`` with the settings of every algorithm in ``stack`` mixed in (one class per
    combination); a name that does not stack, two batch plans or a setting two members
    both define is a UsageError, naming the stack as ``where`` says (``--with``, or a config
    file's ``stack:``). A method that does not stack is refused with ``example(name)``, an
    algorithm that stacks onto its training (``raypkg.recipe_registry.stacks_onto``, which
    knows the recipes; without it the line says NAME)."""
    if not stack:
        return cls
    from raypkg.engine.config import TrainConfig, config_fields
    from raypkg.method_registry import find_method

    entries = stackable()
    own = config_fields(cls) - config_fields(TrainConfig)
    plans = [cls.BATCH_PLAN] if getattr(cls, "BATCH_PLAN", None) else []
    bases = []
    for name in stack:
        if not name:  # "infobatch+", `stack: [sparse, ""]`: never printed as `--with : ...`
            raise UsageError(f"stack {list(stack)} has an empty member: name each algorithm "
                             f"({', '.join(entries)})")
        method = find_method(name)  # a plug-in's too (MODULE:CLASS), its import refused in one line
        if method is not None and method.stacks:
            other = example(name) if example else "NAME"
            raise UsageError(f"{where} {name}: {name} does not stack: it {method.stacks.format(other=other)}")
        if method is None:
            raise UsageError(f"{where} {name}: the algorithms that stack are {', '.join(entries)}, or MODULE:CLASS "
                             "(an Algorithm of your own)")
        if stack.count(name) > 1:
            raise UsageError(f"{where} names {name} twice")
        settings = method_settings(method)
        if issubclass(cls, settings):
            raise UsageError(f"{where} {name}: this method is {name} already")
        shared = sorted(config_fields(settings) & own)
        if shared:
            raise UsageError(f"{where} {name}: {name} and this method both set {', '.join(shared)}, each its own "
                             "way; they do not stack")
        if getattr(settings, "BATCH_PLAN", None):
            plans.append(settings.BATCH_PLAN)
        own |= config_fields(settings)
        bases.append(settings)
    if len(plans) > 1:
        raise UsageError(f"{where} {','.join(stack)}: one run takes one batch plan, and this stack has "
                         f"{len(plans)} ({'; '.join(plans)})")
    return _mixed(cls, tuple(bases))


@functools.cache
def _mixed(cls: type, bases: tuple[type, ...]) -> type:
    """The class of ``cls`` with ``bases`` (settings) mixed in: one per combination."""
    needs = {key: value for base in (cls, *bases) for key, value in getattr(base, "NEEDS", {}).items()}
    name = cls.__name__ + "".join(base.__name__.removesuffix("Settings") for base in bases)
    stacked = dataclasses.make_dataclass(name, [], bases=(*reversed(bases), cls),
                                         namespace={"NEEDS": needs, "__reduce__": _reduce})
    stacked.__module__ = __name__
    stacked.BASE = cls
    return stacked


def check_stack(cfg) -> None:
    """``cfg``'s class carries the settings of every algorithm its ``stack`` names (a config
    without a stack, DeltaGrad's: nothing to check)."""
    if not hasattr(cfg, "stack"):
        return
    base = getattr(type(cfg), "BASE", type(cfg))
    if stacked_class(base, tuple(cfg.stack)) is not type(cfg):
        raise UsageError(f"--with {','.join(cfg.stack) or '(none)'} does not match the config's class "
                         f"{type(cfg).__name__}: make it with raypkg.run or resolve_config")


def _reduce(cfg):
    """Pickle a stacked config by its base class and stack (the class is made at run time),
    a base made by ``method_config`` by its method's name."""
    base = cfg.BASE
    return _rebuild, (vars(base).get("METHOD", base), tuple(cfg.stack), dataclasses.asdict(cfg))


def _rebuild(base: type | str, stack: tuple[str, ...], values: dict):
    return stacked_class(method_config(base) if isinstance(base, str) else base, stack)(**values)


def stack_members(cfg, run, own: Callable[[Any], Algorithm] | None = None) -> list[Algorithm]:
    """The method's own algorithm (``own(cfg)`` builds it) and those ``cfg.stack`` names,
    built for the config that trains, in their order."""
    return [algorithm for _, algorithm in named_members(cfg, run, own)]


def named_members(cfg, run, own: Callable[[Any], Algorithm] | None = None) -> list[tuple[str | None, Algorithm]]:
    """``stack_members`` each with its name in ``cfg.stack`` (None: the method's own; a
    plug-in's is its import path, ``raypkg.method_registry.find_method``)."""
    from raypkg.method_registry import find_method, import_object

    added = [(name, import_object(find_method(name).algorithm)(cfg, run)) for name in cfg.stack]
    built = [(None, own(cfg))] if own else []
    return sorted([(name, a) for name, a in (*built, *added) if a is not None], key=lambda pair: pair[1].order)


def train_stack(run, own: Callable[[Any], Algorithm] | None = None, desc: str = "train") -> "TrainResult":
    """Train the method's own algorithm with the run's stack (``cfg.stack``) through one
    engine call, as phase ``train``; the final model goes to ``run.trained``. The own
    algorithm's notes go to the summary's top level, each added one's under its name. A
    plug-in's algorithm that raises fails the run in one line naming its frame
    (``RunFailed``, ``plugin_failure``)."""
    from raypkg.data.augment import use_augmentation
    from raypkg.engine.trainer import train

    cfg = run.cfg.for_training()  # every member builds from the config that trains (--multiplier)
    members = named_members(cfg, run, own)
    algorithms = [a for _, a in members]
    plans = [a.plan for a in algorithms if a.plan is not None]
    assert len(plans) <= 1, "stacked_class refuses two batch plans"
    split = next((a.split for a in algorithms if a.split is not None), run.data)
    weights = next((a.weights for a in algorithms if a.weights is not None), None)
    try:
        with run.sink.phase("train"):
            run.trained = train(cfg, split, weights=weights, plan=plans[0] if plans else None,
                                callbacks=[cb for a in algorithms for cb in a.callbacks],
                                augment=use_augmentation(cfg, run.data), on_epoch=run.sink.log_metrics,
                                storage=run.sink.storage, desc="+".join([desc, *cfg.stack]))
        for name, algorithm in members:
            notes = algorithm.finish(run, run.trained)
            run.note(**({name: notes} if name else notes))
    except Exception as e:
        failed = plugin_failure(e, {type(a): name or desc for name, a in members})
        if failed is None:
            raise
        raise failed from e
    if cfg.stack:
        run.note(stack=list(cfg.stack))
    return run.trained


def plugin_failure(error: Exception, classes: dict[type, str]):
    """A ``RunFailed`` naming the plug-in algorithm of ``classes`` (class -> its method's name;
    effray's own are skipped) whose code raised ``error`` and the frame where (``file.py:LINE
    in FUNCTION``), or None when no plug-in's code is in its traceback."""
    import inspect

    from raypkg.errors import RunFailed
    from raypkg.plugins import one_line, plugin_frame

    for cls, name in classes.items():
        if cls.__module__.startswith("raypkg."):
            continue
        file = inspect.getsourcefile(cls)
        frame = plugin_frame(error, [file]) if file else None
        if frame:
            return RunFailed(f"method {name!r} raised in training, at {frame}: {one_line(error)}")
    return None
