"""Every list of methods, made from the registry (``raypkg.method_registry.METHODS``), as timm
derives its lists of models from its own: nothing here names a method.

- **The command line**: `effray --help` names the methods and their commands, made by
  ``raypkg.cli`` from the registry when it loads (``methods_help``).
- **The docs** keep each list between markers, rewritten from the registry by
  ``python -m raypkg.catalog`` (after adding a method; ``--check`` only says what differs):

      <!-- methods: KIND -->
      ...
      <!-- /methods -->

  KIND is one of ``KINDS``: ``readme`` (the README's table of methods, each linked to its
  page ``docs/methods/NAME.md`` under the page's title, with its commands and the first
  paragraph of its command's help), ``stacking`` (docs/methods/stacking.md: what stacks
  with ``--with``, in the order its callbacks act), ``layout`` and ``recipes``
  (docs/architecture.md: where each method lives, and where its recipe comes from).
- **The package description** (pyproject.toml) is static: it names no method.

``stale()`` lists every list that disagrees with the registry; tests/docs/test_method_lists.py
fails while it lists any. It reads the CLI's commands (``raypkg.cli.method_commands``): it
stands above the command line, which never imports it.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"<!-- methods: (?P<kind>[\w-]+) -->(?P<body>.*?)<!-- /methods -->", re.S)
# the pages that must hold each kind of list
REQUIRED = {"README.md": ("readme",), "docs/methods/stacking.md": ("stacking",),
            "docs/architecture.md": ("layout", "recipes")}


def methods() -> tuple:
    from raypkg import method_registry as registry

    return registry.METHODS  # read when called: a test may replace the registry


def page(name: str) -> Path:
    """A method's page: ``docs/methods/NAME.md``."""
    return REPO / "docs" / "methods" / f"{name}.md"


def title(name: str) -> str:
    """The page's title up to its colon (``# CREST: coresets for SGD ...`` -> ``CREST``), else the name."""
    path = page(name)
    first = path.read_text().splitlines()[0] if path.is_file() else ""
    return first.removeprefix("# ").split(":")[0].strip() if first.startswith("# ") else name


def summary(method) -> str:
    """The first paragraph of the help of its `effray run NAME` (else of its first command), on one line."""
    from raypkg.cli import method_commands

    found = method_commands(method)
    command = found.get(f"effray run {method.name}") or next(iter(found.values()), None)
    text = (command.help or "") if command is not None else ""
    return " ".join(text.split("\n\n")[0].split()).replace("|", "\\|")


def modules(method) -> list[str]:
    """The modules its row names (its bench aside: benches live in ``raypkg.bench``)."""
    paths = [method.recipes, method.settings, method.algorithm,
             *(entry.split(":", 1)[1] for entry in method.commands)]
    return [path.split(":")[0] for path in paths if path]


def source(module: str) -> str:
    """The file or folder of a dotted module, from the repository's root: ``raypkg/methods/crest/`` or ``raypkg/methods/ema.py``."""
    path = Path(*module.split("."))
    return f"{path.as_posix()}/" if (REPO / path).is_dir() else f"{path.as_posix()}.py"


def home(method) -> str | None:
    """Where a method lives: the shortest package or module holding every module its row
    names that no other method's row reaches into."""
    own = [m.split(".") for m in modules(method)]
    if not own:
        return None
    others = [m for other in methods() if other.name != method.name for m in modules(other)]
    common = os.path.commonprefix(own)
    for n in range(2, len(common) + 1):
        prefix = ".".join(common[:n])
        if not any(m == prefix or m.startswith(prefix + ".") for m in others):
            return source(prefix)
    return source(".".join(common))


def order_names() -> dict[int, str]:
    from raypkg.algorithms import AVERAGE, DATA, LOSS, MASKS

    return {DATA: "1: data (plan, batch, inputs)", LOSS: "2: loss", MASKS: "3: masks, then gradients",
            AVERAGE: "4: average of the weights"}


def readme_table() -> str:
    from raypkg.cli import method_commands

    rows = ["| method | command | what it does |", "|---|---|---|"]
    for method in methods():
        named = ", ".join(f"`{c}`" for c in method_commands(method))
        rows.append(f"| [{title(method.name)}](docs/methods/{method.name}.md) | {named} | {summary(method)} |")
    return "\n" + "\n".join(rows) + "\n"


def stacking_table() -> str:
    from raypkg.algorithms import stackable
    from raypkg.method_registry import import_object

    names = order_names()
    stacks = [(method, import_object(method.algorithm)) for method in stackable().values()]
    rows = ["| `--with` | algorithm | acts at | what it does |", "|---|---|---|---|"]
    for method, algorithm in sorted(stacks, key=lambda pair: pair[1].order):  # stable: the registry's order
        where = source(algorithm.__module__)
        rows.append(f"| [`{method.name}`]({method.name}.md) | `{algorithm.__name__}` (`{where}`) "
                    f"| {names.get(algorithm.order, algorithm.order)} | {summary(method)} |")
    return "\n" + "\n".join(rows) + "\n"


def layout() -> str:
    return ", ".join(f"`{home(method)}` ({method.name})" for method in methods() if home(method))


def recipes() -> str:
    own = [f"`{method.name}` (`{source(method.recipes)}`)" for method in methods() if method.recipes]
    made = [f"`{method.name}`" for method in methods() if method.made]
    return ", ".join(own) + "; made from the algorithm of its row: " + ", ".join(made)


KINDS = ("readme", "stacking", "layout", "recipes")


def render(kind: str) -> str:
    """What a ``<!-- methods: KIND -->`` block holds."""
    if kind not in KINDS:
        raise ValueError(f"<!-- methods: {kind} -->: no such list (the lists: {', '.join(KINDS)})")
    return {"readme": readme_table, "stacking": stacking_table, "layout": layout, "recipes": recipes}[kind]()


def regenerate(text: str) -> str:
    """``text`` with every marked list rewritten from the registry."""
    return BLOCK.sub(lambda m: f"<!-- methods: {m['kind']} -->{render(m['kind'])}<!-- /methods -->", text)


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def description() -> str:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["description"]


def stale() -> list[str]:
    """Every list of methods that disagrees with the registry, a line each (none: all agree)."""
    from raypkg.cli import main, methods_help

    found = []
    for path in pages():
        text, where = path.read_text(), path.relative_to(REPO).as_posix()
        kinds = [m["kind"] for m in BLOCK.finditer(text)]
        found += [f"{where}: no <!-- methods: {kind} --> list" for kind in REQUIRED.get(where, ()) if kind not in kinds]
        found += [f"{where}: its {m['kind']} list differs from the registry (python -m raypkg.catalog rewrites it)"
                  for m in BLOCK.finditer(text) if m["body"] != render(m["kind"])]
    found += [f"{method.name}: no page {page(method.name).relative_to(REPO)}" for method in methods()
              if not page(method.name).is_file()]
    if f"\n\n{methods_help()}\n\n" not in main.help:  # made when the CLI loaded
        found.append("effray --help: its methods differ from the registry")
    named = [m.name for m in methods() if re.search(rf"\b{re.escape(m.name)}\b", description(), flags=re.I)]
    if named:
        found.append(f"pyproject.toml: the description names {', '.join(named)}; it names no method, to stay true")
    return found


def rewrite(argv: list[str]) -> int:
    """``python -m raypkg.catalog [--check]``: rewrite the docs' lists (or only say which differ)."""
    if "--check" not in argv:
        for path in pages():
            text = path.read_text()
            if BLOCK.search(text) and regenerate(text) != text:
                path.write_text(regenerate(text))
                print(f"rewrote {path.relative_to(REPO)}")
    found = stale()
    print("\n".join(found) if found else "every list of methods agrees with the registry")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(rewrite(sys.argv[1:]))
