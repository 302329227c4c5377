"""No hand-kept list of methods (issue 64): every list agrees with the registry,
``raypkg.method_registry.METHODS`` (``raypkg.catalog.stale``). The README's table of methods,
docs/methods/stacking.md's table and docs/architecture.md's layout and recipes are written
between ``<!-- methods: KIND -->`` markers by `python -m raypkg.catalog`; `effray --help`
is made from the registry when the CLI loads; the package description names no method; every
method has its page. A registry with one method more, or one fewer, makes each disagree."""

from __future__ import annotations

import dataclasses
import re
import sys

import pytest
from click.testing import CliRunner
from helpers import REPO

from raypkg import catalog, method_registry
from raypkg.cli import main


def test_every_list_of_methods_agrees_with_the_registry():
    assert catalog.stale() == []


def test_effray_help_names_every_method_in_the_registrys_order():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    named = re.search(r"Methods: (.*?)\. Their commands", " ".join(result.output.split())).group(1)
    assert named.replace("- ", "-").split(", ") == [m.name for m in method_registry.METHODS]  # click wraps at a hyphen
    for command in ("effray train", "effray select", "effray unlearn"):  # the methods' own, outside `effray run`
        assert command in " ".join(result.output.split())


def stale_with(monkeypatch, registry) -> str:
    monkeypatch.setattr(method_registry, "METHODS", tuple(registry))
    return "\n".join(catalog.stale())


def test_a_method_added_to_the_registry_and_to_no_list_is_found_in_each(monkeypatch):
    import raypkg.methods.ema

    ema = next(m for m in method_registry.METHODS if m.name == "ema")
    monkeypatch.setitem(sys.modules, "raypkg.methods.ema_twin", raypkg.methods.ema)  # its module, found from its name
    found = stale_with(monkeypatch, [*method_registry.METHODS, dataclasses.replace(ema, name="ema-twin")])
    for line in ("README.md: its readme list differs", "docs/methods/stacking.md: its stacking list differs",
                 "docs/architecture.md: its layout list differs", "docs/architecture.md: its recipes list differs",
                 "ema-twin: no page docs/methods/ema-twin.md", "effray --help: its methods differ"):
        assert line in found, found


def test_a_method_removed_from_the_registry_but_still_listed_is_found_in_each(monkeypatch):
    found = stale_with(monkeypatch, [m for m in method_registry.METHODS if m.name != "ema"])
    for kind in ("readme", "stacking", "layout", "recipes"):
        assert f"its {kind} list differs" in found, found
    assert "effray --help: its methods differ" in found


def test_the_package_description_names_no_method(monkeypatch):
    """pyproject.toml's description is static: it stays true by naming no method. A method
    named by one of its words would be found."""
    assert catalog.stale() == [] and catalog.description()
    engine = method_registry.Method("engine", stacks="is a name only")  # no module of its own to find
    found = stale_with(monkeypatch, [*method_registry.METHODS, engine])
    assert "pyproject.toml: the description names engine" in found, found


def test_a_list_is_rewritten_from_the_registry_and_an_unknown_one_refused():
    text = "a\n<!-- methods: layout -->stale<!-- /methods -->\nb"
    assert catalog.regenerate(text) == f"a\n<!-- methods: layout -->{catalog.layout()}<!-- /methods -->\nb"
    assert "(ema)" in catalog.layout() and "`ema`" in catalog.recipes()
    with pytest.raises(ValueError, match="no such list"):
        catalog.regenerate("<!-- methods: nope --><!-- /methods -->")


def test_the_layout_names_every_entry_of_the_package():
    """docs/architecture.md's Layout names every module and folder at raypkg/'s top level
    (the methods' from the registry, the platform's by hand)."""
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"raypkg/(\w+(?:\.py)?)", section))
    entries = {p.name for p in (REPO / "raypkg").iterdir()
               if p.name not in ("__init__.py", "__pycache__") and (p.suffix == ".py" or p.is_dir())}
    assert sorted(entries - named) == []
