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

A method from outside effray is the same row (``find_method``): an import path
``MODULE:CLASS`` of its ``Algorithm``, or an entry point of the group ``effray.methods``,
yields ``Method(NAME, path="MODULE:CLASS")`` (``plugin_method``), and everything made from a
row (its recipe, its command, its flags, ``--with``, its frontier rows) is made from it
alike. An import path of a built-in's algorithm yields that built-in's row.
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
    # ``module:Class`` of a plug-in's algorithm (``plugin_method``); None: found from the name
    path: str | None = None

    @property
    def plugin(self) -> bool:
        """Defined outside effray (an import path or an entry point, ``plugin_method``)."""
        return self.path is not None

    @property
    def made(self) -> bool:
        """Its recipe and `effray run NAME` are made from its algorithm (no recipe module of its own)."""
        return self.recipes is None and self.stacks is None

    @property
    def module(self) -> str | None:
        """The module of a method that stacks, found from its name: ``raypkg.methods.NAME``, or
        when that is a package its ``algorithm`` module (else its ``recipe``: CREST's). Free of
        torch at import: the command line reads the settings off its algorithm."""
        if self.path:
            return self.path.partition(":")[0]
        return None if self.stacks else module_of(self.name)

    @property
    def algorithm(self) -> str | None:
        """``module:Class`` of its ``raypkg.algorithms.Algorithm``: the one its module defines
        (a plug-in's: the one its import path names)."""
        if self.path:
            return self.path
        return None if self.stacks else algorithm_in(module_of(self.name))

    @property
    def settings(self) -> str | None:
        """``module:Class`` of its algorithm's settings (``raypkg.algorithms.MethodSettings``)."""
        if self.stacks:
            return None
        settings = import_object(self.algorithm).settings
        return f"{settings.__module__}:{settings.__qualname__}"


# The base classes of every method's algorithm and settings, by name: raypkg.algorithms sits above this table.
ALGORITHM = ("raypkg.algorithms", "Algorithm")
SETTINGS = ("raypkg.algorithms", "MethodSettings")


def is_a(cls, base: tuple[str, str]) -> bool:
    """Whether class ``cls`` derives from the class ``base`` names (module, name)."""
    return isinstance(cls, type) and base in ((c.__module__, c.__qualname__) for c in cls.__mro__[1:])


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
             and is_a(obj, ALGORITHM)]
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


def find_method(name: str) -> Method | None:
    """The row of method ``name``: the registry's, else a plug-in's (an import path
    ``MODULE:CLASS`` or an entry point of ``effray.methods``, ``plugin_method``); None for a
    name that is none of these."""
    from raypkg.plugins import plugin_target

    row = next((m for m in METHODS if m.name == name), None)
    if row is not None or not isinstance(name, str) or plugin_target("method", name) is None:
        return row
    return plugin_method(name)


@functools.cache
def plugin_method(name: str) -> Method:
    """The row of a method defined outside effray, its ``Algorithm`` named by ``name`` (an
    import path or an entry point's name): ``Method(name, path=MODULE:CLASS)``, the same
    object as a built-in's row (an import path of a built-in's algorithm is that row). Its
    module is imported here, once; a one-line UsageError when it does not import, names no
    ``Algorithm`` subclass, or its ``settings`` is no ``MethodSettings`` dataclass. A module
    that imports torch at import is loaded, with a note that says so (the command line
    waits for torch before it can parse a flag)."""
    import dataclasses
    import sys
    import time

    from raypkg.errors import UsageError
    from raypkg.plugins import load_factory, plugin_target

    light, started = "torch" not in sys.modules, time.perf_counter()
    cls = load_factory("method", name)
    target = plugin_target("method", name).replace(" ", "")
    if not is_a(cls, ALGORITHM):
        what = f"a class deriving from {', '.join(c.__name__ for c in cls.__mro__[1:-1]) or 'object'}" \
            if isinstance(cls, type) else f"a {type(cls).__name__}"
        raise UsageError(f"method {name!r}: {target} is not a raypkg.algorithms.Algorithm (it is {what}); a method "
                         "is an Algorithm subclass with its MethodSettings (docs/methods/own-method.md)")
    settings = getattr(cls, "settings", None)
    if not (isinstance(settings, type) and is_a(settings, SETTINGS)):
        raise UsageError(f"method {name!r}: its settings ({getattr(settings, '__name__', repr(settings))}) is not a "
                         "raypkg.algorithms.MethodSettings subclass: give the class a `settings = MySettings`, a "
                         "@dataclass of MethodSettings")
    if not dataclasses.is_dataclass(settings) or "__dataclass_fields__" not in vars(settings):
        raise UsageError(f"method {name!r}: its settings {settings.__name__} is not a dataclass: decorate it with "
                         "@dataclass (its fields are the method's flags)")
    if light and "torch" in sys.modules:
        print(f"note: method {name!r}: importing {target.partition(':')[0]} imports torch "
              f"({time.perf_counter() - started:.1f} s), which every command that names it then waits for, --help "
              "included; import torch inside the callbacks to keep the command line light", file=sys.stderr)
    builtin = cls.__module__.startswith("raypkg.") and next(
        (m for m in METHODS if not m.stacks and m.algorithm == f"{cls.__module__}:{cls.__qualname__}"), None)
    return builtin or Method(name, path=target)
