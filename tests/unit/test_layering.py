"""The package's import structure: no import circle anywhere in raypkg (registration by
import aside), the foundation imports nothing above it, data < models < engine, only the
methods and the interfaces import a method (raypkg.methods), and no method imports another.

The graph is read from the source (``ast``), not from an import: every ``import`` of a
raypkg module, at module level or inside a function (a lazy import is still a dependency),
except those under ``if TYPE_CHECKING:`` (type hints only)."""

from __future__ import annotations

import ast
import functools
import re

from helpers import REPO

PACKAGE = REPO / "raypkg"


def module_name(path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


@functools.cache
def import_graph() -> dict[str, dict[str, bool]]:
    """raypkg module -> {raypkg module it imports: whether only from inside a function}."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        in_function = {id(n) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for n in ast.walk(node)}
        imported: dict[str, bool] = {}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:  # `from raypkg import plugins`: the module
                targets = {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names}
            else:
                continue
            for target in targets & modules.keys() - {name}:
                imported[target] = imported.get(target, True) and id(node) in in_function
        graph[name] = imported
    return graph


def registration_packages() -> set[str]:
    """Packages whose ``__init__`` only imports its own modules, each of which registers
    itself (a dataset builder, a model, a selector) with the registry that imports the
    package: the registry imports it inside the function that needs the entries."""
    found = set()
    for path in PACKAGE.rglob("__init__.py"):
        name = module_name(path)
        body = [node for node in ast.parse(path.read_text()).body
                if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]  # the docstring
        if body and all(isinstance(node, ast.ImportFrom) and node.module == name for node in body):
            found.add(name)
    return found


def dependencies(exempt_registration: bool = True) -> dict[str, set[str]]:
    """module -> the modules it needs; with ``exempt_registration``, an import of a
    registration package from inside a function is left out (registration by import: the
    registry asks for its members' modules when it is first used, and they import the
    registry to register into it; an import of such a package at module level stays)."""
    registering = registration_packages() if exempt_registration else set()
    return {m: {n for n, lazy in ns.items() if not (lazy and n in registering)} for m, ns in import_graph().items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: each a sorted list of the modules that reach one another."""
    reached = {m: modules_reached(graph, m) for m in graph}
    return [list(c) for c in sorted({tuple(sorted(n for n in reached[m] if m in reached[n]))
                                     for m in graph if m in reached[m]})]


def modules_reached(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for m in graph[todo.pop()] - seen:
            seen.add(m)
            todo.append(m)
    return seen


def test_no_import_circle_anywhere_but_registration_by_import():
    graph = dependencies()
    found = circles(graph)
    # each circle with its arrows, so a failure says which import closes it
    assert [{m: sorted(graph[m] & set(circle)) for m in circle} for circle in found] == []


def test_registration_by_import_is_the_three_registries_and_is_all_that_is_exempt():
    """The exemption covers three packages of self-registering modules, each imported lazily
    by its registry; without it those (and only those) are circles, so the test above sees
    every other one."""
    assert registration_packages() == {"raypkg.data.sources", "raypkg.models.zoo", "raypkg.selection.methods"}
    exempt = sorted((m, n) for m, ns in import_graph().items() for n, lazy in ns.items()
                    if lazy and n in registration_packages())
    assert exempt == [("raypkg.data.registry", "raypkg.data.sources"), ("raypkg.models.registry", "raypkg.models.zoo"),
                      ("raypkg.selection.registry", "raypkg.selection.methods")]
    assert {p for circle in circles(dependencies(exempt_registration=False)) for p in circle
            if p in registration_packages()} == registration_packages()


def test_the_circle_check_sees_lazy_imports_and_skips_type_hints():
    """What the graph counts, on a made-up graph and on the source: an import inside a
    function is an arrow (it is still a dependency); one under TYPE_CHECKING is not."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
    graph = import_graph()
    assert graph["raypkg.recipe"]["raypkg.algorithms"] is True  # Recipe.run's check_stack, inside the method
    assert "raypkg.engine.plans" not in graph["raypkg.engine.callbacks"]  # a type hint only


def test_selection_imports_nothing_of_lipt_and_nothing_below_the_cli_imports_it():
    graph = import_graph()
    assert [(m, n) for m, ns in graph.items() for n in ns
            if m.startswith("raypkg.selection") and n.startswith("raypkg.methods.lipt")] == []
    # the jobs' entry, and the catalog, which writes the docs' lists from the registry and the CLI
    assert sorted(m for m, ns in graph.items() if "raypkg.cli" in ns) == ["raypkg.catalog", "raypkg.jobs_support"]


# What every layer may use: errors, paths, storage, plug-in loading, timing, and starting or
# joining Ray, placing its work and checking that --storage reaches its nodes. Each imports only
# other foundation modules (plugins.py loads a plug-in dataset's factory; turning what it
# returns into DataSplits is the data layer's: raypkg.data.plugins).
FOUNDATION = ("raypkg.errors", "raypkg.paths", "raypkg.storage", "raypkg.checksums", "raypkg.interrupts",
              "raypkg.plugins", "raypkg.timing", "raypkg.distributed.cluster", "raypkg.distributed.placement",
              "raypkg.distributed.node_storage", "raypkg.distributed.ray_internals")
# data < models < engine: each imports only itself, the layers below it and the foundation (no
# method, recipe, algorithm, config builder, bench or tracking).
LAYERS = {"raypkg.data": ("raypkg.data",), "raypkg.models": ("raypkg.models", "raypkg.data"),
          "raypkg.engine": ("raypkg.engine", "raypkg.models", "raypkg.data")}


def test_the_foundation_imports_nothing_above_it():
    graph = import_graph()
    assert set(FOUNDATION) <= graph.keys()
    assert [(m, n) for m in FOUNDATION for n in sorted(graph[m]) if n not in FOUNDATION] == []


def test_the_engine_models_and_data_import_nothing_above_them():
    graph = import_graph()
    upward = [(m, n) for layer, allowed in LAYERS.items() for m in graph if m == layer or m.startswith(layer + ".")
              for n in graph[m] if not n.startswith((*allowed, *FOUNDATION))]
    assert upward == []


def test_ray_s_private_apis_are_used_in_one_module_only():
    """raypkg/distributed/ray_internals.py holds every use of Ray's private APIs."""
    private = ("ray._private", "._internal", "_register_sigint_handler", "ray_constants")
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if any(name in p.read_text() for name in private))
    assert users == ["distributed/ray_internals.py"]


# Every method lives in raypkg.methods (a module or package each). What may name one of its
# modules: the methods themselves, and the interfaces above the platform: the command line,
# the API, Tune, the benches, the docs' lists, the jobs' entry and the registry (whose rows
# are import paths). Below them (engine, data, models, selection, tracking, distributed,
# recipes and algorithms, config) nothing does, in an import or in an import path.
METHODS_PACKAGE = "raypkg.methods"
INTERFACES = ("raypkg.cli", "raypkg.cli_options", "raypkg.api", "raypkg.tuning", "raypkg.bench", "raypkg.catalog",
              "raypkg.jobs_support", "raypkg.method_registry")
IMPORT_PATH = re.compile(r"raypkg\.methods(\.\w+)+(:\w+)?")


def within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def method_of(module: str) -> str | None:
    """The method a module belongs to (``raypkg.methods.crest.plan`` -> ``raypkg.methods.crest``), else None."""
    parts = module.split(".")
    return ".".join(parts[:3]) if len(parts) > 2 and within(module, METHODS_PACKAGE) else None


def import_paths(module: str) -> set[str]:
    """The method modules a module names in a string that is an import path and nothing else
    (``"raypkg.methods.ema:Ema"``; a docstring's mention is not one)."""
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.is_file():
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    return {node.value.split(":")[0] for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and IMPORT_PATH.fullmatch(node.value)}


def test_only_the_methods_and_the_interfaces_import_a_method():
    graph = import_graph()
    outside = [m for m in graph if not within(m, METHODS_PACKAGE, *INTERFACES)]
    assert [(m, n) for m in outside for n in sorted(graph[m]) if within(n, METHODS_PACKAGE)] == []
    assert [(m, n) for m in outside for n in sorted(import_paths(m))] == []
    # the package itself is a docstring: importing it loads no method
    assert [n for n in ast.parse((PACKAGE / "methods" / "__init__.py").read_text()).body
            if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))] == []


def test_no_method_imports_another():
    """What two methods share (the selection library, the random masks, ``dense_examples``,
    ``kept_count``) lives in the platform, which both import."""
    graph = import_graph()
    assert [(m, n) for m, ns in graph.items() for n in sorted(ns)
            if method_of(m) and method_of(n) and method_of(m) != method_of(n)] == []
    assert [(m, n) for m in graph if method_of(m) for n in sorted(import_paths(m))
            if method_of(n) != method_of(m)] == []


def test_every_module_the_registry_names_is_a_method_s_and_every_method_has_a_row():
    from raypkg.method_registry import METHODS

    named = {path.split(":")[-2] if path.count(":") == 2 else path.split(":")[0]
             for method in METHODS for path in (method.recipes, method.settings, method.algorithm, *method.commands)
             if path}
    assert sorted(n for n in named if not within(n, METHODS_PACKAGE)) == []
    homes = {method_of(n) for n in named}
    packages = {f"{METHODS_PACKAGE}.{p.stem}" for p in (PACKAGE / "methods").iterdir()
                if p.name not in ("__init__.py", "__pycache__") and (p.suffix == ".py" or (p / "__init__.py").is_file())}
    assert homes == packages
