"""The methods, one row each: the one registration of a method. The CLI, `effray tune`
(through the recipes), `effray bench` and `--with` all read this table; nothing heavy is
loaded until it is used (import paths only).

A method that acts on training alone (a data plan, callbacks) is a row with ``settings``,
``config`` and ``algorithm``: its recipe (``raypkg.recipe_registry.algorithm_recipe``), its
`effray run NAME` command (help: the config's docstring) and its frontier rows (the
algorithm's ``bench_cases``) are made from them, and it stacks (``--with NAME``). Adding
one is its module, this row, its docs page and its tests (docs/architecture.md, "Adding a
method"). A method with stages of its own (warm-up, selection) names the module that
registers its recipe (``recipes``) and its commands; ``stacks`` says why it cannot be
given to ``--with``, when it cannot.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str
    # the module that registers its recipes (``raypkg.recipe_registry.register``); None: made from the row
    recipes: str | None = None
    commands: tuple[str, ...] = ()  # "GROUP:module:command", GROUP main (`effray X`) or run (`effray run X`)
    bench: str | None = None  # "module:command" of `effray bench NAME`
    # A method that stacks onto another's training (`--with NAME`, raypkg.algorithms): the
    # dataclass of its own settings ("module:Class", free of torch), its Algorithm, and the
    # training config with its settings (`effray run NAME`'s; its docstring is the command's help).
    settings: str | None = None
    algorithm: str | None = None
    config: str | None = None
    stacks: str | None = None  # a method that does not stack: why, said when `--with NAME` is given


# Said when `--with` names a method that trains in stages of its own.
SUBSET_FIRST = ("selects its subset in stages before training; put another method on that training instead: "
                "effray run {name} --with {{other}}")

METHODS = (
    Method("train", "raypkg.methods.full.recipe",  # `effray train` is the CLI's own command
           stacks="is the training every stack adds to: effray train --with NAME"),
    Method("coreset", "raypkg.methods.coreset.recipe",
           ("main:raypkg.methods.coreset.commands:select_command",
            "run:raypkg.methods.coreset.commands:run_coreset_command"),
           "raypkg.bench.coreset:coreset", stacks=SUBSET_FIRST.format(name="coreset")),
    Method("lipt", "raypkg.methods.lipt.recipe", ("run:raypkg.methods.lipt.commands:run_lipt_command",),
           "raypkg.bench.lipt:lipt_bench", stacks=SUBSET_FIRST.format(name="lipt")),
    Method("crest", "raypkg.methods.crest.recipe", ("run:raypkg.methods.crest.commands:run_crest_command",),
           "raypkg.bench.crest:crest_bench", settings="raypkg.methods.crest.config:CrestSettings",
           algorithm="raypkg.methods.crest.recipe:CrestTraining"),
    Method("infobatch", settings="raypkg.methods.infobatch.config:InfoBatchSettings",
           algorithm="raypkg.methods.infobatch.algorithm:InfoBatchPruning", config="raypkg.methods.infobatch.config:InfoBatchConfig"),
    Method("sparse", "raypkg.methods.sparse.recipe", ("run:raypkg.methods.sparse.commands:run_sparse_command",),
           "raypkg.bench.sparse:sparse_bench", settings="raypkg.methods.sparse.config:SparseSettings",
           algorithm="raypkg.methods.sparse.algorithm:SparseTrainingAlgorithm"),
    Method("label-smoothing", settings="raypkg.methods.label_smoothing:LabelSmoothingSettings",
           algorithm="raypkg.methods.label_smoothing:LabelSmoothing", config="raypkg.methods.label_smoothing:LabelSmoothingConfig"),
    Method("ema", settings="raypkg.methods.ema:EmaSettings", algorithm="raypkg.methods.ema:Ema", config="raypkg.methods.ema:EmaConfig"),
    Method("selective-backprop", settings="raypkg.methods.selective_backprop:SelectiveBackpropSettings",
           algorithm="raypkg.methods.selective_backprop:SelectiveBackprop",
           config="raypkg.methods.selective_backprop:SelectiveBackpropConfig"),
    Method("layer-freezing", settings="raypkg.methods.layer_freezing:LayerFreezingSettings",
           algorithm="raypkg.methods.layer_freezing:LayerFreezing", config="raypkg.methods.layer_freezing:LayerFreezingConfig"),
    Method("progressive-resizing", settings="raypkg.methods.progressive_resizing:ProgressiveResizingSettings",
           algorithm="raypkg.methods.progressive_resizing:ProgressiveResizing",
           config="raypkg.methods.progressive_resizing:ProgressiveResizingConfig"),
    Method("proxy-selection", settings="raypkg.methods.proxy_selection:ProxySelectionSettings",
           algorithm="raypkg.methods.proxy_selection:ProxyBatchSelection", config="raypkg.methods.proxy_selection:ProxySelectionConfig"),
    Method("deltagrad", "raypkg.methods.deltagrad.recipe", ("main:raypkg.methods.deltagrad.commands:unlearn",),
           "raypkg.bench.deltagrad:deltagrad_bench",
           stacks="trains on its own (L-BFGS steps on a flat parameter vector, raypkg.methods.deltagrad.replay)"),
)


# The benchmarks of the platform rather than of one method.
PLATFORM_BENCHES = {"overhead": "raypkg.bench.overhead:overhead", "selection": "raypkg.bench.selection:selection",
                    "data": "raypkg.bench.data:data_bench", "frontier": "raypkg.bench.frontier:frontier_bench",
                    "precision": "raypkg.bench.precision:precision_bench",
                    "defaults": "raypkg.bench.defaults:defaults_bench", "verdicts": "raypkg.bench.verdicts:verdicts_bench"}


def load(path: str):
    """The object at ``module:name``."""
    import importlib

    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)
