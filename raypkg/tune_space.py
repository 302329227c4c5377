"""A tune space file: read and checked before Ray starts (``effray tune --space FILE``;
without it the one shipped in raypkg/tune_spaces/METHOD.yaml)::

    method: train            # a registered tunable
    metric: test_acc         # what a trial reports
    mode: max                # max | min
    scheduler: asha          # fifo | asha (stops laggards at epoch rungs on the metric; on
                             # test_acc when the metric is tta_objective, unknown mid-run)
    search: random           # random | grid
    base: {dataset: digits, epochs: 10}      # fixed config values
    space:                   # config key -> distribution
      lr: {loguniform: [0.01, 0.5]}
      batch_size: {choice: [32, 64, 128]}

Distributions: choice, grid, uniform, loguniform, randint. ``read_space`` refuses every
unknown key and bad distribution in one line; ``check_trial_config`` then builds the base
and the trials at the space's edges (``candidates``) as configs, and refuses a setting a
trial sets itself (``TRIAL_OWN``) or a relative path it would read (``TRIAL_PATHS``).
``raypkg.tuning`` runs the checked space on Tune: a key or distribution added here is also
read there (``to_tune_domain``, the scheduler and search in ``run_tune``).
"""

from __future__ import annotations

import math
import os
import typing
from pathlib import Path

import yaml

from raypkg.config import build_config, load_yaml
from raypkg.engine.config import config_fields, listed, parse_stack, stack_of
from raypkg.errors import UsageError, choose
from raypkg.plugins import plugin_target
from raypkg.recipe import TTA_METRIC
from raypkg.recipe_registry import TRIAL_SETTINGS, find_recipe, load_recipes

SPACE_KEYS = {"method", "metric", "mode", "scheduler", "search", "base", "space"}
DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "randint")


def read_space(path: str | Path) -> dict:
    """Parse and check a space file; every problem is a one-line UsageError."""
    recipes = load_recipes()
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"space file {str(path)!r} does not exist")
    try:
        spec = load_yaml(path.read_text())
    except UnicodeDecodeError:
        raise UsageError(f"space file {str(path)!r} is not a text file (YAML)") from None
    except OSError as e:
        raise UsageError(f"cannot read space file {str(path)!r}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise UsageError(f"space file {str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    if spec is None:
        raise UsageError(f"space file {str(path)!r} is empty; it needs method: and space: entries")
    if not isinstance(spec, dict):
        raise UsageError(f"space file {str(path)!r} must be a mapping")
    unknown = sorted(str(k) for k in set(spec) - SPACE_KEYS)
    if unknown:
        raise UsageError(f"unknown key(s) {listed(unknown)} in {str(path)!r}; allowed: {', '.join(sorted(SPACE_KEYS))}")
    if "method" not in spec:
        raise UsageError(f"space file {str(path)!r} names no method (method: NAME); choose one of: "
                         f"{', '.join(sorted(recipes))}")
    method, named = parse_stack(spec["method"])  # infobatch+sparse: a stack
    if method not in recipes and plugin_target("method", method) is None:  # a plug-in's: refused as it loads
        choose("tunable method", method, recipes)
    for section in ("base", "space"):
        if not isinstance(spec.get(section) or {}, dict):
            raise UsageError(f"{section}: in {str(path)!r} must be a mapping of config keys, got "
                             f"{type(spec[section]).__name__}")
    base_stack = stack_of((spec.get("base") or {}).get("stack"))
    twice = [name for name in base_stack if name in named]
    if twice:  # as raypkg.run("infobatch+sparse", stack=["sparse"]) and --with sparse,sparse are
        raise UsageError(f"base: stack names {twice[0]} twice: the method {spec['method']!r} names it already")
    recipe = find_recipe(str(spec["method"]), base_stack)
    fields = config_fields(recipe.config_cls)
    for section in ("base", "space"):
        bad = sorted(str(k) for k in set(spec.get(section) or {}) - fields)
        if bad:
            raise UsageError(f"unknown config key(s) {listed(bad)} under {section!r} in {str(path)!r}; "
                             f"allowed: {', '.join(sorted(fields))}")
    for key, dist in (spec.get("space") or {}).items():
        if not (isinstance(dist, dict) and len(dist) == 1 and next(iter(dist)) in DISTRIBUTIONS):
            raise UsageError(f"space entry {key!r} in {str(path)!r} must be one of "
                             f"{{{' | '.join(DISTRIBUTIONS)}: [...]}}, got {dist!r}")
        check_distribution(key, dist, takes_integers(recipe.config_cls, key))
    choose("metric", spec.setdefault("metric", "test_acc"), recipe.metrics + (TTA_METRIC,))
    choose("mode", spec.setdefault("mode", "max"), ("max", "min"))
    if spec["metric"] == TTA_METRIC and ((spec.get("base") or {}).get("target_acc") is None or spec["mode"] != "min"):
        raise UsageError(f"metric: {TTA_METRIC} in {str(path)!r} needs base: target_acc (the target every trial "
                         f"races to) and mode: min")
    choose("scheduler", spec.setdefault("scheduler", "fifo"), ("fifo", "asha"))
    choose("search", spec.setdefault("search", "random"), ("random", "grid"))
    if not spec.get("space"):
        raise UsageError(f"space file {str(path)!r} sweeps nothing: give at least one entry under space:")
    return spec


def takes_integers(config_cls: type, key: str) -> bool:
    """Does setting ``key`` of ``config_cls`` take integers only (``epochs``, ``batch_size``)?"""
    hint = typing.get_type_hints(config_cls).get(key)
    return int in (hint, *typing.get_args(hint)) and float not in typing.get_args(hint)


def check_distribution(key: str, dist: dict, integers: bool = False) -> None:
    """A distribution's arguments: a non-empty list for choice/grid; two finite numbers
    low < high for uniform, also low > 0 for loguniform, two integers for randint. A key
    that takes ``integers`` takes no uniform or loguniform (it would draw 2.7 epochs)."""
    (kind, args), = dist.items()
    if kind in ("choice", "grid"):
        if not isinstance(args, list) or not args:
            raise UsageError(f"space entry {key!r}: {kind} takes a non-empty list, got {args!r}")
        return
    if integers and kind != "randint":
        raise UsageError(f"space entry {key!r}: {kind} draws real numbers, and {key} takes an integer: use "
                         "randint: [low, high] (high excluded) or choice: [...]")
    number = int if kind == "randint" else (int, float)
    if not (isinstance(args, list) and len(args) == 2
            and all(isinstance(a, number) and not isinstance(a, bool) and math.isfinite(a) for a in args)):
        what = "two integers" if kind == "randint" else "two finite numbers"
        raise UsageError(f"space entry {key!r}: {kind} takes [low, high], {what}, got {args!r}")
    low, high = args
    if not low < high:
        raise UsageError(f"space entry {key!r}: {kind} needs low < high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise UsageError(f"space entry {key!r}: loguniform needs low > 0, got {low}")


MOST_TRIALS_CHECKED = 4096  # beyond this many combinations, each value is checked with the others' first


def candidates(dist: dict) -> list:
    """The values a distribution's trials can take at the edges: every value of a choice or
    grid, both ends of a range (randint's high is exclusive)."""
    (kind, args), = dist.items()
    return list(args) if kind in ("choice", "grid") else [args[0], args[1] - 1 if kind == "randint" else args[1]]


# Each setting a trial sets itself (TRIAL_SETTINGS) and why: a space or --set that gives it
# another value is refused, not silently overridden. A trial trains in one process on one torch thread.
MORE_CPUS = "; for more CPUs at once, run more trials at once (--max-concurrent N, default one per CPU)"
TRIAL_OWN = {"threads": ("one process, one torch thread, no Ray Train workers", MORE_CPUS),
             "workers": ("one process, one torch thread, no Ray Train workers", MORE_CPUS),
             "actors": ("its selection's gradients in its own process, no shard actors", MORE_CPUS),
             "cache": ("no selection cache: a trial's warm-ups are its own", ""),
             "storage": ("the trials are stored where `effray tune --storage` says", "; give --storage to effray tune"),
             "wandb": ("the sweep logs its trials to W&B as `effray tune --wandb` says", "; give --wandb to effray tune"),
             "progress": ("no progress bar in a trial", "")}


# The settings that name a path a trial reads: a trial runs in a working directory of its own.
TRIAL_PATHS = ("run", "data_dir")


def given_values(spec: dict, settings: dict | None = None) -> list[tuple[str, str, object]]:
    """(where it is given, key, value) of every base value (``--set``) and space candidate."""
    settings = settings or {}
    given = [(f"--set {key}={value}" if key in settings else f"the space file's base sets {key}={value}",
              key, value) for key, value in (spec.get("base") or {}).items()]
    return given + [(f"space entry {key!r} sweeps {key}={value}", key, value)
                    for key, dist in (spec.get("space") or {}).items() for value in candidates(dist)]


def check_trial_own(spec: dict, settings: dict | None = None) -> None:
    """Refuse a base (``--set``) or space value of a setting each trial sets itself
    (``TRIAL_OWN``), unless it is the trial's own value: it would be ignored; and a relative
    path a trial would read (``TRIAL_PATHS``): it would be read from the trial's directory."""
    for where, key, value in given_values(spec, settings):
        if key in TRIAL_OWN and value != TRIAL_SETTINGS[key]:
            why, instead = TRIAL_OWN[key]
            raise UsageError(f"{where}, but each Tune trial sets {key} itself ({why}): remove it{instead}")
        if key in TRIAL_PATHS and isinstance(value, str) and not os.path.isabs(os.path.expanduser(value)):
            raise UsageError(f"{where}, a relative path, but each Tune trial runs in a directory of its own: give "
                             f"the absolute path ({os.path.abspath(value)})")


def check_trial_config(spec: dict, settings: dict | None = None) -> None:
    """Before Ray starts: the base must make a valid config, and so must every trial of the
    space's candidates (``candidates``), every combination of them (or, past
    MOST_TRIALS_CHECKED combinations, each value with the other entries' first). The first
    invalid trial is refused, naming its values: no trial fails inside Ray on a setting
    its config refuses, and no swept setting is silently ignored by its base. Each trial is
    checked as if typed: its stack (``find_recipe``: an unknown name, a duplicate, a pair that
    does not stack) and, for a recipe with a data check, that check against the data
    (progressive resizing on a model that cannot take its smallest images). ``settings``
    (``--set``) are named as such when they make the base invalid."""
    import itertools

    from raypkg.data.registry import load_dataset
    from raypkg.models.registry import check_model

    loaded = {}

    def valid(values: dict) -> str | None:
        try:
            cfg = build_config(spec["method"], values, where="stack").validate()
            recipe = find_recipe(spec["method"], getattr(cfg, "stack", ()))
            if recipe.check and recipe.load is None:  # against the data, once per data setting
                options = cfg.data_options()
                key = (cfg.dataset, repr(sorted(options.items())))
                if key not in loaded:
                    loaded[key] = load_dataset(cfg.dataset, **options)
                check_model(cfg, loaded[key])
                recipe.check(cfg, loaded[key])
        except TypeError as e:
            return f"bad value: {e}"
        except UsageError as e:
            return str(e)
        return None

    check_trial_own(spec, settings)
    base = dict(spec.get("base") or {})
    error = valid(base)
    if error and settings and not valid({k: v for k, v in base.items() if k not in settings}):
        raise UsageError(f"{' '.join(f'--set {k}={v}' for k, v in settings.items())}: {error}")
    if error:
        raise UsageError(f"the space file's base is invalid: {error}")
    values = {key: candidates(dist) for key, dist in (spec.get("space") or {}).items()}
    if math.prod(len(v) for v in values.values()) <= MOST_TRIALS_CHECKED:
        trials = (dict(zip(values, combination)) for combination in itertools.product(*values.values()))
    else:
        first = {key: v[0] for key, v in values.items()}
        trials = ({**first, key: value} for key, v in values.items() for value in v)
    for trial in trials:
        error = valid({**base, **trial})
        if error:
            shown = ", ".join(f"{key}={value}" for key, value in trial.items())
            raise UsageError(f"space: the trial {shown} is invalid: {error}")
