"""What a frontier judges: its stored rows against the budget curve, seed by seed, then
over seeds with the statistics of ``raypkg.bench.curve`` (no runs here).

**The clock.** A row's ``e2e_s`` is what the method costs: its phases pretrain, merge,
selection, check and train, cached work charged its original seconds. Test-set evaluation
is no method's cost (MLPerf evaluates after the clock stops, AlgoPerf pauses it): the
evaluation after each epoch (``epoch_eval_s``) is taken out of ``train_s`` and the final one
(``eval_s``) is left out; work a method needs to steer itself (CREST's checks, InfoBatch's
scores, any selection) stays in. A row also records its conditions: the torch threads it
had, its node, ``beside``, how many other points ran beside it on its node on average over
its run, and ``timed``: ``alone`` (one slot, or once more by ``--time-alone``) or ``packed``
(for rows stored without it: ``alone`` where nothing of the frontier ran beside it).
A point's summary is ``timed`` alone only where every seed's run was.

A row whose seconds fail a check (``unsound``: a phase below 0 s, an estimated
evaluation that outweighs what it leaves, or a clock other than its seed's curve's) is
named and not judged. Each seed is one clock, its own curve's (``off_its_seeds_clock``):
seeds may run on different machines, never one seed's points.

**The ratio and the verdict.** A point's ``x_vs_curve`` per seed is the seconds the curve
(at the point's own execution) needs to reach its accuracy, capped at the seed's target
below the curve's plateau (``curve_target``), over the point's own seconds, the curve's
seconds interpolated between its measured budgets; ``x_vs_curve_lo`` and ``x_vs_curve_hi``
bracket it with what the measured budgets alone allow (the last one below the accuracy, the
first at or above it). Over the seeds the summary gives the geometric means of the three,
the 95% t-interval of the low ends and that of the high ends widened into one (``x_low``
from the low ends, ``x_high`` from the high ends), the two-sided ``p_value`` and ``n``;
``verdict`` is ``faster``, ``slower``, ``equivalent``, ``below curve`` or ``inconclusive``,
each read off that interval, so that a word holds at both ends of the bracket
(``raypkg.bench.curve.judge``). ``holm``: for a ``faster`` or ``slower`` cell, whether it
survives Holm's correction over every cell of the table that was tested (``tested``), else
``close``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from raypkg.bench.curve import add_curves, holm, judge, olympic_mean, pareto_front
from raypkg.bench.frontier.points import REFERENCE
from raypkg.bench.harness import compare, selection_agreement
from raypkg.tracking.tta import charged_time_to_accuracy, time_to_accuracy

CLOCKED = ("pretrain", "merge", "selection", "check", "train")  # e2e_s: their sum
PHASES = (*CLOCKED, "eval", "epoch_eval")  # every phase a row records (<phase>_s)
TABLE_COLUMNS = ["family", "method", "setting", "seeds", *[f"{p}_s" for p in PHASES], "e2e_s", "e2e_s_std",
                 "test_acc", "test_acc_std", "tta_s", "tta_with_eval_s", "tta_s_olympic", "tta_reached", "flops",
                 "speedup_vs_full", "acc_vs_full", "curve_target", "x_vs_curve", "x_vs_curve_lo", "x_vs_curve_hi",
                 "n", "x_low", "x_high", "p_value", "verdict", "holm", "x_vs_fp32_curve", "tta_vs_curve", "gain",
                 "speedup_vs_rs2", "acc_vs_rs2", "noisy_share", "spearman", "overlap", "beside", "timed", "pareto",
                 "pareto_flops", "plugin"]
SPARSE_GAIN = 1.1  # a sparse point's wall-clock gain under this is "FLOPs only"
TTA_BELOW_FULL = 0.005  # the default time-to-accuracy target: full training's final accuracy minus 0.5 points


def is_reference(frame):
    """The rows of full training at fp32, the whole budget and every method's schedule (its
    setting ``b=1``, or ``-`` in rows without a budget)."""
    budget = frame["budget"] if "budget" in frame else pd.Series(1.0, index=frame.index)
    setting = frame["setting"] if "setting" in frame else pd.Series("b=1", index=frame.index)
    return (frame["method"] == REFERENCE) & budget.fillna(1.0).eq(1.0) & setting.isin(["b=1", "-"])


def add_deltas(frame):
    """``frame`` (a row per point and seed) with the ratios against full training and
    against RS2 at the same fraction, within each seed (NaN without a reference)."""
    frame = compare(frame, is_reference(frame), ["seed"], "speedup_vs_full", "acc_vs_full")
    return compare(frame, frame["method"] == "rs2", ["seed", "fraction"], "speedup_vs_rs2", "acc_vs_rs2",
                   rows=frame["fraction"].notna())


def aggregate(frame, looks: int = 1):
    """A row per point: the mean over seeds of every number (of a ratio against the curve,
    the geometric mean), the standard deviation (``_std``, 0 for one seed) of e2e_s,
    test_acc and flops, the range (``_min``, ``_max``) of e2e_s and flops, ``seeds``, the
    verdicts (``add_verdicts``, at ``looks``), the two Pareto fronts and, where rows record
    one, each point's ``plugin`` source (``plugin_sources``)."""
    keys = ["family", "method", "setting"]
    numbers = [c for c in frame.columns if c not in keys and c != "seed" and frame[c].dtype.kind in "fi"]
    groups = frame.groupby(keys, sort=False)
    table = groups[numbers].mean().reset_index()
    for column in ("e2e_s", "test_acc", "flops"):
        table[f"{column}_std"] = groups[column].std(ddof=1).fillna(0.0).to_numpy()
    for column in ("e2e_s", "flops"):
        table[f"{column}_min"] = groups[column].min().to_numpy()
        table[f"{column}_max"] = groups[column].max().to_numpy()
    table.insert(3, "seeds", groups.size().to_numpy())
    if "tta_s" in frame:
        table["tta_reached"] = groups["tta_s"].count().to_numpy()
    for column in ("e2e_s", "tta_s", "tta_with_eval_s"):
        if column in frame:
            table[f"{column}_olympic"] = groups[column].agg(olympic_mean).to_numpy()
    for ratio in ("x_vs_curve", "x_vs_curve_lo", "x_vs_curve_hi", "x_vs_fp32_curve", "tta_vs_curve"):
        # ratios average as their logs do
        if ratio in frame:
            table[ratio] = groups[ratio].agg(geometric_mean).to_numpy()
    if "timed" in frame:
        table["timed"] = groups["timed"].agg(lambda timed: "alone" if timed.eq("alone").all() else "packed").to_numpy()
    if "plugin" in frame:  # a plug-in method's NAME@DIGEST (its rows' one value; None for effray's own)
        table["plugin"] = groups["plugin"].agg(plugin_sources).to_numpy()
    if "x_vs_curve" in frame:
        add_verdicts(table, groups, looks)
    for flag, cost in (("pareto", "e2e_s"), ("pareto_flops", "flops")):
        front = set(pareto_front(table[cost].tolist(), table["test_acc"].tolist()))
        table[flag] = [i in front for i in range(len(table))]
    table["gain"] = flops_only(table)
    return table


def plugin_sources(values) -> str | None:
    """A point's ``plugin`` over its seeds' rows: the plug-in sources they record
    (``NAME@DIGEST``, ``raypkg.bench.frontier.points.plugin_code``), each once, joined by
    ``,`` (one, as a store holds no stale rows); None for a point of effray's own methods."""
    return ",".join(dict.fromkeys(v for v in values if isinstance(v, str) and v)) or None


def flops_only(table) -> np.ndarray:
    """``FLOPs only`` for a sparse point (its family names sparse) whose wall-clock gain, full
    training's seconds at the same execution and whole budget over its own, is under
    ``SPARSE_GAIN``: it saves FLOPs, not time; else empty."""
    full = table.loc[(table["method"] == "full") & (table["setting"] == "b=1"), "e2e_s"]
    gain = full.iloc[0] / table["e2e_s"] if len(full) else pd.Series(math.nan, index=table.index)
    return np.where(table["family"].str.contains("sparse") & (gain < SPARSE_GAIN), "FLOPs only", "")


def add_svp_agreement(done: list[tuple[dict, dict]]) -> None:
    """Each SVP row's ``spearman`` and ``overlap`` against the same point of its seed scored
    by the model itself (``selection_agreement``); NaN on the other rows."""
    tables = {(row["seed"], row["method"], row["setting"]): summary.get("tables", {}) for row, summary in done}
    for row, _ in done:
        own = tables.get((row["seed"], row["method"], row["setting"].split(",svp=")[0]))
        row.update(selection_agreement(tables[row["seed"], row["method"], row["setting"]], own) if ",svp=" in row["setting"]
                   and own is not None else {"spearman": math.nan, "overlap": math.nan})


def add_tta(done: list[tuple[dict, dict]], target_acc: float | None) -> None:
    """Each row's ``tta_s`` (NaN: never reached) and ``tta_target``: ``target_acc`` (the
    preset's, or --target-acc), else its seed's full training's final accuracy minus
    ``TTA_BELOW_FULL`` (full-fp32 at budget 1; NaN while that point is not stored)."""
    rows = pd.DataFrame([row for row, _ in done])
    full = dict(zip(rows.loc[is_reference(rows), "seed"], rows.loc[is_reference(rows), "test_acc"]))
    for row, summary in done:
        target = target_acc if target_acc is not None else full.get(row["seed"], math.nan) - TTA_BELOW_FULL
        tta = charged_time_to_accuracy(summary, target)
        evaluations = time_to_accuracy(summary["rows"], summary["started_at"], target)["tta_eval_s"]
        row["tta_s"], row["tta_target"] = math.nan if tta is None else tta, target
        row["tta_with_eval_s"] = math.nan if tta is None else tta + evaluations  # MLPerf's clock


def geometric_mean(values) -> float:
    """exp of the mean log of the values (NaNs left out; inf stays inf)."""
    kept = [v for v in values if not math.isnan(v)]
    return math.exp(sum(math.log(max(v, 1e-300)) for v in kept) / len(kept)) if kept else math.nan


def add_verdicts(table, groups, looks: int = 1) -> None:
    """``table`` (a row per point of ``groups``) with each point judged over its seeds
    (``raypkg.bench.curve.judge``, at ``looks``): ``verdict``, ``n`` (its seeds), the geometric
    mean ``x_vs_curve``, its interval ``x_low``, ``x_high`` at ``level`` (95%, or less spent a
    look where seeds are added until decided), widened by the seeds' brackets where the rows
    have them (``x_low`` from the low ends x_vs_curve_lo, ``x_high`` from the high ends
    x_vs_curve_hi), and ``p_value``. ``tested``: the cells with a
    p-value; ``holm``: ``survives`` or ``close`` for a faster or slower cell under Holm's
    correction over them."""
    said = [judge(list(rows["x_vs_curve"]), list(rows["below_curve"].eq(True)), looks,
                  (list(rows["x_vs_curve_lo"]), list(rows["x_vs_curve_hi"])) if "x_vs_curve_lo" in rows else None)
            for _, rows in groups]
    for column, field in (("verdict", "verdict"), ("n", "n"), ("x_vs_curve", "ratio"), ("x_low", "low"),
                          ("x_high", "high"), ("p_value", "p"), ("level", "level")):
        table[column] = [getattr(j, field) for j in said]
    tested = [i for i, j in enumerate(said) if not math.isnan(j.p)]
    kept = dict(zip(tested, holm([said[i].p for i in tested])))
    table["tested"] = len(tested)
    table["holm"] = ["" if v not in ("faster", "slower") else "survives" if kept.get(i) else "close"
                     for i, v in enumerate(table["verdict"])]


def add_beside(frame, also_ran=None) -> pd.Series:
    """Per row, how many other point runs ran beside it on its node on average over its run:
    the summed overlap of the wall-clock spans (``started_at`` to ``ended_at``) of the other
    rows of its ``node``, and of the runs in ``also_ran`` (spans of runs that are not rows: a
    packed run that its alone rerun replaced), with its own, over its own span's length (NaN
    for rows stored without their span; every row on one node for rows stored without it)."""
    columns = ["started_at", "ended_at"] + (["node"] if "node" in frame else [])
    if not {"started_at", "ended_at"} <= set(frame.columns):
        return pd.Series(math.nan, index=frame.index)
    runs = frame[columns] if also_ran is None else pd.concat([frame[columns], also_ran.reindex(columns=columns)])
    start, end = frame["started_at"].to_numpy(float), frame["ended_at"].to_numpy(float)
    starts, ends = runs["started_at"].to_numpy(float), runs["ended_at"].to_numpy(float)
    overlap = np.clip(np.minimum(end[:, None], ends[None, :]) - np.maximum(start[:, None], starts[None, :]), 0, None)
    if "node" in frame:
        overlap = np.where(frame["node"].to_numpy()[:, None] == runs["node"].to_numpy()[None, :], overlap, 0.0)
    np.fill_diagonal(overlap, 0.0)  # a row's own run (the first len(frame) runs are the rows)
    return pd.Series(overlap.sum(axis=1) / np.maximum(end - start, 1e-9), index=frame.index)


ESTIMATED_SHARE = 0.5  # an estimated evaluation over this share of a row's raw training seconds: not judged


def fair_clock(frame, epochs: int | None = None, machine: str | None = None):
    """Stored rows on the clock above, each checked (``unsound``; against the ``machine`` their
    store's points are timed on, where it has one). Rows stored before
    ``epoch_eval_s`` was recorded (2026-11-28) held every epoch's evaluation in ``train_s`` and
    the final one in ``e2e_s``: their per-epoch evaluations are estimated as the final one's
    seconds times the epochs the point evaluated (``epochs`` of a method's training,
    round(budget x epochs) of a curve point: the same test set, model and precision), marked
    ``clock`` = ``estimated``."""
    frame = frame.copy()
    if "epoch_eval_s" not in frame or frame["epoch_eval_s"].isna().any():
        if epochs is None:
            raise ValueError("rows without epoch_eval_s need the frontier's --epochs to estimate it")
        evaluated = np.where(frame["budget"].notna(), (frame["budget"].fillna(1.0) * epochs).round(), epochs)
        estimate = frame["eval_s"] * evaluated
        missing = frame["epoch_eval_s"].isna() if "epoch_eval_s" in frame else pd.Series(True, index=frame.index)
        frame["epoch_eval_s"] = np.where(missing, estimate, frame.get("epoch_eval_s", estimate))
        frame["train_s"] = np.where(missing, frame["train_s"] - frame["epoch_eval_s"], frame["train_s"])
        frame["clock"] = np.where(missing, "estimated", frame.get("clock", "measured"))
    frame["e2e_s"] = frame[[f"{p}_s" for p in CLOCKED]].sum(axis=1)
    frame["unsound"] = [unsound(row, machine) for row in frame.to_dict("records")]
    return off_its_seeds_clock(frame)


RAY_NODE_ID = re.compile(r"[0-9a-f]{56}")  # a Ray node's id: a row's ``node`` that names no host


def clock_of(row: dict) -> str | None:
    """The clock a stored row names, or None: its ``machine``, else (rows stored before points
    recorded it) the host's name it ran on, its ``node`` where that is no Ray node's id."""
    if isinstance(row.get("machine"), str):
        return row["machine"]
    node = row.get("node")
    return f"host {node}" if isinstance(node, str) and node and not RAY_NODE_ID.fullmatch(node) else None


def off_its_seeds_clock(frame):
    """``frame`` with each sound row timed on another clock than its seed's budget curve marked
    ``unsound``: a seed's ratios are its points' seconds against its own curve's, so a seed is
    one clock (the one most of its curve's rows name), and seeds may each have their own. Rows
    that name no clock (``clock_of``) are not checked."""
    if "seed" not in frame or "budget" not in frame:
        return frame
    clocks = pd.Series([clock_of(row) for row in frame.to_dict("records")], index=frame.index)
    named = clocks.notna() & frame["budget"].notna()
    curve = clocks[named].groupby(frame.loc[named, "seed"]).agg(lambda c: c.mode().iloc[0])
    seeds_clock = frame["seed"].map(curve)
    off = frame["unsound"].eq("") & clocks.notna() & seeds_clock.notna() & clocks.ne(seeds_clock)
    frame.loc[off, "unsound"] = [f"timed on {clock}, its seed's curve on {curve_clock}: another clock"
                                 for clock, curve_clock in zip(clocks[off], seeds_clock[off])]
    return frame


def unsound(row: dict, machine: str | None = None) -> str:
    """Why a row's seconds cannot be judged, or "": timed on another machine than ``machine``
    (its store's: another clock), a phase below 0 s, no training or final
    evaluation seconds, or (``clock`` estimated) an estimated per-epoch evaluation over
    ``ESTIMATED_SHARE`` of the training seconds it was taken from. The final evaluation's
    seconds vary by tens of percent between the rows of one frontier, and the estimate is ten
    of them: past half, its error outweighs what is left (2026-11-28: rs2 f=0.1 on
    fashion-mnist:resnet20-2k kept -0.22 s of its 25.9 s)."""
    timed_on = row.get("machine")
    if machine and isinstance(timed_on, str) and timed_on != machine:
        return f"timed on {timed_on}, not on its store's machine ({machine}): another clock"
    negative = [f"{p}_s {row[f'{p}_s']:.3g} s" for p in PHASES if row.get(f"{p}_s", 0.0) < 0]
    if negative:
        return f"{', '.join(negative)} (below 0)"
    empty = [f"{p}_s" for p in ("train", "eval") if not row.get(f"{p}_s", 0.0) > 0]
    if empty:
        return f"no {' or '.join(empty)} recorded (0 s)"
    raw = row["train_s"] + row["epoch_eval_s"]
    if row.get("clock") == "estimated" and row["epoch_eval_s"] > ESTIMATED_SHARE * raw:
        return (f"its estimated evaluation ({row['epoch_eval_s']:.3g} s) is over {ESTIMATED_SHARE:.0%} of the "
                f"{raw:.3g} s it was taken from")
    return ""


# what judging adds to a row (and, stored by older code, x_vs_curve_bound and x_vs_fp32_curve_bound): a
# stored frontier judged again starts without them
JUDGED = ("speedup_vs_full", "acc_vs_full", "speedup_vs_rs2", "acc_vs_rs2", "below_curve", "curve_target", "x_vs_curve",
          "x_vs_curve_lo", "x_vs_curve_hi", "x_vs_fp32_curve", "tta_vs_curve", "beside", "x_vs_curve_bound", "x_vs_fp32_curve_bound")


def judge_rows(frame, chance: float, looks: int = 1, also_ran=None):
    """A frontier's rows (a row per point and seed, on the clock above) -> (every row, those
    ``unsound`` ones left unjudged, with its ratios against full training, RS2 and both curves;
    the summary, a row per point, from the sound rows, its verdicts at ``looks``). ``also_ran``:
    the spans of runs that are not rows, for ``add_beside``."""
    frame = frame.drop(columns=[c for c in JUDGED if c in frame])
    sound = frame["unsound"].eq("") if "unsound" in frame else pd.Series(True, index=frame.index)
    judged = add_curves(add_deltas(frame[sound]), chance=chance)
    judged["beside"] = add_beside(frame, also_ran).loc[sound].to_numpy()  # what ran beside it, judged or not
    derived = pd.Series(np.where(judged["beside"].eq(0), "alone", "packed"), index=judged.index)
    judged["timed"] = judged["timed"].fillna(derived) if "timed" in judged else derived  # rows stored without it
    table = aggregate(judged, looks)
    return pd.concat([judged, frame[~sound]], ignore_index=True), table
