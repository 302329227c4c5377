"""Seeds until decided (``--seeds N --max-seeds K``; the default of the Fashion-MNIST and
CIFAR-10 presets, ``points.PRESETS``' ``max_seeds``): after the first N seeds, a look at
the table after each seed, and one more seed for the cells it has not decided, until every
cell is decided or K seeds have run. Its rule, how N and K are settled, and the simulation
of its error, in one place (docs/benchmarks.md, "Seeds until decided").

**The rule** (``settled``): a cell stops only when it is decided at the standard the table
prints, the table a look would print if the frontier stopped there: its word decided
(``curve.DECIDED``, read off the bracketed interval at 1 - 5% / looks), and a ``faster`` or
``slower`` one kept by Holm's correction over every tested cell of the table (no ``?``:
``judge.add_verdicts``' ``holm``). A cell settled at one look and not at a later one (Holm's
cut moves with the other cells' p-values) gets seeds again: the last look's table is the
table printed.

**Futility** (``futile``): a cell stops too, ``inconclusive``, when no seed up to K would
decide it at face value: its interval, narrowed to K seeds at the spread it has (the half-width
times sqrt(n / K) and t's quantile at K - 1 degrees of freedom over n - 1's), would still hold
1 and stick out of the margin. Without it, one cell near the margin (RS2 at 30% of
``fashion-mnist:mlp``, 0.92x) runs itself and the whole curve to K seeds in nearly every
frontier. Stopping for futility never rejects, so it only lowers the error below.

**Why its error stays at 5%.** Each cell's ``p`` is Bonferroni's over its looks (times
K - N + 1), so under its null the smallest ``p`` over every look it could have is below x
with probability at most x, and the ``p`` it stops at is no smaller: a valid p-value whatever
the stopping did. Holm's correction needs nothing more (it holds under any dependence
between the cells, the shared curve of a seed included), so false ``faster`` or ``slower``
without ``?`` anywhere in the table stay at most 5% (``simulate``; the bracket only widens
the interval and raises ``p``).
"""

from __future__ import annotations

import math

import click
import numpy as np

from raypkg.bench.curve import CONFIDENCE, DECIDED, EQUIVALENCE
from raypkg.errors import UsageError


def settled(table):
    """Whether each cell of a judged table (a row per point: ``verdict``, ``holm``) is decided
    at the standard the table prints: a decided word, and ``faster`` or ``slower`` only where
    Holm keeps it (``holm`` not ``close``: no ``?``), on 2 seeds or more (one seed's ``below
    curve`` has no interval: more seeds may read ``slower``)."""
    return table["verdict"].isin(DECIDED) & ~table["holm"].eq("close") & table["n"].ge(2)


def doubted(table):
    """Which cells of a judged table read ``faster`` or ``slower`` with Holm's ``?``."""
    return table["verdict"].isin(("faster", "slower")) & table["holm"].eq("close")


def futile(low, high, n, level: float, max_seeds: int):
    """Whether each cell's interval (``low``, ``high``: its ends on the log scale at ``level``,
    from ``n`` seeds) would decide nothing at ``max_seeds`` seeds if its mean and spread held:
    narrowed by sqrt(n / K) and t's quantile at K - 1 degrees of freedom over n - 1's, it would
    still hold 0 and reach past the margin. NaN ends (under 2 seeds) are not futile."""
    from scipy import stats

    n = np.asarray(n, float)
    mid, half = (np.asarray(high) + np.asarray(low)) / 2, (np.asarray(high) - np.asarray(low)) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        shrink = stats.t.ppf(0.5 + level / 2, max_seeds - 1) / stats.t.ppf(0.5 + level / 2, n - 1) * np.sqrt(n / max_seeds)
        narrowed = half * shrink
    decidable = (np.abs(mid) > narrowed) | (np.abs(mid) + narrowed <= math.log(EQUIVALENCE))
    return ~decidable & np.isfinite(narrowed)


def undecided(table, max_seeds: int) -> set[tuple[str, str]]:
    """The cells (method, setting) the next seed runs: judged (``n`` > 0), not ``settled`` and not
    ``futile`` at ``max_seeds``."""
    if not len(table):
        return set()
    judged = table[(table["n"] > 0) & ~settled(table)]
    level = judged["level"].to_numpy(float)
    hopeless = futile(np.log(judged["x_low"].to_numpy(float)), np.log(judged["x_high"].to_numpy(float)),
                      judged["n"], level[0] if len(level) else CONFIDENCE, max_seeds)
    left = judged.loc[~hopeless, ["method", "setting"]]
    return set(zip(left["method"], left["setting"]))


def runs_next(labels, left: set[tuple[str, str]]) -> bool:
    """Whether an added seed runs a point (its ``labels``, or a stored row): the curve's (a
    budget), or a cell the look left undecided (``left``, ``undecided``'s)."""
    return labels["budget"] == labels["budget"] or (labels["method"], labels["setting"]) in left


def seeds_plan(preset: dict, seeds: int, typed_seeds: int | None, max_seeds: int | None, store, render: bool,
               slots: int | None, time_alone: bool, first_seed: int = 0) -> tuple[int, int, int]:
    """(N, K, looks): the frontier's first seeds, the most it runs, and the looks a cell may
    have (K - N + 1; 1 with fixed seeds, K = N). In order: the store's own (its frontier.json
    remembers seeds until decided, ``store.until_decided``: the same command and ``--render``
    judge at its level; another --max-seeds refused, another --seeds named), else ``--max-seeds``, else
    for ``--render`` the seeds typed (a store that remembers nothing ran them fixed), else the
    preset's ``max_seeds`` where --seeds is at most it. K = N turns seeds until decided off;
    it judges each look on seconds timed alone, so packed slots are refused with it."""
    from raypkg.bench.frontier.store import MAX_SEEDS
    from raypkg.cli_options import check_seed_count

    if max_seeds is not None and max_seeds < seeds:
        raise UsageError(f"--max-seeds must be at least --seeds ({seeds}), got {max_seeds} (as many as --seeds: fixed "
                         "seeds)")
    if max_seeds is not None and max_seeds > MAX_SEEDS:
        raise UsageError(f"--max-seeds takes at most {MAX_SEEDS} (each look spends 5% / looks), got {max_seeds}")
    kept, kept_seeds = store.until_decided(max_seeds, seeds)
    if store.settings().get("until_decided"):
        if typed_seeds is not None and typed_seeds != kept_seeds:
            click.echo(f"# {store.location} holds a frontier of seeds until decided, --seeds {kept_seeds} --max-seeds "
                       f"{kept} (its frontier.json): it goes on at its own looks, not --seeds {typed_seeds}", err=True)
        seeds, max_seeds, source = kept_seeds, kept, "the store's"
    elif max_seeds is not None:
        source = "--max-seeds"
    elif render or preset.get("max_seeds") is None or seeds >= preset["max_seeds"]:
        max_seeds, source = seeds, "fixed"
    else:
        max_seeds, source = preset["max_seeds"], "the preset's default"
    if max_seeds == seeds:
        return seeds, seeds, 1
    check_seed_count(max_seeds, first_seed, "--max-seeds")
    if slots not in (None, 1) and not time_alone and not render:
        raise UsageError(f"seeds until decided (--seeds {seeds} --max-seeds {max_seeds}, {source}) judges each look "
                         f"on seconds timed alone: leave out --slots {slots}, or add --time-alone; to pack points for "
                         f"their accuracies, give --max-seeds {seeds} (fixed seeds, as many as --seeds)")
    return seeds, max_seeds, max_seeds - seeds + 1


def added_points(settings: dict, names: list[str], start: int, stop: int, n: int, stored: set[str]) -> dict:
    """The points of the seeds ``start`` .. ``stop`` - 1 that seeds until decided added (by id)
    that the store holds (``stored``): what ``--render`` shows of them, the cells the looks
    gave those seeds and the curve (none counts as missing: a look ran only those)."""
    from raypkg.bench.frontier.points import build_points, point_id

    return {point_id(p): p for seed in range(start, stop) for p in build_points(settings, names, seed, n=n)
            if point_id(p) in stored}


# --- The rule replayed on measured rows (docs/results/seeds-until-decided/replay.py)

def replay(rows, first: int, most: int):
    """Seeds until decided (``first`` seeds, then up to ``most``; ``first`` = ``most``: fixed)
    run on a frontier's stored rows (``judge.judge_rows``' input, a row per point and seed)
    instead of training them: the looks the frontier makes, each judging the rows the rule has
    run so far and adding the next seed's curve and the cells ``undecided`` leaves
    (``runs_next``). Returns (the rows it ran, in ``rows``' index; its last look's summary; the
    cells a look asked for that ``rows`` lacks: then it is not that rule's replay)."""
    import pandas as pd

    from raypkg.bench.frontier.judge import judge_rows

    looks, chance = most - first + 1, float(rows["chance"].iloc[0])
    seeds = sorted(rows["seed"].unique())
    ran, missing = rows[rows["seed"].isin(seeds[:first])], 0
    for look in range(first, most):
        left = undecided(judge_rows(ran, chance=chance, looks=looks)[1], most)
        if not left or look >= len(seeds):
            missing += len(left)  # a seed the rows do not hold
            break
        cells = rows[rows["seed"] == seeds[look]]
        wanted = cells[[runs_next(row, left) for _, row in cells.iterrows()]]
        missing += len(left - set(zip(wanted["method"], wanted["setting"])))
        ran = pd.concat([ran, wanted])
    return ran, judge_rows(ran, chance=chance, looks=looks)[1], missing


# --- The simulation of the whole rule (tests/unit/test_frontier.py, docs/results/seeds-until-decided/simulate.py)

WORDS = ("inconclusive", "slower", "faster", "equivalent")  # the codes ``judge_many`` returns, in order


def judge_many(logs: np.ndarray, ran: np.ndarray, looks: int) -> tuple[np.ndarray, np.ndarray]:
    """``curve.judge`` over many cells at once, without brackets or seeds below the curve:
    ``logs`` (frontiers x cells x seeds) of the seeds' log ratios, ``ran`` which of them a cell
    has; the word (an index of ``WORDS``) read off the t-interval at 1 - 5% / ``looks``, ``p``
    times ``looks``, and the interval's ends (log scale)."""
    from scipy import stats

    n = ran.sum(-1)
    mean = np.where(ran, logs, 0.0).sum(-1) / n
    se = np.sqrt(np.where(ran, (logs - mean[..., None]) ** 2, 0.0).sum(-1) / (n - 1) / n)
    half = stats.t.ppf(1 - (1 - CONFIDENCE) / looks / 2, n - 1) * se
    low, high = mean - half, mean + half
    p = np.minimum(1.0, looks * 2 * stats.t.sf(np.abs(mean) / se, n - 1))
    margin = math.log(EQUIVALENCE)
    word = np.select([high < 0, low > 0, (low >= -margin) & (high <= margin)], [1, 2, 3], 0)
    return word, p, low, high


def holm_many(p: np.ndarray, alpha: float = 1 - CONFIDENCE) -> np.ndarray:
    """``curve.holm`` over each row of ``p`` (a frontier's cells): which ones it keeps."""
    order = np.argsort(p, axis=1, kind="stable")
    ok = np.logical_and.accumulate(np.take_along_axis(p, order, 1) <= alpha / (p.shape[1] - np.arange(p.shape[1])),
                                   axis=1)
    kept = np.empty_like(ok)
    np.put_along_axis(kept, order, ok, 1)
    return kept


def simulate(logs: np.ndarray, seeds: int, max_seeds: int, rule: str = "table") -> dict[str, np.ndarray]:
    """Frontiers run on simulated seeds: ``logs`` (frontiers x cells x at least ``max_seeds``)
    each seed's log ratio of each cell. ``rule``: ``table`` (``settled`` or ``futile``: the rule
    ``undecided`` reads), ``settled`` (the rule before futility), ``word`` (the one before it: a
    decided word, Holm not asked) or ``fixed`` (every cell ``seeds`` seeds, one look). Returns
    the last look's ``word`` (``WORDS`` index) and ``kept`` (Holm's) per cell, and ``ran``, the
    seeds each cell had."""
    ran = np.zeros(logs.shape[:2] + (max_seeds,), bool)
    ran[..., :seeds] = True
    logs = logs[..., :max_seeds]
    looks = 1 if rule == "fixed" else max_seeds - seeds + 1
    for count in range(seeds, max_seeds + 1):
        word, p, low, high = judge_many(logs, ran, looks)
        kept = holm_many(p)
        done = (word > 0) & ((word == 3) | kept) if rule in ("table", "settled") else word > 0
        if rule == "table":
            done |= futile(low, high, ran.sum(-1), 1 - (1 - CONFIDENCE) / looks, max_seeds)
        if rule == "fixed" or count == max_seeds:
            break
        ran[..., count] = ~done
    return {"word": word, "kept": kept, "ran": ran}


def marks(result: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per simulated frontier: cells ``shown`` (faster or slower, kept), ``doubted`` (faster
    or slower with Holm's ``?``), ``equivalent``, ``inconclusive``, and the point runs
    (``points``) and seeds it ran (``seeds``: those where any cell ran)."""
    word, kept = result["word"], result["kept"]
    directed = (word == 1) | (word == 2)
    return {"shown": (directed & kept).sum(1), "doubted": (directed & ~kept).sum(1),
            "equivalent": (word == 3).sum(1), "inconclusive": (word == 0).sum(1),
            "points": result["ran"].sum((1, 2)), "seeds": result["ran"].any(1).sum(-1)}


def priced(result: dict[str, np.ndarray], cell_seconds: np.ndarray, curve_seconds: float) -> np.ndarray:
    """Per simulated frontier, its point runs priced at each cell's seconds a seed
    (``cell_seconds``) and the curve's (``curve_seconds``) for every seed any cell ran: an
    estimate at one clock, not a measurement."""
    return (result["ran"].sum(-1) * cell_seconds).sum(1) + curve_seconds * result["ran"].any(1).sum(-1)
