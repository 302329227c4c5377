"""The recipe registry: every method's recipe by name (``load_recipes``), a recipe with
algorithms stacked onto it (``find_recipe``), the frontier's bench cases, and the one
trainable of `effray tune` (``run_trial``).

What a recipe and a run are (``Recipe``, ``Run``, the sinks) is ``raypkg.recipe``, below
this; how configs stack (``stacked_class``, ``check_stack``) is ``raypkg.algorithms``, below
this too. A method's module registers its recipe here (``register``) when the registry
imports it by the import path in its ``raypkg.method_registry.METHODS`` row; a method that is one
algorithm gets its recipe made here (``algorithm_recipe``), a plug-in's (``MODULE:CLASS``)
too, when it is first named (``recipe_of``), with its frontier case (``case_of``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Callable, Sequence

from raypkg.algorithms import method_config, method_point, stackable, stacked_class, train_stack
from raypkg.errors import UsageError, choose
from raypkg.method_registry import METHODS, find_method, import_object
from raypkg.recipe import EPOCH_METRICS, BenchCase, Recipe, Run, TuneSink, dense_examples

RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    RECIPES[recipe.name] = recipe
    return recipe


BENCH_CASES: dict[str, BenchCase] = {}  # frontier method name -> its case


def register_case(case: BenchCase) -> BenchCase:
    for method in case.methods:
        BENCH_CASES[method] = case
    return case


def load_cases() -> dict[str, BenchCase]:
    """Every registered bench case, by frontier method name (importing the recipe modules),
    in the order of ``raypkg.method_registry.METHODS`` whatever imported them first."""
    load_recipes()
    order = [method.name for method in METHODS]
    return dict(sorted(BENCH_CASES.items(), key=lambda item: order.index(item[1].recipe)))


def find_recipe(method: str, stack: Sequence[str] = (), where: str = "--with") -> Recipe:
    """Recipe ``method`` with the algorithms of ``stack`` added (``raypkg.algorithms``): its
    config class carries their settings, its data check runs theirs too, its metrics hold
    theirs. ``method`` may name the stack itself: ``"infobatch+sparse"``."""
    from raypkg.engine.config import parse_stack, stack_of

    base, named = parse_stack(method)
    recipe = recipe_of(base)
    stack = (*named, *(name for name in stack_of(stack) if name not in named))  # a config's own stack may repeat the name's
    if not stack:
        return recipe
    cls = stacked_class(recipe.config_cls, stack, where, stacks_onto)  # refuses what does not stack, as ``where`` says
    members = [recipe, *map(recipe_of, stack)]
    checks = [member.check for member in members if member.check]

    def check(cfg, data) -> str | None:
        return "; ".join(filter(None, (c(cfg, data) for c in checks))) or None

    metrics = tuple(dict.fromkeys(m for member in members for m in member.metrics))
    return dataclasses.replace(recipe, config_cls=cls, check=check if checks else None, metrics=metrics, stack=stack)


def load_recipes() -> dict[str, Recipe]:
    """Every registered recipe, by name: importing the modules that register them, and
    making those of the methods that are one algorithm (``algorithm_recipe``), with their
    bench cases."""
    for method in METHODS:
        if method.recipes:
            importlib.import_module(method.recipes)
        elif method.made and method.name not in RECIPES:
            register(algorithm_recipe(method))
            for case in import_object(method.algorithm).bench_cases:
                register_case(case)
    return RECIPES


def recipe_of(name: str) -> Recipe:
    """The recipe of method ``name``: a registered one, or a plug-in's (an import path
    ``MODULE:CLASS`` or an entry point of ``effray.methods``: ``plugin_recipe``); an unknown
    name refused in one line with the list."""
    return registered_or_plugin(name, load_recipes(), plugin_recipe)


@functools.cache
def plugin_recipe(name: str) -> Recipe:
    """The recipe of plug-in method ``name``, made from its algorithm as a built-in one's
    (``algorithm_recipe``), once per process."""
    return algorithm_recipe(find_method(name))


@functools.cache
def plugin_case(name: str) -> BenchCase:
    """A plug-in method's frontier case: its algorithm's first ``bench_cases`` entry, renamed
    to the plug-in's name, or one point at its settings' defaults (every epoch on the whole
    training set: ``dense_examples``)."""
    own = import_object(find_method(name).algorithm).bench_cases
    if own:
        return dataclasses.replace(own[0], family=name, recipe=name, methods=(name,))
    return BenchCase(name, name, (name,), None, config=method_point, examples=dense_examples, default=False)


def case_of(name: str) -> BenchCase:
    """The frontier case of method ``name``: a registered case, or a plug-in method's
    (``plugin_case``); an unknown name refused in one line with the cases."""
    return registered_or_plugin(name, load_cases(), plugin_case)


def registered_or_plugin(name: str, table: dict, plugin):
    """``table``'s entry for method ``name``: its own, the built-in's an import path of a
    built-in's algorithm names, or a plug-in method's (``plugin(name)``); an unknown name
    refused in one line with the table's names."""
    if name in table:
        return table[name]
    method = find_method(name) if isinstance(name, str) and name else None  # a plug-in's import refused in one line
    if method is not None and method.name in table:
        return table[method.name]
    if method is None or not method.plugin:
        try:
            choose("method", name, table)
        except UsageError as e:
            raise UsageError(f"{e}; or give an import path MODULE:CLASS (an Algorithm of your own)") from None
    return plugin(method.name)


def algorithm_recipe(method) -> Recipe:
    """The recipe of a method that is one algorithm (a ``METHODS`` row of its name alone): the
    engine's training with it, its check and its metrics, on its config (``method_config``)."""
    algorithm = import_object(method.algorithm)

    def train_with_it(run: Run) -> None:
        train_stack(run, lambda cfg: algorithm(cfg, run), desc=method.name)

    train_with_it.__doc__ = f"Train with {method.name} ({method.algorithm})."
    return Recipe(method.name, method_config(method.name), [train_with_it], check=algorithm.check,
                  metrics=EPOCH_METRICS + algorithm.metrics)


def stacks_onto(name: str) -> str:
    """The first algorithm that stacks onto method ``name``'s training: the example in the
    line that refuses ``--with name``, a command that runs (``stacked_class``'s ``example``)."""
    for other in stackable():
        try:
            find_recipe(name, (other,))
            return other
        except UsageError:
            continue
    return "NAME"


# A Tune trial runs in its own process on one CPU (one torch thread): no progress bars, no W&B run
# of its own (the sweep's W&B logger gets every row), no cache, no actors and no Ray Train workers.
# Nor storage of its own: the sweep's --storage holds the trials.
TRIAL_SETTINGS = {"progress": False, "wandb": "disabled", "cache": False, "actors": 0, "workers": 0,
                  "storage": None, "threads": 1}


def trial_config(recipe: Recipe, config: dict):
    """A trial's config: ``config`` with ``TRIAL_SETTINGS`` for the fields the recipe has.
    Its values were checked before Ray started, each trial's config built as every other is
    (``raypkg.tune_space.check_trial_config``, through ``raypkg.config.build_config``, which sits
    above this registry)."""
    names = {f.name for f in dataclasses.fields(recipe.config_cls)}
    stack = {"stack": list(recipe.stack)} if recipe.stack else {}
    return recipe.config_cls(**{**config, **stack, **{k: v for k, v in TRIAL_SETTINGS.items() if k in names}})


def run_trial(method: str, config: dict, report: Callable[[dict], None]) -> None:
    """One Tune trial of recipe ``method`` (the one trainable of `effray tune`)."""
    import torch

    recipe = find_recipe(method, config.get("stack", ()))
    torch.set_num_threads(1)
    recipe.run(trial_config(recipe, config), lambda r, cfg: TuneSink(r, cfg, report))
