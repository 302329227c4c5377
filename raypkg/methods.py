"""The methods, one row each: the module that registers its recipes (and its bench case),
its commands and its benchmark. The CLI, `effray tune` (through the recipes) and `effray
bench` all read this table, so a new method is a row here, its modules and a tune space
(``tune_spaces/NAME.yaml``). Only import paths: nothing heavy is loaded until it is used."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str
    recipes: str  # the module that registers its recipes (``raypkg.recipe.register``) and bench case
    commands: tuple[str, ...] = ()  # "GROUP:module:command", GROUP main (`effray X`) or run (`effray run X`)
    bench: str | None = None  # "module:command" of `effray bench NAME`
    # A method that stacks onto another's training (`--with NAME`, raypkg.algorithms): the
    # dataclass of its own settings ("module:Class", free of torch) and its Algorithm.
    settings: str | None = None
    algorithm: str | None = None


METHODS = (
    Method("train", "raypkg.full.recipe"),  # `effray train` is the CLI's own command
    Method("coreset", "raypkg.selection.recipe",
           ("main:raypkg.selection.commands:select_command", "run:raypkg.selection.commands:run_coreset_command"),
           "raypkg.bench.coreset:coreset"),
    Method("lipt", "raypkg.lipt.recipe", ("run:raypkg.lipt.commands:run_lipt_command",),
           "raypkg.bench.lipt:lipt_bench"),
    Method("crest", "raypkg.crest.recipe", ("run:raypkg.crest.commands:run_crest_command",),
           "raypkg.bench.crest:crest_bench"),
    Method("infobatch", "raypkg.infobatch.recipe", ("run:raypkg.infobatch.commands:run_infobatch_command",),
           settings="raypkg.infobatch.config:InfoBatchSettings", algorithm="raypkg.infobatch.algorithm:InfoBatchPruning"),
    Method("sparse", "raypkg.sparse.recipe", ("run:raypkg.sparse.commands:run_sparse_command",),
           "raypkg.bench.sparse:sparse_bench", settings="raypkg.sparse.config:SparseSettings",
           algorithm="raypkg.sparse.algorithm:SparseTrainingAlgorithm"),
    Method("deltagrad", "raypkg.deltagrad.recipe", ("main:raypkg.deltagrad.commands:unlearn",),
           "raypkg.bench.deltagrad:deltagrad_bench"),
)

# The benchmarks of the platform rather than of one method.
PLATFORM_BENCHES = {"overhead": "raypkg.bench.overhead:overhead", "selection": "raypkg.bench.selection:selection",
                    "data": "raypkg.bench.data:data_bench", "frontier": "raypkg.bench.frontier:frontier_bench",
                    "precision": "raypkg.bench.precision:precision_bench",
                    "defaults": "raypkg.bench.defaults:defaults_bench"}


def load(path: str):
    """The object at ``module:name``."""
    import importlib

    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)
