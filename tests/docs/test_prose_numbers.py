"""Seconds and ratios that the docs' prose quotes from stored tables (issue 82, part 5), as
tests/docs/test_claims.py does for the claims table: each number is registered with the stored
table(s) it is read from, how it is computed from them with pandas, and the words it reads as in its
paragraph. The test recomputes every one from the Parquet and asserts the words are in the paragraph
(the list item or block of text that holds `near`), so a table measured or judged again fails here
until the prose quotes it. The rendered tables between `<!-- table: -->` markers are not prose: they
are rendered from the Parquet and checked by tests/docs/test_docs_tables.py.

Numbers the prose quotes from no stored table (a hand measurement with its own command, a paper's
number, an earlier run that is not kept) are not registered here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import pytest
from helpers import CIFAR10_SEEDS, REPO, first_seeds, quote_values, seed_zero, stored_table, value_at, whole_seeds

R = "docs/results/"
# Fashion-MNIST, every family (docs/results.md, "Full-size real data")
MLP_PACKED = R + "frontier-fashion-mnist-mlp-summary.parquet"  # two slots
MLP_PACKED_ROWS = R + "frontier-fashion-mnist-mlp.parquet"
LENET = R + "frontier-fashion-mnist-lenet5-summary.parquet"
LENET_ROWS = R + "frontier-fashion-mnist-lenet5.parquet"
RESNET_FM_ROWS = R + "frontier-fashion-mnist-resnet20-2k.parquet"  # its summary leaves out unsound rows
TIME_ALONE = R + "time-alone-fashion-mnist-mlp.parquet"
# digits-aug ResNet-20 on the avx512_bf16 CPU
FAMILIES = R + "frontier-resnet20-families-summary.parquet"  # "The ResNet-20 preset", 2,000 images
FAMILIES_ROWS = R + "frontier-resnet20-families.parquet"
AVX512_5K = R + "frontier-resnet20-5k-avx512-summary.parquet"
AVX512_5K_ROWS = R + "frontier-resnet20-5k-avx512.parquet"
AVX512_2K = R + "frontier-resnet20-2k-avx512-summary.parquet"
AVX512_2K_ROWS = R + "frontier-resnet20-2k-avx512.parquet"
LIPT_SVP = R + "frontier-resnet20-2k-lipt-svp-summary.parquet"
# digits-aug ResNet-20 on the AVX2 CPU, 5,000 images
R5K = R + "frontier-resnet20-5k-summary.parquet"
R5K_ROWS = R + "frontier-resnet20-5k.parquet"
VERDICTS = R + "verdicts.parquet"
MLP_ALONE = R + "frontier-fashion-mnist-mlp-alone-summary.parquet"
MLP_1SLOT = R + "frontier-fashion-mnist-mlp-1slot-summary.parquet"
AVX2_2K = R + "frontier-resnet20-linear-summary.parquet"
DIGITS_MLP = R + "frontier-mlp-summary.parquet"
UNTIL_DECIDED = R + "seeds-until-decided.parquet"
UNTIL_ROWS = R + "frontier-fashion-mnist-mlp-until-decided.parquet"  # its rows
CIFAR10 = R + "frontier-cifar10-resnet20-cpu-summary.parquet"  # cifar10:resnet20-cpu, judged
CIFAR10_ROWS = R + "frontier-cifar10-resnet20-cpu.parquet"  # cifar10:resnet20-cpu's stored points
CIFAR10_STORE = R + "frontier-cifar10-resnet20-cpu-points"  # its store
CIFAR10_SET = R + "frontier-cifar10-resnet20-cpu-set.parquet"  # SET-ITOP's store of its own, at other code
CIFAR10_CAPPED = R + "cifar10-capped-avx2/curve.parquet"  # its curve's ends again, an AVX-512 CPU capped to AVX2

RESULTS, CREST_PAGE, PR_PAGE, README, BENCHMARKS = ("docs/results.md", "docs/methods/crest.md",
                                                    "docs/methods/progressive-resizing.md", "README.md",
                                                    "docs/benchmarks.md")


def timed_alone_counts(d):
    """A frontier's rows timed alone: (the budget curve's, its rows, the methods', their rows)."""
    curve, alone = d["budget"].notna(), d["timed"] == "alone"
    return int((curve & alone).sum()), int(curve.sum()), int((~curve & alone).sum()), int((~curve).sum())


def methods_timed_alone(d) -> str:
    """The methods (not the curve's) with a row timed alone, as the prose names them: `a`, `b` and `c`."""
    names = [f"`{m}`" for m in dict.fromkeys(d[d["budget"].isna() & (d["timed"] == "alone")]["method"])]
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)


def cifar10_curve(d):
    """The CIFAR-10 curve's accuracies at 0.2-1 of the 5 epochs (auto, then fp32); whether every
    10% point stays below its first epoch and every subset's and sparse point below its second
    (auto's); and InfoBatch's accuracy with the whole epochs of the curve it lies between."""
    budgets = ("b=0.2", "b=0.4", "b=0.6", "b=0.8", "b=1")
    curve = [value_at(d, method, b) for method in ("full", "full-fp32") for b in budgets]
    methods = d[d.budget.isna() & (d.method != "full")]
    tenth = methods[methods.setting.str.startswith("f=0.1")]
    subsets = methods[methods.setting.str.startswith(("f=", "d="))]
    infobatch = value_at(d, "infobatch", "-")
    epochs = sum(acc < infobatch for acc in curve[:5])
    return (*curve, "below" if (tenth.test_acc < curve[0]).all() else "not all below",
            "below" if (subsets.test_acc < curve[1]).all() else "not all below", infobatch, epochs, epochs + 1)


def capped_against_avx2(capped, avx2):
    """The capped runs' accuracies (full and full-fp32 at 0.2, then at 1) where each equals the AVX2
    run's (else the word says which differs), and their seconds' lowest and highest ratio to the AVX2 runs'."""
    points = [("full", "b=0.2"), ("full-fp32", "b=0.2"), ("full-fp32", "b=1"), ("full", "b=1")]
    accs = [at(capped, *p) if at(capped, *p) == at(avx2, *p) else f"{' '.join(p)} differs" for p in points]
    ratios = [at(capped, *p, "e2e_s") / at(avx2, *p, "e2e_s") for p in points]
    return (*accs, min(ratios), max(ratios))


def set_full_beside_main(d, s):
    """Full training in SET-ITOP's store against the main store's: the same accuracies, or the
    word says not, and SET-ITOP's store's."""
    full = [(at(d, m, "b=1"), at(s, m, "b=1")) for m in ("full", "full-fp32")]
    return ("the same" if all(a == b for a, b in full) else "other", full[0][1], full[1][1])


def set_seeds_elsewhere(d, s):
    """Full training at fp32 at seeds 1 and 2, in SET-ITOP's store (another machine than the main
    store's seeds 1 and 2) and then in the main store."""
    return (*(at(s[s.seed == k], "full-fp32", "b=1") for k in (1, 2)),
            *(at(d[d.seed == k], "full-fp32", "b=1") for k in (1, 2)))


def set_beside_rigl(d, s):
    """The sparse points: the largest gap between the ITOP methods, the points below dense (each
    store's), and the largest gap between a method and its AGC twin (all in points), at the seeds
    SET-ITOP's store has whole: their count first."""
    s, = whole_seeds(s)
    d = d[d.seed.isin(s.seed)]
    itop = [at(d, "rigl-itop", "d=0.05"), at(s, "set-itop", "d=0.05")]
    twins = [(at(d, "rigl-itop", "d=0.05"), at(d, "a-rigl-itop", "d=0.05")),
             (at(s, "set-itop", "d=0.05"), at(s, "a-set-itop", "d=0.05"))]
    gap = max(abs(plain - agc) for plain, agc in twins)
    below = [100 * (at(d, "full", "b=1") - itop[0]), 100 * (at(s, "full", "b=1") - itop[1])]
    return s.seed.nunique(), 100 * abs(itop[0] - itop[1]), min(below), max(below), 100 * gap


def ran_twice(d):
    """GraNd's and LiPT-GraNd's accuracies at 30% in the CIFAR-10 rows, where the runs set aside
    in the store's stopped/ (their clocks hold a SIGSTOP) reached the same; else the set-aside ones."""
    import json

    stopped = {(r["row"]["method"], r["row"]["setting"]): r["row"]["test_acc"] for r in (
        json.loads(f.read_text()) for f in (REPO / CIFAR10_STORE / "stopped" / "points").glob("*.json"))}
    again = [value_at(d, method, "f=0.3") for method in ("grand", "lipt-grand")]
    before = [stopped[(method, "f=0.3")] for method in ("grand", "lipt-grand")]
    return tuple(again if again == before else before)


@dataclass(frozen=True)
class Prose:
    label: str
    page: str
    near: str  # words of the paragraph (or list item) that quotes the numbers, found in it alone
    paths: tuple[str, ...]  # the stored tables, passed to compute in this order
    compute: Callable  # frames -> a value or a tuple of values
    text: str  # what the values read as in the paragraph: text.format(*values)


def seeds(d: pd.DataFrame, method: str, setting: str, column: str = "e2e_s") -> list[float]:
    """A point's value in each of its seeds, in seed order (a frontier's rows)."""
    values = d[(d.method == method) & (d.setting == setting)].sort_values("seed")[column]
    assert len(values), f"no {method} {setting}"
    return [float(v) for v in values]

at, stored = value_at, stored_table


def quoted(prose, frames) -> str:
    """The text with its values (``quote_values``: rounded half up)."""
    return quote_values(prose.text, prose.compute(*frames))


def span(values) -> tuple[float, float]:
    values = list(values)
    return min(values), max(values)


def selectors(d, setting, verdict, column="x_vs_curve") -> list[float]:
    """A column of the selectors with a warm-up at ``setting``, each of which must read ``verdict``."""
    rows = d.loc[d.method.isin(["grand", "glister", "craig", "lipt-grand", "lipt-glister"]) & (d.setting == setting)]
    assert len(rows) == 5 and (rows.verdict == verdict).all(), rows[["method", "verdict"]]
    return rows[column].tolist()


def below_bounds(d, setting, printed, withheld) -> list[float]:
    """The `below curve` cells of the methods ``printed`` and ``withheld`` at ``setting``, as the
    prose says they read (``shown``): the bound each of ``printed`` prints (``<=H``), in order; none
    for ``withheld`` (over ``WIDEST`` wide)."""
    from raypkg.bench.verdicts import shown

    cells = {row["method"]: shown(row) for row in d[d.setting == setting].to_dict("records")}
    assert {cells[m].word for m in (*printed, *withheld)} == {"below curve"}, cells
    assert [cells[m].kind for m in printed] == ["at most"] * len(printed), cells
    assert {cells[m].kind for m in withheld} == {"wide"}, cells
    return [cells[m].high for m in printed]


def phases(d, method, setting, *columns):  # the sum of a point's phases (its mean over seeds in rows)
    return sum(at(d, method, setting, c) for c in columns)


def interval(d, method, setting):
    return tuple(at(d, method, setting, c) for c in ("x_vs_curve", "x_low", "x_high"))


LENET5, RESNET_2K = "fashion-mnist:lenet5 ", "fashion-mnist:resnet20 2k "


def sim(d, run, column, cells="fashion-mnist:mlp "):  # the simulation at the cells of a stored frontier
    return float(d.loc[d.cells.str.startswith(cells) & (d.run == run), column].iloc[0])


def short(d, run, cells="fashion-mnist:mlp "):  # the simulated cells short of the table's standard: ? or inconclusive
    return sim(d, run, "doubted", cells) + sim(d, run, "inconclusive", cells)


def run(d, name, column):  # a row of docs/results/seeds-until-decided.parquet
    return float(d.loc[d.run == name, column].iloc[0])


STATS = ("mean", "min", "max")


def replayed(d, rule, column):  # a rule's row of docs/results/seeds-until-decided-replay-summary.parquet
    return float(d.loc[d.rule == rule, column].iloc[0])


SPEEDUPS = ["infobatch", "label-smoothing", "ema", "selective-backprop", "layer-freezing"]


def verdict_cells(d: pd.DataFrame, methods: list[str], verdict: str) -> list[float]:
    """The ratios of ``methods``' cells in a summary, each of which must read ``verdict``."""
    rows = d.loc[d.method.isin(methods)]
    assert len(rows) == len(methods) and (rows.verdict == verdict).all(), rows[["method", "verdict"]]
    return rows["x_vs_curve"].tolist()


def slower_in_readme(v: pd.DataFrame) -> float:
    """The README's MLP cells of the selectors with a warm-up, CREST, proxy selection and sparse training:
    every one `slower` (with or without `?`); the highest upper end of their intervals."""
    methods = ["grand", "glister", "craig", "el2n", "grand-ccs", "el2n-ccs", "lipt-grand", "lipt-glister",
               "lipt-grand-ccs", "crest", "proxy-selection", "rigl-itop", "a-rigl-itop"]
    cells = [cell for cells in v.loc[v.method.isin(methods), "fashion-mnist 60k mlp"]
             for cell in str(cells).split("; ") if cell != "-"]
    assert cells and all(re.search(r"\bslower\??\s", c) for c in cells), cells
    return max(float(m.group(1)) for c in cells if (m := re.search(r"(?:<=|, )([\d.]+)(?:x|\])", c)))


def slowers(judged: pd.DataFrame) -> str:
    """A column's `slower` cells as its prose counts them: ``2 `slower```, ``1 `slower?``` (not surviving
    Holm's correction), or ``3 `slower` (1 `slower?`)``."""
    slower = judged[judged.verdict == "slower"]
    close = int((slower.holm == "close").sum())
    if close in (0, len(slower)):
        return f"{len(slower)} `slower{'?' if close else ''}`"
    return f"{len(slower)} `slower` ({close} `slower?`)"


def column_words(d: pd.DataFrame) -> tuple:
    """A frontier column with no cell `faster` or `equivalent` yet, every cell judged on two or more seeds:
    each `slower`, `below curve` or `inconclusive`, an `inconclusive` cell's interval printed or too wide
    to, a `below curve` cell's bound printed or not (``shown``); its seeds (``3``, or ``3 to 4`` while
    more seeds reach only the undecided cells), how many cells, its `slower` cells (``slowers``),
    how many `below curve` and how many of those print their bound, how many `inconclusive` cells print
    their interval, and the inconclusive cells' geometric mean ratio to the curve, each with its point:
    ``from 0.89x (`label-smoothing`) to 1.09x (`infobatch`)``, or the one cell's alone."""
    from raypkg.bench.verdicts import shown

    judged = d[d.n > 0]
    kinds = pd.Series([shown(row).kind for row in judged.to_dict("records")], index=judged.index)
    assert len(judged) and judged.verdict.isin(["slower", "below curve", "inconclusive"]).all(), judged
    assert judged.n.min() >= 2, judged
    assert kinds[judged.verdict == "inconclusive"].isin(["wide", "interval"]).all(), judged
    assert kinds[judged.verdict == "below curve"].isin(["wide", "at most"]).all(), judged
    said = judged[judged.verdict == "inconclusive"]
    low, high = (said.loc[i] for i in (said.x_vs_curve.idxmin(), said.x_vs_curve.idxmax()))

    def ratio(row) -> str:
        return f"{row.x_vs_curve:.2f}x (`{row.method} {row.setting}`)".replace(" -`", "`")

    span = ratio(low) if low.name == high.name else f"from {ratio(low)} to {ratio(high)}"
    fewest, most = int(judged.n.min()), int(judged.n.max())
    seeds = str(fewest) if fewest == most else f"{fewest} to {most}"
    below = judged.verdict == "below curve"
    return (seeds, len(judged), slowers(judged), int(below.sum()),
            int(kinds[below].eq("at most").sum()), int(kinds[judged.verdict == "inconclusive"].eq("interval").sum()),
            span)


def cifar10_column(s: pd.DataFrame) -> tuple:
    """The CIFAR-10 column's seeds, cells and `slower` cells (``column_words``), InfoBatch's ratio, seeds
    and word (its interval too wide to print), and how many `inconclusive` cells print their interval and
    `below curve` cells their bound."""
    from raypkg.bench.verdicts import shown

    seeds, cells, slower, _, bounded, intervals, _ = column_words(s)
    infobatch = s[s.method == "infobatch"].iloc[0]
    assert shown(infobatch.to_dict()).kind == "wide", infobatch
    return seeds, cells, slower, infobatch.x_vs_curve, int(infobatch.n), infobatch.verdict, intervals, bounded


P = Prose


PROSE = [
    # docs/results.md, the MLP on all of Fashion-MNIST (the two-slot run its bullets quote)
    P("mlp-packed-evaluation", RESULTS, "Seconds leave out test evaluation", (MLP_PACKED,),
      lambda d: (at(d, "full-fp32", "b=1", "epoch_eval_s"),
                 100 * at(d, "full-fp32", "b=1", "epoch_eval_s") / at(d, "full-fp32", "b=1", "e2e_s"),
                 at(d, "full-fp32", "b=1", "e2e_s")),
      "({:.2f} s of evaluations in a 10-epoch run, {:.0f}% of full training's {:.1f} s)"),
    P("mlp-alone-against-packed", RESULTS, "The same frontier timed alone", (TIME_ALONE,),
      lambda t: tuple(float(t.loc[(t.method == m) & (t.setting == s), c].iloc[0])
                      for m, s in [("infobatch", "-"), ("label-smoothing", "-"), ("ema", "-"),
                                   ("selective-backprop", "-"), ("layer-freezing", "-"), ("uniform", "f=0.3"),
                                   ("rigl-itop", "d=0.05")] for c in ("x_1", "x_2")),
      "InfoBatch ({:.2f}x alone against {:.2f}x packed), label smoothing ({:.2f}x against {:.2f}x), EMA ({:.2f}x"
      " against {:.2f}x), selective backprop ({:.2f}x against {:.2f}x), layer freezing ({:.2f}x against {:.2f}x),"
      " uniform at 30% ({:.2f}x against {:.2f}x) and RigL-ITOP ({:.2f}x against {:.2f}x)"),
    P("mlp-packed-crest-seconds", RESULTS, "CREST beats random per step, and loses in seconds", (MLP_PACKED_ROWS,),
      lambda d: (phases(d, "crest", "f=0.1", "selection_s", "check_s"), phases(d, "crest", "f=0.3", "selection_s", "check_s"),
                 at(d, "crest", "f=0.1", "e2e_s"), at(d, "crest", "f=0.3", "e2e_s")),
      "its selection and checks take {:.1f} s and {:.1f} s of its {:.1f} s and {:.1f} s"),
    P("mlp-packed-lipt-tax", RESULTS, "LiPT's tax is not lower here", (MLP_PACKED,),
      lambda d: (at(d, "lipt-grand", "f=0.3", "pretrain_s"), at(d, "grand", "f=0.3", "pretrain_s"),
                 at(d, "glister", "f=0.3", "pretrain_s")),
      "took {:.1f} s, against GraNd's three 5-epoch warm-ups' {:.1f} s and Glister's one warm-up's {:.1f} s"),
    # LeNet-5 on all of Fashion-MNIST
    P("lenet5-bf16", RESULTS, "trains LeNet-5 in bf16 with channels_last here", (LENET,),
      lambda d: at(d, "full", "b=1", "speedup_vs_full"), "({:.1f}x fp32's seconds)"),
    P("lenet5-neighbour", RESULTS, "trains LeNet-5 in bf16 with channels_last here", (LENET_ROWS,),
      lambda d: (100 * ((b := sum(seeds(d, "full-fp32", "b=1")[:2]) / 2) / (c := seeds(d, "full-fp32", "b=1")[2]) - 1),
                 b, c),
      "made full-fp32 {:.0f}% slower ({:.0f} s in seeds 0 and 1 against {:.0f} s in seed 2)"),
    P("lenet5-lipt-tax", RESULTS, "ten sparse shard models", (LENET,),
      lambda d: (at(d, "lipt-grand", "f=0.3", "pretrain_s"), at(d, "grand", "f=0.3", "pretrain_s"),
                 at(d, "glister", "f=0.3", "pretrain_s")),
      "{:.0f} s on one core, against GraNd's three warm-ups' {:.0f} s and Glister's one warm-up's {:.0f} s"),
    # ResNet-20 on 2,000 images of Fashion-MNIST
    P("resnet20-fm-fp32-seconds", RESULTS, "The three seeds ran side by side", (RESNET_FM_ROWS,),
      lambda d: span(seeds(d, "full-fp32", "b=1")) + span(seeds(d, "full-fp32", "b=0.7")),
      "full training at fp32 took {:.0f}-{:.0f} s at budget 1 and {:.0f}-{:.0f} s at budget 0.7"),
    P("resnet20-fm-crest-seconds", RESULTS, "CREST matches random per step on ResNet-20", (RESNET_FM_ROWS,),
      lambda d: (phases(d, "crest", "f=0.1", "selection_s", "check_s"), phases(d, "crest", "f=0.3", "selection_s", "check_s"),
                 at(d, "crest", "f=0.1", "e2e_s"), at(d, "crest", "f=0.3", "e2e_s")),
      "its selection and checks took {:.0f} s and {:.0f} s of its {:.0f} s and {:.0f} s"),
    P("resnet20-fm-lipt-tax", RESULTS, "LiPT's selections are as good as DeepCore's", (RESNET_FM_ROWS,),
      lambda d: (phases(d, "lipt-grand", "f=0.3", "pretrain_s", "merge_s"), at(d, "grand", "f=0.3", "pretrain_s"),
                 at(d, "glister", "f=0.3", "pretrain_s")),
      "its four shard models and merge {:.0f} s against GraNd's two warm-ups' {:.0f} s and Glister's one's {:.0f} s"),
    # the best stack at 5,000 images (AVX2)
    P("resnet20-5k-stack", RESULTS, "Progressive resizing + label smoothing is `inconclusive` against the curve at the",
      (R5K,),
      lambda d: (at(d, "progressive-resizing+label-smoothing", "-", "e2e_s") / at(d, "full", "b=1", "e2e_s"),
                 at(d, "full", "b=1", "e2e_s") / at(d, "progressive-resizing+label-smoothing", "-", "e2e_s"),
                 at(d, "progressive-resizing+label-smoothing", "-", "speedup_vs_full"), at(d, "full", "b=0.5"),
                 at(d, "full", "b=0.5", "e2e_s"), at(d, "progressive-resizing+label-smoothing", "-", "tta_s"),
                 at(d, "full", "b=0.5", "tta_s")),
      "in {:.2f}x full training's seconds ({:.2f}x faster; {:.2f}x against fp32), but with 5,000 images the linear"
      " curve is already at {:.3f} at half the budget ({:.0f} s) and 0.985 at 0.7, and every seed of the stack is"
      " above its target (the curve's best less half a point), so it is judged on its seconds alone. Its"
      " time-to-accuracy to 0.97 ({:.0f} s) equals the curve's ({:.1f} s at budget 0.5)"),
    P("resnet20-5k-stack-method-page", PR_PAGE, "At the preset's full 5,000 images", (R5K,),
      lambda d: (at(d, "progressive-resizing+label-smoothing", "-"), at(d, "progressive-resizing+label-smoothing", "-", "e2e_s"),
                 at(d, "full", "b=1", "e2e_s") / at(d, "progressive-resizing+label-smoothing", "-", "e2e_s")),
      "{:.3f} in {:.0f} s, {:.2f}x faster than full training"),
    # the same at 5,000 images on the avx512_bf16 CPU
    P("avx512-5k-bf16", RESULTS, "bf16 is the larger gain", (AVX512_5K,),
      lambda d: (at(d, "full", "b=1", "e2e_s"), at(d, "full-fp32", "b=1", "e2e_s"), at(d, "full", "b=1", "speedup_vs_full"),
                 at(d, "full", "b=1"), at(d, "full-fp32", "b=1"),
                 at(d, "full", "b=1", "e2e_s") / at(d, "progressive-resizing+label-smoothing", "-", "e2e_s"),
                 at(d, "progressive-resizing+label-smoothing", "-", "e2e_s"), at(d, "progressive-resizing+label-smoothing", "-"),
                 at(d, "progressive-resizing+label-smoothing", "-", "speedup_vs_full")),
      "full training at `auto` takes {:.1f} s against fp32's {:.1f} ({:.2f}x, the mean of the seeds' ratios), at {:.3f}"
      " against {:.3f}. The stack adds {:.2f}x on top of that ({:.1f} s, {:.3f}): {:.2f}x the 10-epoch fp32 run"),
    P("avx512-5k-curve", RESULTS, "Against the curve at the same execution it is `faster`, by little", (AVX512_5K,),
      lambda d: (at(d, "full", "b=0.5"), at(d, "full", "b=0.5", "e2e_s"),
                 at(d, "progressive-resizing+label-smoothing", "-", "tta_s")),
      "The bf16 curve is at {:.3f} by half the budget ({:.0f} s). Its time to 0.97 ({:.1f} s)"),
    P("avx512-5k-seeds", RESULTS, "The seconds moved between seeds on this shared VM", (AVX512_5K_ROWS,),
      lambda d: tuple(seeds(d, "full", "b=1")), "(`full` at b=1: {:.1f}, {:.1f} and {:.1f} s)"),
    # ResNet-20 on 2,000 images on the avx512_bf16 CPU, selection through a proxy (SVP)
    P("avx512-2k-svp-warm-ups", RESULTS, "SVP halves a selector's seconds", (AVX512_2K_ROWS,),
      lambda d: span(seeds(d, m, "f=0.3,svp=lenet5", "pretrain_s")[i] for m in ("grand", "glister") for i in range(3))
      + span(seeds(d, m, "f=0.3", "pretrain_s")[i] for m in ("grand", "glister") for i in range(3)),
      "LeNet-5's warm-up takes {:.1f}-{:.1f} s where ResNet-20's takes {:.1f}-{:.1f} s"),
    P("avx512-2k-svp-seconds", RESULTS, "SVP halves a selector's seconds", (AVX512_2K,),
      lambda d: (at(d, "grand", "f=0.3", "e2e_s"), at(d, "grand", "f=0.3,svp=lenet5", "e2e_s"),
                 at(d, "glister", "f=0.3", "e2e_s"), at(d, "glister", "f=0.3,svp=lenet5", "e2e_s")),
      "GraNd falls from {:.1f} to {:.1f} s and Glister from {:.1f} to {:.1f} s"),
    P("avx512-2k-svp-vs-curve", RESULTS, "SVP halves a selector's seconds", (AVX512_2K,),
      lambda d: (at(d, "grand", "f=0.3", "x_vs_curve"), at(d, "grand", "f=0.3", "x_high"),
                 *(at(d, m, s, "x_high") for m, s in (("glister", "f=0.3"), ("glister", "f=0.3,svp=lenet5"),
                                                       ("rs2", "f=0.3"), ("grand", "f=0.3,svp=lenet5")))),
      "`slower` than the curve ({:.2f}x, at most {:.2f}x where * (at most {:.2f}x, {:.2f}x, {:.2f}x and {:.2f}x)"),
    P("avx512-2k-lipt-svp", RESULTS, "The proxy cuts LiPT's pre-training", (LIPT_SVP,),
      lambda d: (at(d, "lipt-grand", "f=0.5", "pretrain_s"), at(d, "lipt-grand", "f=0.5,svp=lenet5", "pretrain_s"),
                 at(d, "lipt-grand", "f=0.5", "e2e_s"), at(d, "lipt-grand", "f=0.5,svp=lenet5", "e2e_s"),
                 at(d, "lipt-glister", "f=0.5", "e2e_s"), at(d, "lipt-glister", "f=0.5,svp=lenet5", "e2e_s"),
                 at(d, "full", "b=0.5"), at(d, "full", "b=0.5", "e2e_s")),
      "The proxy cuts LiPT's pre-training from {:.1f} to {:.1f} s and its end-to-end seconds by a third ({:.1f} to"
      " {:.1f} s for GraNd, {:.1f} to {:.1f} s for Glister). * which reaches {:.3f} at half the budget in {:.1f} s"),
    # The ResNet-20 preset: every family on the avx512_bf16 CPU
    P("families-bf16", RESULTS, "Every family on ResNet-20 (batch norm", (FAMILIES,),
      lambda d: (at(d, "full", "b=1", "e2e_s"), at(d, "full-fp32", "b=1", "e2e_s"),
                 at(d, "full-fp32", "b=1", "e2e_s") / at(d, "full", "b=1", "e2e_s")),
      "full training takes {:.1f} s there against {:.1f} s at fp32 ({:.2f}x)"),
    P("families-infobatch", RESULTS, "InfoBatch is the one method `faster` than the curve", (FAMILIES, FAMILIES_ROWS),
      lambda d, r: (at(d, "infobatch", "-"), at(d, "infobatch", "-", "e2e_s"), at(d, "full", "b=1"),
                    at(d, "full", "b=1", "e2e_s"), *seeds(r, "full", "b=0.7")),
      "{:.3f} in {:.1f} s, where full training reaches {:.3f} in {:.1f} s; * (the same budget-0.7 run took {:.1f},"
      " {:.1f} and {:.1f} s over the seeds)"),
    P("families-selectors", RESULTS, "No selector with a warm-up is shown to pay", (FAMILIES,),
      lambda d: (*below_bounds(d, "f=0.3", ("grand", "craig"), ("glister", "lipt-grand", "lipt-glister")),
                 *span(selectors(d, "f=0.5", "inconclusive")), max(selectors(d, "f=0.5", "inconclusive", "x_high")),
                 at(d, "lipt-grand", "f=0.3", "pretrain_s"), at(d, "lipt-grand", "f=0.3", "merge_s"),
                 at(d, "glister", "f=0.3", "pretrain_s")),
      "at 0.3 each is `below curve` (its accuracy lies below the curve's first budget, 0.3: GraNd at most {:.2f}x,"
      " CRAIG {:.2f}x, the others' bounds over 10x wide), and at 0.5 each is `inconclusive` ({:.2f}-{:.2f}x, no "
      "interval above {:.2f}x) * ({:.1f} s of pre-training and {:.1f} s to merge, one after another in this process) "
      "cost more than DeepCore's one warm-up ({:.1f} s)"),
    P("families-crest", RESULTS, "CREST does not pay on a CPU ResNet-20", (FAMILIES,),
      lambda d: (*span(at(d, "crest", s, "selection_s") for s in ("f=0.3", "f=0.5")),
                 *span(at(d, "crest", s, "check_s") for s in ("f=0.3", "f=0.5")),
                 *span(phases(d, "crest", s, "selection_s", "check_s") / at(d, "crest", s, "train_s")
                       for s in ("f=0.3", "f=0.5")),
                 *span(at(d, "crest", s, "train_s") for s in ("f=0.3", "f=0.5"))),
      "its selections ({:.0f}-{:.0f} s) and loss checks ({:.0f}-{:.0f} s) take {:.1f}-{:.1f}x its subset training"
      " ({:.1f}-{:.1f} s)"),
    P("families-crest-method-page", CREST_PAGE, "On ResNet-20 CREST is `slower` still", (FAMILIES,),
      lambda d: (*(at(d, "crest", s, c) for c in ("selection_s", "check_s") for s in ("f=0.3", "f=0.5")),
                 *span(phases(d, "crest", s, "selection_s", "check_s") / at(d, "crest", s, "train_s")
                       for s in ("f=0.3", "f=0.5")),
                 *(at(d, "crest", s, "train_s") for s in ("f=0.3", "f=0.5"))),
      "Its selections ({:.0f} s and {:.0f} s) and loss checks ({:.0f} s and {:.0f} s) take {:.1f}-{:.1f}x its subset"
      " training ({:.1f} s and {:.1f} s)"),
    P("families-rigl", RESULTS, "Sparse training at 5% density costs", (FAMILIES,),
      lambda d: (at(d, "rigl-itop", "d=0.05"), at(d, "rigl-itop", "d=0.05", "e2e_s")), "(RigL-ITOP {:.3f} in {:.1f} s"),
    # the MLP preset against the curve (digits-aug)
    P("digits-mlp-curve", RESULTS, "No method beats the budget curve.** One full epoch", (DIGITS_MLP,),
      lambda d: (at(d, "full", "b=0.1"), at(d, "full", "b=0.1", "e2e_s"), at(d, "full", "b=0.3"),
                 at(d, "full", "b=0.3", "e2e_s")),
      "(`b=0.1`: {:.3f} in {:.1f} s) * ({:.3f} in {:.1f} s)"),
    P("digits-mlp-slower", RESULTS, "No method beats the budget curve.** One full epoch", (DIGITS_MLP,),
      lambda d: (lambda x: (1 / x.max(), 1 / x.min(), x.min(), x.max()))(
          d.loc[(d.verdict == "slower") & (d.family != "sparse"), "x_vs_curve"]),
      "Every selector, InfoBatch and CREST is `slower`, {:.1f}-{:.0f}x (x_vs_curve {:.2f}-{:.2f})"),
    P("digits-mlp-rs2", RESULTS, "RS2 is the curve under another name", (DIGITS_MLP,),
      lambda d: (at(d, "rs2", "f=0.3"), at(d, "rs2", "f=0.3", "e2e_s"), *interval(d, "rs2", "f=0.3")),
      "f=0.3 reaches {:.3f} in {:.1f} s and is `inconclusive` against the curve ({:.2f}x [{:.2f}, {:.2f}], n=3)"),
    # docs/benchmarks.md: seeds until decided, and one slot against two
    P("until-decided-simulated", BENCHMARKS, "At the cells of the stored 5-seed", (R + "seeds-until-decided-simulated.parquet",),
      lambda d: (sim(d, "3 to 7, table", "doubted"), sim(d, "5 fixed", "doubted"), sim(d, "3 to 7, table", "shown"),
                 sim(d, "5 fixed", "shown"), short(d, "3 to 7, table"), short(d, "5 fixed"),
                 sim(d, "3 to 7, table", "inconclusive"), sim(d, "5 fixed", "inconclusive")),
      "3 to 7 seeds prints {:.1f} cell `?` on average against {:.1f} with 5 fixed seeds, {:.1f} `faster` or `slower` "
      "kept against {:.1f}, and {:.1f} cells short of the table's standard (`?` or `inconclusive`) against {:.1f}; it "
      "leaves more of them `inconclusive` ({:.1f} against {:.1f})"),
    P("until-decided-price", BENCHMARKS, "**Its price**, estimated", (R + "seeds-until-decided-simulated.parquet",),
      lambda d: (sim(d, "3 to 7, table", "est_s"), sim(d, "5 fixed", "est_s"),
                 sim(d, "3 to 7, table", "est_s") / sim(d, "5 fixed", "est_s"),
                 sim(d, "3 to 8, settled", "est_s"), sim(d, "3 to 8, settled", "est_s") / sim(d, "5 fixed", "est_s"),
                 sim(d, "3 to 7, settled", "est_s"), sim(d, "3 to 7, settled", "est_s") / sim(d, "5 fixed", "est_s"),
                 sim(d, "3 to 8, table", "est_s"), sim(d, "3 to 8, table", "est_s") / sim(d, "5 fixed", "est_s"),
                 sim(d, "3 to 8, table", "doubted"), sim(d, "3 to 6, table", "est_s"),
                 sim(d, "3 to 6, table", "est_s") / sim(d, "5 fixed", "est_s"), sim(d, "3 to 6, table", "shown")),
      "{:,.0f} s against {:,.0f} s for 5 fixed seeds ({:.2f}x). * so 3 to 8 seeds cost {:,.0f} s ({:.2f}x) and 3 to 7 "
      "{:,.0f} s ({:.2f}x); with futility, 3 to 8 cost {:,.0f} s ({:.2f}x) for {:.1f} `?`, and 3 to 6 {:,.0f} s ({:.2f}x) but "
      "show fewer cells ({:.1f}) than 5 fixed seeds."),
    P("until-decided-other-data", BENCHMARKS, "**On other data**", (R + "seeds-until-decided-simulated.parquet",),
      lambda d: (sim(d, "3 to 7, table", "doubted", LENET5), sim(d, "5 fixed", "doubted", LENET5),
                 short(d, "3 to 7, table", LENET5), short(d, "5 fixed", LENET5),
                 sim(d, "3 to 7, table", "est_e2e_s", LENET5), sim(d, "5 fixed", "est_e2e_s", LENET5),
                 sim(d, "3 to 7, table", "est_e2e_s", LENET5) / sim(d, "5 fixed", "est_e2e_s", LENET5),
                 sim(d, "3 to 7, table", "est_e2e_s") / sim(d, "5 fixed", "est_e2e_s"),
                 sim(d, "3 to 7, table", "doubted", RESNET_2K), sim(d, "5 fixed", "doubted", RESNET_2K),
                 sim(d, "3 to 7, table", "est_e2e_s", RESNET_2K) / sim(d, "5 fixed", "est_e2e_s", RESNET_2K)),
      "3 to 7 seeds prints {:.1f} cells `?` against {:.1f}, and {:.1f} short of the table's standard against {:.1f}, at "
      "{:,.0f} s against {:,.0f} s ({:.2f}x); on the MLP {:.2f}x. * it prints {:.1f} `?` against {:.1f} but costs {:.2f}x"),
    # CIFAR-10 (docs/results.md): the seeds every point has
    *first_seeds(
        CIFAR10_SEEDS,
        P("cifar10-crest-10", RESULTS, "**CREST, 3 seeds, timed alone.**", (CIFAR10_ROWS,),
          lambda d: (at(d, "crest", "f=0.1"), at(d, "rs2", "f=0.1"), at(d, "uniform", "f=0.1"),
                     *(at(d, "crest", "f=0.1", c) for c in ("e2e_s", "selection_s", "check_s", "train_s"))),
          "CREST at 10% of the steps reached {:.3f} against RS2's {:.3f} and a fixed uniform subset's {:.3f}; of its "
          "{:,.0f} s, {:.0f} s were its selection and {:.0f} s its checks of the quadratic model, against {:.0f} s of training"),
        P("cifar10-crest-30", RESULTS, "**CREST, 3 seeds, timed alone.**", (CIFAR10_ROWS,),
          lambda d: (at(d, "crest", "f=0.3"), at(d, "rs2", "f=0.3"), at(d, "uniform", "f=0.3"),
                     *(at(d, "crest", "f=0.3", c) for c in ("selection_s", "check_s", "train_s"))),
          "At 30% of the steps it reached {:.3f} against RS2's {:.3f} and uniform's {:.3f}, its selection {:,.0f} s and its "
          "checks {:.0f} s against {:.0f} s of training"),
        P("cifar10-set-machines", RESULTS, "Seed 0's full training reached", (CIFAR10_ROWS, CIFAR10_SET),
          set_seeds_elsewhere, "there full training at fp32 reached {:.4f} and {:.4f} at seeds 1 and 2, where the capped "
          "EPYC's reached {:.4f} and {:.4f}"),
        P("cifar10-set-itop", RESULTS, "Seed 0's full training reached", (CIFAR10_ROWS, CIFAR10_SET),
          set_beside_rigl,
          "Over {} seeds, SET-ITOP and RigL-ITOP land {:.1f} points apart at 5% density, {:.0f}-{:.0f} points below "
          "dense; AGC moves either by at most {:.1f} points at 5 epochs")),
    # CIFAR-10 (docs/results.md, docs/benchmarks.md): seed 0
    *seed_zero(
        P("cifar10-full", RESULTS, "the preset's stated accuracy; one", (CIFAR10_ROWS,),
          lambda d: (at(d, "full", "b=1"), at(d, "full-fp32", "b=1")), "Full training reaches {:.3f} in 5 epochs** (fp32 {:.3f})"),
        P("cifar10-selection-seed0", RESULTS, "**Selection at 10%, seed 0**", (CIFAR10_ROWS,),
          lambda d: tuple(at(d, m, "f=0.1") for m in ("glister", "craig", "grand", "lipt-grand", "uniform", "rs2",
                                                       "lipt-glister")),
          "Glister reaches {:.3f}, CRAIG {:.3f}, GraNd {:.3f} and LiPT-GraNd {:.3f}, against a fixed uniform subset's "
          "{:.3f} and RS2's {:.3f} * LiPT-Glister reaches {:.3f}."),
        P("cifar10-speed-ups", RESULTS, "**The speed-up methods, seed 0**", (CIFAR10_ROWS,),
          lambda d: (*(at(d, m, "-", c) for m in ("progressive-resizing", "layer-freezing", "selective-backprop",
                                                  "label-smoothing", "ema") for c in ("test_acc", "e2e_s", "x_vs_curve")),
                     at(d, "full", "b=1"), at(d, "full", "b=1", "e2e_s"),
                     *(at(d, "proxy-selection", "-", c) for c in ("test_acc", "e2e_s", "x_vs_curve"))),
          "progressive resizing reaches {:.3f} in {:,.0f} s ({:.2f}x the curve's speed), layer freezing {:.3f} in {:,.0f} s "
          "({:.2f}x), selective backprop {:.3f} in {:,.0f} s ({:.2f}x), label smoothing {:.3f} in {:,.0f} s ({:.2f}x) and "
          "EMA {:.3f} in {:,.0f} s ({:.2f}x), against full training's {:.3f} in {:,.0f} s; proxy selection reaches {:.3f} "
          "in {:,.0f} s ({:.2f}x)."),
        P("cifar10-ran-twice", RESULTS, "GraNd and LiPT-GraNd at 30% ran twice", (CIFAR10_ROWS,), ran_twice,
          "then again, to the same accuracies ({:.4f} and {:.4f}:"),
        P("cifar10-set-full", RESULTS, "Seed 0's full training reached", (CIFAR10_ROWS, CIFAR10_SET),
          set_full_beside_main, "Seed 0's full training reached {} accuracies at 181e9bc as at 2b57617 ({:.4f} at `auto`, "
          "{:.4f} at fp32): the same seed gives the same run across the two commits."),
        P("cifar10-column-clocks", RESULTS, "CIFAR-10 (ResNet-20 on all 50,000 images", (CIFAR10_ROWS, CIFAR10_SET),
          lambda d, s: (*timed_alone_counts(d), at(d, "full", "b=1", "e2e_s"), at(s, "full", "b=1", "e2e_s")),
          "Seed 0 has {} of the budget curve's {} points and {} of the {} methods' rows timed alone (full training's 5 "
          "epochs: {:,.0f} s alone, {:,.0f} s packed beside one point in SET-ITOP's store)"),
        P("cifar10-curve", RESULTS, "**The budget curve, seed 0**", (CIFAR10_ROWS,), cifar10_curve,
          "1, 2, 3, 4 and 5 epochs reach {:.3f}, {:.3f}, {:.3f}, {:.3f} and {:.3f} at `auto` (fp32 with channels_last here), "
          "{:.3f}, {:.3f}, {:.3f}, {:.3f} and {:.3f} at fp32. By accuracy alone, every point at 10% stays {} one epoch of "
          "full training, and every subset's and sparse point, 30% ones too, {} two; InfoBatch (all the data, pruned as "
          "it trains) reaches {:.3f}, between {} and {} epochs."),
        P("cifar10-cost-clocks", BENCHMARKS, "One clock: every point of seed 0", (CIFAR10_ROWS,),
          lambda d: (sum(timed_alone_counts(d)[0::2]), len(d), *timed_alone_counts(d)[:3], methods_timed_alone(d),
                     at(d, "full", "b=1", "e2e_s"), at(d, "full-fp32", "b=1", "e2e_s")),
          "Timed alone: {} of the {} points, {} of the budget curve's {} and {} methods' rows ({}); full "
          "training's 5 epochs took {:,.0f} s at `auto` and {:,.0f} s at fp32."),
        P("cifar10-capped-avx2", RESULTS, "**Capped to AVX2, that machine", (CIFAR10_CAPPED, CIFAR10_ROWS),
          capped_against_avx2, "to the last digit ({:.4f}, {:.4f}, {:.4f}, {:.4f} at the end). Their seconds are "
          "{:.2f}-{:.2f}x the AVX2 CPU's.")),
    P("cifar10-column-seeds", RESULTS, "CIFAR-10 (ResNet-20 on all 50,000 images", (CIFAR10,), cifar10_column,
      "has {} seeds in each of its {} cells, * Its words so far: {}, a point below the curve's first "
      "epoch `below curve` (its ratio a bound), the rest `inconclusive`; InfoBatch's geometric mean is {:.2f}x the curve's "
      "speed over its {} seeds, `{}`, its interval too wide to print * {} `inconclusive` cells print their "
      "interval * {} `below curve` cells print their bound"),
    P("p-of-the-interval", BENCHMARKS, "**Its p is the interval's own.**", (MLP_ALONE,),
      lambda m: (len(m[m.verdict == "slower"]), int((m[m.verdict == "slower"].holm == "close").sum())),
      "Judged again (`judge-again.sh`), {1} of the {0} keep it"),
    P("until-decided-wall", BENCHMARKS, "No `?`, but not less time", (UNTIL_DECIDED,),
      lambda d: (run(d, "until decided", "wall_s"), run(d, "fixed", "wall_s"),
                 run(d, "until decided", "wall_s") / run(d, "fixed", "wall_s"), int(run(d, "until decided", "points")),
                 int(run(d, "fixed", "points")), int(run(d, "fixed", "doubted")), int(run(d, "until decided", "decided")),
                 int(run(d, "until decided", "cells")), int(run(d, "fixed", "decided")),
                 int(run(d, "until decided", "slower") - run(d, "until decided", "doubted")),
                 int(run(d, "fixed", "slower") - run(d, "fixed", "doubted"))),
      "Seeds until decided took {:,.0f} s against {:,.0f} s for 5 fixed seeds ({:.2f}x: the same, where two timings of "
      "one point alone differ by up to 16%), {} point runs against {}. It leaves no cell `?` (5 fixed seeds: {}), but "
      "decides {} of the {} cells against {}, and shows {} `slower` past Holm's correction against {}."),
    P("until-decided-added-seeds", BENCHMARKS, "**Where the seeds went**", (UNTIL_ROWS,),
      lambda r: (r.loc[(r.seed >= 3) & (r.method == "full-fp32"), "e2e_s"].sum(),
                 r.loc[(r.seed >= 3) & ((r.method == "full-fp32") | r.budget.isna()), "e2e_s"].sum(),
                 int(((r.seed >= 3) & r.budget.isna()).sum())),
      "one execution on this CPU): {:.0f} s of the {:.0f} s the four added seeds trained, beside {} point runs of their "
      "cells."),
    P("until-decided-k5", BENCHMARKS, "**Less time, more `?`.**", (R + "seeds-until-decided-k5.parquet",),
      lambda d: (run(d, "until decided", "wall_s"), run(d, "fixed", "wall_s"),
                 run(d, "until decided", "wall_s") / run(d, "fixed", "wall_s"), int(run(d, "until decided", "points")),
                 int(run(d, "fixed", "points")), int(run(d, "until decided", "doubted")), int(run(d, "fixed", "doubted")),
                 int(run(d, "until decided", "decided") - run(d, "until decided", "doubted")),
                 int(run(d, "fixed", "decided") - run(d, "fixed", "doubted"))),
      "Up to 5 seeds took {:,.0f} s against {:,.0f} s for 5 fixed seeds ({:.2f}x), {} point runs against {}. But it "
      "leaves {} cells `?` against {}, and settles {} cells at the table's standard against {}"),
    P("until-decided-replay", BENCHMARKS, "**Replayed** (`until_decided.replay`",
      (R + "seeds-until-decided-replay-summary.parquet",),
      lambda d: (replayed(d, "3 to 5", "est_s / 5 fixed"), *(replayed(d, "3 to 5", f"doubted {s}") for s in STATS),
                 replayed(d, "5 fixed", "doubted mean"), *(replayed(d, "3 to 5", f"settled {s}") for s in STATS),
                 replayed(d, "5 fixed", "settled mean"), replayed(d, "2 to 5", "est_s / 5 fixed"),
                 replayed(d, "2 to 5", "doubted mean"), replayed(d, "3 to 4", "est_s / 5 fixed"),
                 replayed(d, "3 to 4", "doubted mean")),
      "up to 5 costs {:.2f}x, leaves {:.1f} cells `?` ({:.0f} to {:.0f}) against {:.0f} and settles {:.1f} ({:.0f} to "
      "{:.0f}) against {:.0f}; starting at 2 seeds costs {:.2f}x for {:.1f} `?`, stopping at 4 {:.2f}x for {:.1f}."),
    P("slots-full-training", BENCHMARKS, "Two slots took 30 min 19 s, one slot 38 min 53 s", (MLP_PACKED, MLP_1SLOT),
      lambda two, one: (at(two, "full-fp32", "b=1", "e2e_s"), at(one, "full-fp32", "b=1", "e2e_s")),
      "full training at fp32: {:.1f} s against {:.1f} s)"),
    # README: the verdicts' summary
    P("readme-faster-and-full", README, "No method is faster than the curve", (MLP_ALONE,),
      lambda m: (*span(verdict_cells(m, SPEEDUPS, "inconclusive")), *interval(m, "full", "b=1")),
      "`inconclusive` once the curve between its budgets is allowed for ({:.2f}-{:.2f}x), and so is full training at "
      "the whole budget ({:.2f}x [{:.2f}, {:.2f}])"),
    P("readme-selectors", README, "Selection with a warm-up (DeepCore, LiPT), CREST", (VERDICTS,),
      slower_in_readme, "every one of their cells is `slower` or `slower?` (at most {:.2f}x)"),
    P("readme-cifar10", README, "CIFAR-10 has", (CIFAR10,), column_words,
      "{} seeds** in each of its {} cells so far, timed alone: {}, {} `below curve` ({} with a "
      "bound), the rest `inconclusive`, {} with an interval (geometric means {})"),
]
# `*` in a text stands for any words between two quoted parts of one paragraph.


def blocks(text: str) -> list[str]:
    """A page's paragraphs and list items, each on one line; tables and fenced code left out."""
    found, current, fenced = [], [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        starts = not line.strip() or line.lstrip().startswith(("- ", "* ")) or line.startswith(("|", "<!--", "#"))
        if fenced or starts:
            found.append(" ".join(current))
            current = []
        if not fenced and line.strip() and not line.startswith(("|", "<!--", "#")):
            current.append(line.strip())
    found.append(" ".join(current))
    return [re.sub(r"\s+", " ", b) for b in found if b]


def paragraph(prose: Prose) -> str:
    found = [b for b in blocks((REPO / prose.page).read_text()) if prose.near in b]
    assert len(found) == 1, f"{prose.label}: {len(found)} paragraphs of {prose.page} hold {prose.near!r}"
    return found[0]


def reads(prose: Prose, frames) -> list[str]:
    """The words the numbers read as: the text with its values, split at each `*`."""
    return [part.strip() for part in quoted(prose, frames).split(" * ")]


def test_the_registry_is_whole():
    assert len({p.label for p in PROSE}) == len(PROSE)
    assert all((REPO / path).is_file() for p in PROSE for path in p.paths)


@pytest.mark.parametrize("prose", PROSE, ids=[p.label for p in PROSE])
def test_the_prose_quotes_what_its_stored_tables_give(prose):
    text = paragraph(prose)
    for part in reads(prose, [stored(path) for path in prose.paths]):
        assert part in text, f"{prose.label}: {prose.page} does not read {part!r} where it says {prose.near!r}"


def test_a_stored_table_measured_again_fails_its_prose():
    prose = next(p for p in PROSE if p.label == "avx512-2k-svp-seconds")
    text = paragraph(prose)
    assert all(part in text for part in reads(prose, [stored(AVX512_2K)]))
    again = stored(AVX512_2K).assign(e2e_s=stored(AVX512_2K).e2e_s * 1.1)  # a copy: the cached frame is unchanged
    assert not all(part in text for part in reads(prose, [again]))
