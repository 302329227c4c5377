"""Tables in the docs are rendered from stored results: ``render`` turns a Parquet table (a
bench's, with its provenance, ``raypkg.tracking.provenance``) into the Markdown the docs show,
between the markers

    <!-- table: PATH columns=a,b,c -->
    ...
    <!-- /table -->

``effray report --markdown PATH --columns a,b,c`` prints it, and tests/test_docs_tables.py
checks that every marked table in the docs equals what its stored result renders.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from raypkg.tracking.provenance import read_provenance

MARKER = re.compile(r"<!-- table: (?P<path>\S+) columns=(?P<columns>\S+) -->\n(?P<body>.*?)<!-- /table -->", re.S)


def cell(value) -> str:
    """A number to 4 significant digits (NaN: ``-``), a flag as yes/no, anything else as text."""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return "-" if math.isnan(value) else "inf" if math.isinf(value) else f"{value:.4g}"
    return str(value)


def render(path: str | Path, columns: list[str]) -> str:
    """The Markdown table of ``columns`` of the Parquet table at ``path``, and a line saying
    where it came from (its stored provenance)."""
    frame = pd.read_parquet(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        from raypkg.errors import UsageError

        raise UsageError(f"{path}: no column {', '.join(missing)} (it has {', '.join(frame.columns)})")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in frame[columns].to_dict("records")]
    source = read_provenance(path)
    if source:
        lines += ["", f"Measured {source['date']} at commit {source['commit']} on {source['cpu']} (CPU flags: "
                      f"{source['cpu_flags']}; {source['device']}), torch {source['torch']}, {source['threads']} "
                      f"torch thread(s): `{source['command']}`."]
    return "\n".join(lines) + "\n"


def marked_tables(text: str):
    """(path, columns, body) of every marked table in a page's ``text``."""
    for m in MARKER.finditer(text):
        yield m["path"], m["columns"].split(","), m["body"]
