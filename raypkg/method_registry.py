"""The methods, one row each: the one registration of a method. The CLI, `effray tune`
(through the recipes), `effray bench` and `--with` all read this table; nothing heavy is
loaded until it is used (import paths only).

A method that acts on training alone (a data plan, callbacks) is a row of its name: its
one class is the ``raypkg.algorithms.Algorithm`` in ``raypkg/methods/NAME.py`` (or in
``algorithm.py`` of the package ``raypkg/methods/NAME/``; ``-`` in NAME is ``_``), with its
settings; its recipe (``raypkg.recipe_registry.algorithm_recipe``), its `effray run NAME`
command (``raypkg.algorithms.method_config``; help: the algorithm's docstring) and its
frontier rows (the algorithm's ``bench_cases``) are made from it, and it stacks (``--with
NAME``). Adding one is its module, this row, its docs page and its test
(docs/architecture.md, "Adding a method"). A method with stages of its own (warm-up,
selection) names the module that registers its recipe (``recipes``) and its commands, and
stacks too unless ``stacks`` says why it cannot be given to ``--with``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str
    # the module that registers its recipes (``raypkg.recipe_registry.register``); None: made from the row
    recipes: str | None = None
    commands: tuple[str, ...] = ()  # "GROUP:module:command", GROUP main (`effray X`) or run (`effray run X`)
    bench: str | None = None  # "module:command" of `effray bench NAME`
    stacks: str | None = None  # a method that does not stack: why, said when `--with NAME` is given

    @property
    def made(self) -> bool:
        """Its recipe and `effray run NAME` are made from its algorithm (no recipe module of its own)."""
        return self.recipes is None and self.stacks is None

    @property
    def module(self) -> str | None:
        """The module of a method that stacks, found from its name: ``raypkg.methods.NAME``, or
        when that is a package its ``algorithm`` module (else its ``recipe``: CREST's). Free of
        torch at import: the command line reads the settings off its algorithm."""
        return None if self.stacks else module_of(self.name)

    @property
    def algorithm(self) -> str | None:
        """``module:Class`` of its ``raypkg.algorithms.Algorithm``: the one its module defines."""
        return None if self.stacks else algorithm_in(module_of(self.name))

    @property
    def settings(self) -> str | None:
        """``module:Class`` of its algorithm's settings (``raypkg.algorithms.MethodSettings``)."""
        if self.stacks:
            return None
        settings = import_object(self.algorithm).settings
        return f"{settings.__module__}:{settings.__qualname__}"


# The base class of every method's algorithm, by name: raypkg.algorithms sits above this table.
ALGORITHM = ("raypkg.algorithms", "Algorithm")


@functools.cache
def module_of(name: str) -> str:
    module = "raypkg.methods." + name.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if not (spec and spec.submodule_search_locations):
        return module
    found = (f"{module}.{leaf}" for leaf in ("algorithm", "recipe") if importlib.util.find_spec(f"{module}.{leaf}"))
    return next(found, f"{module}.algorithm")


@functools.cache
def algorithm_in(path: str) -> str:
    module = importlib.import_module(path)
    found = [obj for obj in vars(module).values() if isinstance(obj, type) and obj.__module__ == module.__name__
             and ALGORITHM in ((c.__module__, c.__qualname__) for c in obj.__mro__[1:])]
    if len(found) != 1:
        raise TypeError(f"{path} defines {len(found)} Algorithm classes; a method's module defines one")
    return f"{module.__name__}:{found[0].__qualname__}"


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
           "raypkg.bench.crest:crest_bench"),
    Method("infobatch"),
    Method("sparse", "raypkg.methods.sparse.recipe", ("run:raypkg.methods.sparse.commands:run_sparse_command",),
           "raypkg.bench.sparse:sparse_bench"),
    Method("label-smoothing"),
    Method("ema"),
    Method("selective-backprop"),
    Method("layer-freezing"),
    Method("progressive-resizing"),
    Method("proxy-selection"),
    Method("deltagrad", "raypkg.methods.deltagrad.recipe", ("main:raypkg.methods.deltagrad.commands:unlearn",),
           "raypkg.bench.deltagrad:deltagrad_bench",
           stacks="trains on its own (L-BFGS steps on a flat parameter vector, raypkg.methods.deltagrad.replay)"),
)


# The benchmarks of the platform rather than of one method.
PLATFORM_BENCHES = {"overhead": "raypkg.bench.overhead:overhead", "selection": "raypkg.bench.selection:selection",
                    "data": "raypkg.bench.data:data_bench", "frontier": "raypkg.bench.frontier:frontier_bench",
                    "precision": "raypkg.bench.precision:precision_bench",
                    "defaults": "raypkg.bench.defaults:defaults_bench", "verdicts": "raypkg.bench.verdicts:verdicts_bench"}


def import_object(path: str):
    """The object at ``module:name``."""
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)
