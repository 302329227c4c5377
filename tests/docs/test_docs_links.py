"""Every relative link in README.md and docs/**/*.md leads somewhere: the file (or folder)
exists, and a `#anchor` names a heading of the target file, as GitHub slugs it (lower case,
punctuation but `-` and `_` dropped, spaces to `-`, `-1`, `-2`, ... after a repeated one).
Links to other sites (`https://...`) are not fetched."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")


def prose(text: str) -> str:
    """TEXT without its fenced code blocks (a `# comment` there is no heading, a `[x](y)` no link)."""
    return re.sub(r"(?ms)^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (as github-slugger makes it from the rendered text)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"[`*]|<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of PATH's headings."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"(?m)^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", prose(path.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(path: Path) -> list[str]:
    """`target (why)` for each relative link of PATH that leads nowhere."""
    broken = []
    for _, target in LINK.findall(prose(path.read_text())):
        if not target or re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target} (no file {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading with anchor #{anchor} in {dest.name})")
    return broken


@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(REPO).as_posix() for d in DOCS])
def test_every_relative_link_and_anchor_leads_somewhere(doc):
    assert broken_links(doc) == []


def test_the_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "b.md").write_text("# Precision and memory layout: `--precision`, `--memory-format`\n\n## W&B\n\n"
                                   "## W&B\n\n```bash\n# not a heading\n```\n")
    page = tmp_path / "a.md"
    page.write_text("[ok](b.md#precision-and-memory-layout---precision---memory-format) [ok](b.md#wb-1) "
                    "[ok](#here) [site](https://example.org/x#y)\n\n# Here\n\n"
                    "[gone](c.md) [no anchor](b.md#not-a-heading) [twice](b.md#wb-2)\n"
                    "```bash\n[in code](nowhere.md)\n```\n")
    assert [b.split(" (")[0] for b in broken_links(page)] == ["c.md", "b.md#not-a-heading", "b.md#wb-2"]
