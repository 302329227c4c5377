"""`effray bench frontier --merge`: the stored rows of frontier runs over disjoint seeds of the
same points, concatenated and judged again on today's clock and statistics (nothing is
trained), titled by what the rows ran and naming the code and commands that measured them."""

from __future__ import annotations

import json

import click
import pandas as pd

from raypkg.bench.frontier.judge import fair_clock, judge_rows
from raypkg.bench.frontier.points import PRESETS
from raypkg.bench.frontier.report import name_code, name_machines, save_results
from raypkg.bench.frontier.store import differing_setting
from raypkg.bench.harness import BenchRunner
from raypkg.errors import UsageError
from raypkg.tracking.provenance import code_identity


def merge_runs(setup: str, paths: tuple[str, ...], save: str | None, wandb: str, threads: int | None,
               given: list[str]) -> None:
    """`--merge`: the stored rows of frontier runs over disjoint seeds of the same points (its
    ratios and curves are per seed) concatenated, judged on the frontier's clock
    (``judge.fair_clock``: rows stored before it get their evaluations estimated) and saved
    as one run's, titled by what the rows ran."""
    from raypkg.tracking.markdown import read_table
    from raypkg.tracking.provenance import read_provenance

    if given:
        raise UsageError(f"--merge reads stored rows and trains nothing: leave out {given[0]}")
    frames = [read_table(path, "--merge") for path in paths]
    for path, frame in zip(paths, frames):
        if not {"method", "setting", "seed", "e2e_s", "x_vs_curve"} <= set(frame.columns):
            raise UsageError(f"--merge: {path} is not a frontier's rows (STEM.parquet, not STEM-summary.parquet)")
    sources = [read_provenance(path) for path in paths]  # where the rows were measured, not where they merge
    setups = [rows_setup(frame, source, setup) for frame, source in zip(frames, sources)]
    if any(s != setups[0] for s in setups):
        other = next(i for i, s in enumerate(setups) if s != setups[0])
        raise UsageError(f"--merge: {paths[other]} ran {setups[other][0]}, {paths[0]} ran {setups[0][0]}: merge "
                         "tables of one setup")
    recorded = [json.loads(source["settings"]) if "settings" in (source or {}) else None for source in sources]
    for path, settings in zip(paths[1:], recorded[1:]):
        key = differing_setting(recorded[0], settings) if recorded[0] is not None and settings is not None else None
        if key is not None:
            raise UsageError(f"--merge: {path} ran a frontier with {key.replace('_', '-')} {settings.get(key)!r}, "
                             f"{paths[0]} with {recorded[0].get(key)!r}: merge tables of one frontier's settings (only "
                             "their seeds may differ)")
    points = [sorted(set(zip(f["method"], f["setting"]))) for f in frames]
    if any(p != points[0] for p in points):
        raise UsageError(f"--merge: {paths[next(i for i, p in enumerate(points) if p != points[0])]} has other points "
                         f"than {paths[0]}: merge runs of the same --methods and grids")
    seeds = [s for f in frames for s in sorted(set(f["seed"]))]
    if len(seeds) != len(set(seeds)):
        raise UsageError(f"--merge: seed {next(s for s in seeds if seeds.count(s) > 1)} is in more than one table")
    name, settings = setups[0]
    if all(sources):  # rows stored before each recorded its code: the commit that measured them, for each
        frames = [f.assign(commit=f["commit"].fillna(rows_commit(source)) if "commit" in f else rows_commit(source))
                  for f, source in zip(frames, sources)]
    frame = pd.concat(frames, ignore_index=True).sort_values("seed", kind="stable", ignore_index=True)
    frame = fair_clock(frame, settings["epochs"])
    runner = BenchRunner("frontier", save, threads, wandb, overwrite=True)  # a stored frontier rendered again
    if all(sources):
        draft = next((s["draft"] for s in (runner.source, *sources) if s.get("draft")), None)  # the merge's or a row's
        runner.source = {**sources[0], "command": f"{runner.source['command']}; its rows: " + "; ".join(
            map(rows_command, sources)), **({"draft": draft} if draft else {}),
            "judged": f"{runner.source['date']} at commit {runner.source['commit']}"}  # today's clock and statistics
    click.echo(f"# frontier {name}: merged {len(paths)} tables, seeds {', '.join(map(str, seeds))}")
    # rows stored before 2026-11-28 hold no chance accuracy: every dataset they ran has 10 classes
    looks = max(rows_looks(source) for source in sources) if all(sources) else 1
    frame, table = judge_rows(frame, chance=frame["chance"].iloc[0] if "chance" in frame else 0.1, looks=looks)
    name_code(runner, frame, code_identity())
    name_machines(runner, frame)
    save_results(runner, frame, table, settings, None)


def rows_looks(source: dict) -> int:
    """The looks stored rows were judged at: a frontier run with --max-seeds K after --seeds N
    (the command in their provenance) looked K - N + 1 times; else once."""
    import shlex

    if "looks" in source:  # recorded by the run (a preset's seeds until decided names no flag)
        return int(source["looks"])
    words = shlex.split(rows_command(source).split(" (at ")[0])
    flag = {w: v for w, v in zip(words, words[1:]) if w.startswith("--")}
    if "--max-seeds" not in flag:
        return 1
    settings = PRESETS[flag.get("--setup", "digits-aug:mlp")]
    return int(flag["--max-seeds"]) - int(flag.get("--seeds", settings["seeds"])) + 1


def rows_commit(source: dict) -> str:
    """The commit that measured stored rows: the one ``rows_command`` names."""
    return rows_command(source).rsplit(" (at ", 1)[1].rstrip(")")


def rows_command(source: dict) -> str:
    """The command that measured a stored table's rows, at its commit: for a table merged
    before, the command its own record names (not the merges' nested one by one)."""
    import re

    command = source["command"].rsplit("; its rows: ", 1)[-1]
    return f"{re.sub(r'( [(]at [^)]*[)])+$', '', command)} (at {source['commit']})"


def rows_setup(frame, source: dict, setup: str) -> tuple[str, dict]:
    """What stored rows ran (``DATASET:MODEL``, with the label noise and epochs they had):
    the rows' own columns where they have them, else the ``--setup`` and flags of the command
    in their provenance, else ``setup``'s preset."""
    import shlex

    words = shlex.split(source.get("command", "").split(";")[0])
    flag = {w.lstrip("-"): v for w, v in zip(words, words[1:]) if w.startswith("--")}
    settings = {**PRESETS[flag.get("setup", setup)]}
    settings.update({k: type(settings[k])(flag[k.replace("_", "-")]) for k in ("dataset", "model", "epochs")
                     if k.replace("_", "-") in flag})
    if "label-noise" in flag:
        settings["label_noise"] = float(flag["label-noise"])
    for column in ("dataset", "model", "label_noise", "epochs"):
        if column in frame and frame[column].nunique() == 1:
            settings[column] = frame[column].iloc[0].item() if hasattr(frame[column].iloc[0], "item") \
                else frame[column].iloc[0]
    return f"{settings['dataset']}:{settings['model']}, label noise {settings['label_noise']:g}", settings
