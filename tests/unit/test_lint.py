"""`ruff check raypkg tests jobs` is clean: pyflakes (unused imports and names, undefined
names) and import order, as configured under [tool.ruff] in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO


def test_ruff_finds_nothing():
    try:
        import ruff  # noqa: F401  (installed by the test extra: pip install -e ".[test]")
    except ImportError:
        pytest.fail('ruff is not installed: pip install -e ".[test]"')
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                           "raypkg", "tests", "jobs"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_no_test_imports_another_test_or_conftest():
    """What several test files share is in tests/helpers.py (a test's import of conftest, or
    of another test module, broke when the tests moved into their tier directories)."""
    import re

    pattern = re.compile(r"^\s*(from|import)\s+(conftest|test_\w+)\b", re.M)
    offenders = [f"{p.relative_to(REPO)}: {m.group(0).strip()}" for p in sorted((REPO / "tests").rglob("*.py"))
                 for m in pattern.finditer(p.read_text())]
    assert offenders == []


def test_no_two_test_files_share_a_name():
    """The test folders are not packages, so pytest imports each test file by its name alone: a
    second file of the same name in another tier is not collected, an error that fails the run."""
    names = [p.name for p in (REPO / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
