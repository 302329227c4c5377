"""The Python API: the recipes the CLI runs, from a script, a notebook or a Ray Job.

    import raypkg

    result = raypkg.run("crest", dataset="digits", model="mlp", epochs=5, train_frac=0.2)
    result.summary["test_acc"]      # summary.json
    result.metrics                  # metrics.parquet as a pandas DataFrame
    result.run_dir                  # the run directory (None with save=False)

``method`` is a recipe name, made from the table of methods (``raypkg.method_registry``): ``train``,
``select``, each `effray run NAME`, ``deltagrad`` and the ``unlearn-*`` steps
(``raypkg.recipe_registry.load_recipes()`` has them all, and an unknown name is refused with the
list), or a stack joined by ``+`` (``infobatch+sparse``).
Settings are the command's flags as keywords (``train_frac``
for ``--train-frac``), or a config object, a mapping or a config file's path (a run's
``config.yaml``) with keywords on top. ``model=`` and ``data=`` (or ``dataset=``) also take
a factory function or class instead of a name: it is passed by its import path (``module:name``),
so Ray Train workers and later runs find it again (see "Your own model and data" in the
README; a factory defined in a notebook or a script's ``__main__`` trains in-process).

Bad settings raise ``raypkg.errors.UsageError`` with the same one line the CLI prints.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


@dataclass
class Result:
    summary: dict
    metrics: Any  # pandas.DataFrame: one row per epoch (or request served)
    run_dir: Path | None

    @property
    def test_acc(self) -> float | None:
        return self.summary.get("test_acc")


def import_path(obj: Any) -> str:
    """``"module:qualname"`` of a module-level function or class (a name stays as it is)."""
    if isinstance(obj, str):
        return obj
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or not name or "<" in name:
        from raypkg.errors import UsageError

        raise UsageError(f"{obj!r} is not a module-level function or class: define it at the top level of a "
                         "module (or pass its name or 'module:name')")
    return f"{module}:{name}"


def run(method: str, /, config: Any = None, *, save: bool = True, data: Any = None, **settings) -> Result:
    """Run recipe ``method`` with ``config`` (a config object or a mapping) and ``settings``
    on top; ``save=False`` keeps everything in memory (no run directory, no W&B run, no
    selection cache under ``OUT/.cache``; only the per-user execution cache of an ``auto``
    precision or memory format, and Ray's session logs of a run that starts Ray, are
    written: the README's "From Python" says where).
    ``model=`` and ``data=`` (the ``dataset`` setting) take names, import paths or factories.
    ``method`` is positional only, so that a recipe's own ``method`` setting is a keyword:
    ``run("select", method="grand")``."""
    import pandas as pd

    from raypkg.errors import UsageError
    from raypkg.recipe import MemorySink
    from raypkg.recipe_registry import find_recipe

    if not isinstance(save, bool):
        raise UsageError(f"save must be True or False, got {save!r}")
    # "infobatch+sparse" is infobatch with --with sparse; a config object may carry a stack too
    recipe = find_recipe(method, getattr(config, "stack", ()) if dataclasses.is_dataclass(config) else ())
    if type(config) is recipe.config_cls and not settings and data is None:
        cfg = config  # the CLI's: resolved already, validated once by the recipe
    else:
        cfg = recipe_config(recipe, method, config, data, settings)
        recipe = find_recipe(method, getattr(cfg, "stack", ()))
    if not save:
        summary = recipe.run(cfg, MemorySink)
        return Result(summary, pd.DataFrame(summary["rows"]), None)
    summary = recipe.run(cfg)
    run_dir = Path(summary["run_dir"])
    metrics = run_dir / "metrics.parquet"
    return Result(summary, pd.read_parquet(metrics) if metrics.is_file() else pd.DataFrame(), run_dir)


def recipe_config(recipe, method: str, config: Any, data: Any, settings: dict):
    """``config`` (a config object of any recipe, a mapping, or a YAML/JSON file such as a
    run's config.yaml) with ``settings`` and ``data`` on top, as ``recipe``'s config class."""
    from raypkg.config import check_file_memory_format, check_settings_known, read_config_file, with_stack
    from raypkg.engine.config import check_needs, flag_aliases, stack_of
    from raypkg.errors import UsageError

    from_file = {}
    if isinstance(config, (str, os.PathLike)):
        values = read_config_file(config, recipe.config_cls)
        from_file = dict(values)
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        values = dataclasses.asdict(config)
    elif config is None or isinstance(config, Mapping):
        values = dict(config or {})
    else:
        raise UsageError(f"config must be a config object, a mapping or a config file's path, got "
                         f"{type(config).__name__}")
    aliases = flag_aliases(recipe.config_cls)  # the flag's other name: select's method= for selection=
    given = {aliases.get(key, key): value for key, value in settings.items()}
    values.update(given)
    if data is not None:
        values["dataset"] = data
    for key in ("model", "dataset"):
        if key in values:
            values[key] = import_path(values[key])
    if "+" in method:  # run("infobatch+sparse"): the stack in the name
        named = method.split("+")[1:]
        more = stack_of(values.get("stack"))
        twice = [name for name in more if name in named] if "stack" in given else []
        if twice:  # stack= names it again, as --with sparse,sparse would (a config's own stack may repeat it)
            raise UsageError(f"stack names {twice[0]} twice: the method {method!r} names it already")
        values["stack"] = [*named, *(name for name in more if name not in named)]
    cls = with_stack(recipe.config_cls, values)
    check_settings_known(cls, values, given, what=f"for {method}")
    cfg = cls(**values)
    check_needs(cfg, given)  # a keyword given where it cannot act, even at its default value
    check_file_memory_format(cfg, from_file, given, config)
    return cfg


def train(config: Any = None, /, *, save: bool = True, data: Any = None, **settings) -> Result:
    """Full-data training (`effray train`): ``run("train", ...)``."""
    return run("train", config, save=save, data=data, **settings)
