"""`effray tune METHOD`: Ray Tune over a YAML search space, every trial logged to W&B.

The space file (``--space FILE``; without it the one shipped in raypkg/tune_spaces/METHOD.yaml,
``default_space``) is read and checked by ``raypkg.tune_space`` before Ray starts, which
also documents its keys and distributions. This module runs it on Tune (``to_tune_domain``
to ``run_tune``): every recipe (``raypkg.recipe``) is tunable, a trial runs the method's
recipe in its own process (``raypkg.recipe_registry.run_trial``) and reports every metrics
row it logs. A key or distribution a space may hold is checked there and read here: adding
one (a scheduler, a distribution) edits both.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from datetime import datetime
from pathlib import Path

import yaml

from raypkg.config import check_settings_known
from raypkg.errors import RunFailed, UsageError
from raypkg.recipe import TTA_METRIC
from raypkg.recipe_registry import find_recipe, load_recipes
from raypkg.tune_space import check_trial_config, read_space


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
    from raypkg.distributed.placement import gpus_for

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

    from raypkg.distributed.cluster import connect_ray, stop_ray_on_interrupt
    from raypkg.distributed.node_storage import check_shared_storage, check_storage_on_nodes
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
