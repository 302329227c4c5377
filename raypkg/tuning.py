"""`effray tune METHOD`: Ray Tune over a YAML search space, every trial logged to W&B.

A space file (``--space FILE``; without it the one shipped in raypkg/tune_spaces/METHOD.yaml)::

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

Distributions: choice, grid, uniform, loguniform, randint. Every recipe
(``raypkg.recipe``) is tunable: a trial runs the method's recipe in its own process
(``raypkg.recipe_registry.run_trial``) and reports every metrics row it logs.

One file, in two halves read top to bottom: a space read and checked (``read_space`` to
``default_space``: every key and distribution refused in one line before Ray starts), then
run on Tune (``to_tune_domain`` to ``run_tune``). It stays whole because the halves change
together: each key a space may hold is checked in the first and read in the second, and a
reader adding one (a scheduler, a distribution) edits both here, not two modules that must
agree.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import typing
from datetime import datetime
from pathlib import Path

import yaml

from raypkg.config import build_config, check_settings_known, load_yaml
from raypkg.engine.config import config_fields, listed, parse_stack, stack_of
from raypkg.errors import RunFailed, UsageError, choose
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


def failed_trials(results) -> list[str]:
    """One line per trial of ``results`` (Tune's ResultGrid) that ended with an error: its
    trial id and the error's last line (the exception, not Ray's wrapping of it)."""
    lines = []
    for result in results:
        if result.error is not None:
            text = [line for line in str(result.error).splitlines() if line.strip()] or [type(result.error).__name__]
            trial = (result.metrics or {}).get("trial_id") or result.path.rsplit("/", 1)[-1]
            lines.append(f"trial {trial} failed: {text[-1].strip()}")
    return lines


SPACES_DIR = Path(__file__).parent / "tune_spaces"  # shipped with the package


def default_space(method: str) -> Path:
    """The space shipped for ``method`` (raypkg/tune_spaces/METHOD.yaml)."""
    path = SPACES_DIR / f"{method}.yaml"
    if not path.is_file() or method not in load_recipes():  # fastest-stack.yaml: a space of train's
        shipped = sorted(p.stem for p in SPACES_DIR.glob("*.yaml") if p.stem in load_recipes())
        raise UsageError(f"no built-in search space for {method!r} (built in: {', '.join(shipped)}); "
                         "pass one with --space FILE")
    return path


def to_tune_domain(dist: dict):
    from ray import tune

    (kind, args), = dist.items()
    if kind == "choice":
        return tune.choice(args)
    if kind == "grid":
        return tune.grid_search(args)
    return {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[kind](*args)


def setting_as_text(value):
    """A list-valued setting (a trial's stack, a piecewise lr) as trials.parquet keeps it, its
    items joined by commas, so each row says what it ran; any other value as it is."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def asha_metric(spec: dict) -> tuple[str, str]:
    """What ASHA ranks the trials at a rung (the same epoch) on: the space's metric, or for a
    time-to-accuracy, which is not known mid-run (a trial short of the target reports its
    penalty), the accuracy so far."""
    return ("test_acc", "max") if spec["metric"] == TTA_METRIC else (spec["metric"], spec["mode"])


def trial_resources(base: dict, concurrent: int) -> dict:
    """One trial's resources: a CPU (a trial trains in its own process: ``TRIAL_SETTINGS``),
    and, when the cluster has GPUs (unless ``use_gpu`` is False; True requires one), a share
    of them such that ``concurrent`` trials fit at once (``gpu_share``). The trial then sees
    its GPU (Ray sets CUDA_VISIBLE_DEVICES) and trains there; without a share it sees none."""
    from raypkg.distributed.cluster import gpus_for

    gpus = gpus_for(base.get("use_gpu"), concurrent, "Tune trials")
    return {"cpu": 1, **({"gpu": gpus} if gpus else {})}


def concurrent_trials(space: dict, search: str, num_samples: int, max_concurrent: int | None, cpus: float) -> int:
    """How many trials can run at once: the sweep's trials (``num_samples`` per grid point),
    at most ``max_concurrent``, at most one per CPU."""
    points = math.prod(len(v.get("grid", v.get("choice", [None]) if search == "grid" else [None]))
                       for v in space.values())
    return max(1, min(num_samples * points, max_concurrent or num_samples * points, int(cpus) or 1))


def run_tune(method: str, space_file: str | None, num_samples: int = 4, scheduler: str | None = None,
             search: str | None = None, max_concurrent: int | None = None, out: str = "runs",
             wandb_mode: str = "offline", settings: dict | None = None, storage: str | None = None) -> dict:
    """Run the sweep; save best_config.yaml and trials.parquet; return the best trial.
    ``settings`` (``--set KEY=VALUE``) replace the space file's base values; ``storage``
    (``--storage``, a shared path or URI) holds the trials, as STORAGE/tune-METHOD-TIME/trials."""
    import ray
    from ray import tune
    from ray.air.integrations.wandb import WandbLoggerCallback
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from raypkg.distributed.cluster import (
        check_shared_storage,
        check_storage_on_nodes,
        connect_ray,
        stop_ray_on_interrupt,
    )
    from raypkg.paths import atomic_write, check_home, check_writable_dir
    from raypkg.storage import check_storage, join, ray_train_storage
    from raypkg.tracking.provenance import provenance
    from raypkg.tracking.run import write_parquet
    from raypkg.tracking.wandb_logger import use_wandb_mode

    if num_samples < 1:
        raise UsageError(f"--num-samples must be >= 1, got {num_samples}")
    if max_concurrent is not None and max_concurrent < 1:
        raise UsageError(f"--max-concurrent must be >= 1, got {max_concurrent}")
    check_writable_dir(out, "--out")
    check_home()
    check_storage(storage)
    spec = read_space(space_file or default_space(method))
    if spec["method"] != method:
        raise UsageError(f"space file is for method {spec['method']!r}, not {method!r}")
    scheduler = scheduler or spec["scheduler"]
    search = search or spec["search"]
    swept = sorted(set(settings or {}) & set(spec.get("space") or {}))
    if swept:
        raise UsageError(f"--set {', '.join(swept)}: the space sweeps it (edit the space file)")
    check_settings_known(find_recipe(method, (settings or {}).get("stack", ())).config_cls, settings or {},
                         what=f"for {method} in --set (underscores for dashes)", needs="--set stack={}")
    spec["base"] = base = {**(spec.get("base") or {}), **(settings or {})}
    # grid entries are always swept in full; `search: grid` also sweeps every choice entry.
    space = {k: to_tune_domain({"grid": v["choice"]} if search == "grid" and "choice" in v else v)
             for k, v in (spec.get("space") or {}).items()}
    check_trial_config(spec, settings)
    source = provenance(threads=1)  # run_trial: 1 thread; before Ray starts, so a tree it refuses costs nothing

    use_wandb_mode(wandb_mode)  # before Ray starts: trial workers inherit WANDB_MODE
    connect_ray()
    check_shared_storage(storage, "Tune trials")
    check_storage_on_nodes(storage)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    plain = re.sub(r"[^\w.+-]+", "_", method)  # a plug-in's a.b:C -> a.b_C
    out_dir = (Path(out) / f"tune-{plain}-{stamp}").resolve()
    trials_at = join(storage, out_dir.name) if storage else str(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def trial(config: dict) -> None:
        from raypkg.recipe_registry import run_trial

        run_trial(method, {**base, **config}, tune.report)

    rung_metric, rung_mode = asha_metric(spec)
    sched = (ASHAScheduler(metric=rung_metric, mode=rung_mode, max_t=int(base.get("epochs", 10)), grace_period=1,
                           reduction_factor=2) if scheduler == "asha" else FIFOScheduler())
    callbacks = [] if wandb_mode == "disabled" else [
        WandbLoggerCallback(project="effray-tune", group=f"{method}-{stamp}", mode=wandb_mode,
                            dir=str(out_dir))]
    tuner = tune.Tuner(
        tune.with_resources(trial, trial_resources(base, concurrent_trials(
            spec.get("space") or {}, search, num_samples, max_concurrent, ray.cluster_resources().get("CPU", 1)))),
        param_space=space,
        tune_config=tune.TuneConfig(scheduler=sched, num_samples=num_samples, max_concurrent_trials=max_concurrent),
        run_config=tune.RunConfig(name="trials", **ray_train_storage(trials_at), callbacks=callbacks, verbose=1),
    )
    # Tune's SIGINT handler would stop the sweep "gracefully" and return the unfinished
    # trials as if the sweep had ended; without it Ctrl-C ends the sweep and its trials now.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    try:
        with stop_ray_on_interrupt():
            results = tuner.fit()
        failed = failed_trials(results)
        if failed:
            import click

            for line in failed:
                click.echo(f"error: {line}", err=True)
            raise RunFailed(f"{len(failed)} of {len(results)} trials failed (above); nothing was saved")
        best = results.get_best_result(metric=spec["metric"], mode=spec["mode"])
        stack = find_recipe(method, base.get("stack", ())).stack  # infobatch+sparse: --config repeats the stack
        best_config = {**base, **best.config, **({"stack": list(stack)} if stack else {})}
        text = yaml.safe_dump(best_config, sort_keys=False)
        atomic_write(out_dir / "best_config.yaml", lambda tmp: tmp.write_text(text))
        frame = results.get_dataframe()
        for column in [c for c in frame.columns if c.startswith("config/") and frame[c].dtype == object]:
            frame[column] = frame[column].map(setting_as_text)
        keep = [c for c in frame.columns if frame[c].dtype != object or c in ("trial_id", "logdir")
                or c.startswith("config/")]
        write_parquet(out_dir / "trials.parquet", frame[keep], source)
    except BaseException:  # no half-made sweep directory (interrupted, or no trial finished)
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return {"metric": spec["metric"], "value": best.metrics[spec["metric"]], "config": best_config,
            "path": str(out_dir / "best_config.yaml"), "dir": str(out_dir), "num_trials": len(frame),
            "trials": join(trials_at, "trials")}
