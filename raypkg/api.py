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

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Result:
    summary: dict
    metrics: Any  # pandas.DataFrame: one row per epoch (or request served)
    run_dir: Path | None

    @property
    def test_acc(self) -> float | None:
        return self.summary.get("test_acc")


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

    from raypkg.config import build_config
    from raypkg.errors import UsageError
    from raypkg.recipe import MemorySink
    from raypkg.recipe_registry import find_recipe

    if not isinstance(save, bool):
        raise UsageError(f"save must be True or False, got {save!r}")
    config = build_config(method, config, settings, data=data)  # the one builder: the CLI's too
    recipe = find_recipe(method, getattr(config, "stack", ()))  # with the stack the config names
    if not save:
        summary = recipe.run(config, MemorySink)
        return Result(summary, pd.DataFrame(summary["rows"]), None)
    summary = recipe.run(config)
    run_dir = Path(summary["run_dir"])
    metrics = run_dir / "metrics.parquet"
    return Result(summary, pd.read_parquet(metrics) if metrics.is_file() else pd.DataFrame(), run_dir)


def train(config: Any = None, /, *, save: bool = True, data: Any = None, **settings) -> Result:
    """Full-data training (`effray train`): ``run("train", ...)``."""
    return run("train", config, save=save, data=data, **settings)
