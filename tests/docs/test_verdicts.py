"""Every stored verdict says only what its numbers say (issue 77): in each stored frontier
summary and in the README's table, no word contradicts its interval, no printed interval is
wider than ``WIDEST``, every cell shows its seeds, and no judged row has a phase below 0 s."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from helpers import REPO

from raypkg.bench.curve import EQUIVALENCE, WIDEST
from raypkg.bench.frontier.judge import PHASES
from raypkg.tracking.markdown import marked_tables

RESULTS = REPO / "docs/results"
SUMMARIES = sorted(RESULTS.glob("frontier-*-summary.parquet"))
ROWS = [p.with_name(p.name.replace("-summary", "")) for p in SUMMARIES]
NUMBER = r"[0-9.e+-]+"
CELL = re.compile(rf"^(?:(?P<setting>[a-z]+=\S+) )?(?P<word>faster|slower|equivalent|inconclusive|below curve|-)"
                  rf"(?P<close>\?)?(?: (?P<ratio>{NUMBER})x"
                  rf"(?: \[(?P<low>{NUMBER}), (?P<high>{NUMBER})\](?: at [0-9.]+%)?)?"
                  rf"| >=(?P<at_least>{NUMBER})x| <=(?P<at_most>{NUMBER})x)? n=(?P<n>\d+)(?: partial: \d+ missing)?(?: †)?$")


def agrees(word: str, low: float, high: float) -> bool:
    """Whether ``word`` is what the interval [low, high] says (``raypkg.bench.curve.judge``)."""
    return {"faster": low > 1, "slower": high < 1,
            "equivalent": 1 / EQUIVALENCE <= low <= 1 <= high <= EQUIVALENCE,
            "inconclusive": low <= 1 <= high and (low < 1 / EQUIVALENCE or high > EQUIVALENCE),
            "below curve": high >= 1}[word]


def readme_cells() -> list[str]:
    tables = [body for path, _, _, body in marked_tables((REPO / "README.md").read_text())
              if path == "docs/results/verdicts.parquet"]
    assert len(tables) == 1
    rows = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in tables[0].splitlines()[2:]]
    return [part for row in rows for cell in row[1:] for part in cell.split("; ") if cell != "-"]


@pytest.mark.parametrize("path", SUMMARIES, ids=[p.name for p in SUMMARIES])
def test_a_stored_summarys_words_agree_with_their_intervals(path):
    summary = pd.read_parquet(path)
    judged = summary[summary["n"] >= 2]
    assert not summary.loc[summary["n"] < 2, "verdict"].isin(["faster", "slower", "equivalent"]).any()
    for row in judged.to_dict("records"):
        assert agrees(row["verdict"], row["x_low"], row["x_high"]), (path.name, row["method"], row["setting"])
        assert row["x_low"] <= row["x_vs_curve"] <= row["x_high"]


def test_every_readme_verdict_shows_its_seeds_and_says_only_what_its_interval_says():
    cells = readme_cells()
    assert cells
    for text in cells:
        match = CELL.match(text)
        assert match, f"not a verdict cell: {text!r}"
        if match["low"]:
            low, high = float(match["low"]), float(match["high"])
            assert high / low <= WIDEST and agrees(match["word"], low, high), text
            assert low <= float(match["ratio"]) <= high, text
        if match["word"] == "below curve" and match["at_most"] and match["n"] != "1":  # a bound over 10x withheld
            assert agrees("below curve", 0.0, float(match["at_most"])), text
        assert not (match["word"] in ("faster", "slower", "equivalent") and int(match["n"]) < 2), text
        assert match["word"] != "-" or match["n"] == "0" and "partial:" in text, text  # planned, no seed run yet


@pytest.mark.parametrize("path", ROWS, ids=[p.name for p in ROWS])
def test_no_judged_row_has_a_phase_below_0_or_no_training_seconds(path):
    rows = pd.read_parquet(path)
    judged = rows[rows["unsound"].eq("")]
    phases = [f"{p}_s" for p in PHASES if f"{p}_s" in rows]
    assert (judged[phases] >= 0).all().all() and (judged[["train_s", "eval_s", "e2e_s"]] > 0).all().all()
    assert rows.loc[rows["unsound"].ne(""), "x_vs_curve"].isna().all()  # named, not judged


def test_the_cell_pattern_refuses_a_cell_without_its_seeds_or_with_an_old_word():
    assert CELL.match("f=0.1 slower? 0.50x [0.40, 0.62] n=3 †")
    assert CELL.match("below curve <=1.34x n=5") and CELL.match("inconclusive n=2") and CELL.match("faster >=1.10x n=2")
    assert CELL.match("inconclusive 1.16x n=1 partial: 2 missing") and not CELL.match("inconclusive 1.16x n=1 partial")
    assert CELL.match("- n=0 partial: 3 missing")
    assert not CELL.match("tie 0.88x [0.79, 0.98]") and not CELL.match("slower 0.50x [0.40, 0.62]")
    assert not agrees("equivalent", 0.78, 1.2) and agrees("slower", 0.2, 0.98) and not agrees("inconclusive", 0.9, 1.1)
