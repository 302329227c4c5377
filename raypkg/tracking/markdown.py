"""Tables in the docs are rendered from stored results: ``render`` turns a Parquet table (a
bench's, with its provenance, ``raypkg.tracking.provenance``) into the Markdown the docs show,
between the markers

    <!-- table: PATH columns=a,b,c -->
    ...
    <!-- /table -->

or only the rows whose column holds one of the values named (a method's page shows its rows):
``<!-- table: PATH columns=a,b,c rows=method:full,rs2 -->``. Columns whose names hold spaces
are quoted: ``columns="method,2 actors_s"``.
``effray report --markdown PATH --columns a,b,c [--rows method:full,rs2]`` prints it, and tests/docs/test_docs_tables.py
checks that every marked table in the docs equals what its stored result renders.

A table of methods, made from the registry, stands between ``<!-- methods: KIND -->`` and
``<!-- /methods -->`` (``raypkg.catalog``). Every other table says what it is on the line
before it: ``<!-- reference -->`` (flags, files: not a measurement) or ``<!-- hand-written:
WHY -->`` (a measurement with no stored result, and why it is not re-measured);
``unmarked_tables`` finds a table that says neither.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from raypkg.tracking.provenance import read_provenance

MARKER = re.compile(r'<!-- table: (?P<path>\S+) columns=(?:"(?P<quoted>[^"]+)"|(?P<columns>\S+))'
                    r"(?: rows=(?P<rows>\S+))? -->\n"
                    r"(?P<body>.*?)<!-- /table -->", re.S)


def cell(value) -> str:
    """A number to 4 significant digits (NaN or none: ``-``), a flag as yes/no, anything else as text."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return "-" if math.isnan(value) else "inf" if math.isinf(value) else f"{value:.4g}"
    return str(value)


def read_table(path: str | Path, flag: str = "--markdown") -> pd.DataFrame:
    """The Parquet table at ``path``; a one-line UsageError, led by ``flag``, where there is
    none, or where the file is not one (empty, truncated, another format)."""
    from raypkg.errors import UsageError

    if not Path(path).is_file():
        raise UsageError(f"{flag}: {str(path)!r} " + ("is a directory, not a .parquet file"
                                                     if Path(path).is_dir() else "does not exist"))
    try:
        return pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001  (pyarrow raises ArrowInvalid, OSError, ... for a damaged file)
        why = (str(e).splitlines() or [type(e).__name__])[0]  # pyarrow's whole line: it says what is wrong
        raise UsageError(f"{flag}: cannot read {str(path)!r} as a Parquet table ({why})") from None


def render(path: str | Path, columns: list[str], rows: str | None = None) -> str:
    """The Markdown table of ``columns`` of the Parquet table at ``path`` (only the rows
    whose column holds one of the values ``rows`` names, ``COLUMN:V1,V2``), and a line
    saying where it came from (its stored provenance)."""
    from raypkg.errors import UsageError

    frame = read_table(path)
    column, _, values = (rows or "").partition(":")
    missing = [c for c in [*columns, *([column] if rows else [])] if c not in frame.columns]
    if missing:
        raise UsageError(f"{path}: no column {', '.join(missing)} (it has {', '.join(frame.columns)})")
    if rows:
        wanted = [v for v in values.split(",") if v]
        if not wanted:
            raise UsageError(f"--rows takes COLUMN:VALUE,VALUE (e.g. method:full,rs2), got {rows!r}")
        frame = frame[frame[column].astype(str).isin(wanted)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in frame[columns].to_dict("records")]
    source = read_provenance(path)
    if source:
        lines += ["", f"Measured {source['date']} at commit {source['commit']}{differed(source)} on {source['cpu']} (CPU flags: "
                      f"{source['cpu_flags']}; {source['device']}), torch {source['torch']}, {source['threads']} "
                      f"torch thread(s){trained_at(source)}: `{source['command']}`."
                      + (f" A draft ({source['draft']}): its code may differ from that commit." if source.get("draft")
                         else "")
                      + (f" Judged again from those rows on {source['judged']}." if source.get("judged") else "")
                      + ran_by(source)]
    return "\n".join(lines) + "\n"


def ran_by(source: dict) -> str:
    """The code that ran a judged table's points where it is not only the commit that judged
    them (``point_commits``: a frontier rendered from a store, or bench verdicts' columns, whose
    ``columns`` name each column's with its machine), and the machines that timed them where
    they recorded it (``point_machines``); else empty."""
    if source.get("columns"):
        return f" Its columns: {source['columns']}."
    return ((f" Its points were run at {source['point_commits']}." if source.get("point_commits") else "")
            + (f" Its points were timed on {source['point_machines']}." if source.get("point_machines") else ""))


def differed(source: dict) -> str:
    """What a ``+dirty`` result's provenance says of the files its checkout differed in
    (``dirty_files``, and an ``explained`` note where code is among them), or that they were
    not recorded (a result stored before the writer recorded them); else empty."""
    files = source.get("dirty_files") or []
    if not files:
        return " (uncommitted changes, not recorded: it needs a rerun at a clean commit)" \
            if "+dirty" in source.get("commit", "") else ""
    count = f"{len(files)} file{'s' if len(files) > 1 else ''} differed from it"
    if not any(f.startswith("raypkg/") for f in files):
        return f" ({count}, none of them code; its provenance lists them)"
    if source.get("explained"):
        return f" ({count}, code among them; its provenance says why none changed what ran)"
    return f" ({count}, code among them)"


def trained_at(source: dict[str, str]) -> str:
    """``, trained at resnet20 bf16/channels_last`` from a result's provenance (none stored
    before 2026-11-27: empty)."""
    return f", trained at {source['executions']}" if source.get("executions") else ""


def marked_tables(text: str):
    """(path, columns, rows, body) of every marked table in a page's ``text`` (rows: None for all)."""
    for m in MARKER.finditer(text):
        yield m["path"], (m["quoted"] or m["columns"]).split(","), m["rows"], m["body"]


def refresh(text: str, root: Path) -> str:
    """A page's ``text`` with every marked table rendered anew from its stored result (paths
    relative to ``root``): what ``python -m raypkg.tracking.markdown PAGE...`` writes back
    after a stored result changed."""
    def rendered(m: re.Match) -> str:
        columns = (m["quoted"] or m["columns"]).split(",")
        return m.group(0)[:m.start("body") - m.start()] + render(root / m["path"], columns, m["rows"]) + "<!-- /table -->"

    return MARKER.sub(rendered, text)


TABLE_NOTE = re.compile(r"<!-- (reference|hand-written: .+) -->")


def unmarked_tables(text: str) -> list[int]:
    """The first line numbers (1-based) of the tables in ``text`` that are neither rendered
    (between ``<!-- table: ... -->`` and ``<!-- /table -->``, or ``<!-- methods: ... -->`` and
    ``<!-- /methods -->``) nor preceded by a
    ``<!-- reference -->`` or ``<!-- hand-written: WHY -->`` line."""
    found, rendered, previous = [], False, ""
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if line.startswith(("<!-- table: ", "<!-- methods: ")):  # a list of methods: raypkg.catalog
            rendered = True
        elif line.startswith(("<!-- /table -->", "<!-- /methods -->")):
            rendered = False
        starts = line.startswith("|") and not (number > 1 and lines[number - 2].startswith("|"))
        if starts and not rendered and not TABLE_NOTE.fullmatch(previous):
            found.append(number)
        if line.strip():
            previous = line.strip()
    return found


if __name__ == "__main__":  # python -m raypkg.tracking.markdown README.md docs/*.md: the tables rendered anew
    import sys

    for page in map(Path, sys.argv[1:]):
        page.write_text(refresh(page.read_text(), Path.cwd()))
