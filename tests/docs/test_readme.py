"""Every `effray ...` and `python jobs/...` command in the bash blocks of README.md and
docs/**/*.md runs, on a shrunken size.

The commands are read from the documentation (`DOCS`: README.md first, then the pages under
docs/ by path) when the tests are collected, so a new section or page is tested without
touching this file. Each runs in the order the documentation gives (later commands use
earlier runs: `runs/<run>` placeholders become the runs made so far, `runs/dg` is the run
named `dg`), in one temporary working directory, with its sizes shrunk through the flags it
has (`SHRINK`); a command given twice, in one file or in two, runs once. A
`python jobs/X.py ...` command runs the job script as a real process, shrunk and checked as
the `effray` command it runs (`effray_words`).
Each must then print and write what `EXPECT` says for its kind (its run directory and
summary.json, a sweep's best_config.yaml and trials.parquet, a benchmark's Parquet and
PNG, ...); a README command with no entry there fails. Most run in-process through click's
CliRunner (one Ray instance for all of them); the commands in `SUBPROCESS` run as real
`effray` processes in a bare shell. Skipped, with the reason: commands that need a Ray
cluster (`--address`, `ray job submit`), a real data directory or object storage.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import REPO, assert_png, bare_env, check_sweep, without_ray_noise

README = REPO / "README.md"
OWN_METHOD = REPO / "docs" / "methods" / "own-method.md"  # run from outside the repository: test_own_method_page.py
DOCS = [README, *sorted(p for p in (REPO / "docs").rglob("*.md") if p != OWN_METHOD)]  # README first

# flag -> shrunken value, applied (replacing the README's value) when the command has the flag
SHRINK = {"--epochs": "2", "--train-size": "2000", "--test-size": "500", "--pretrain-epochs": "1",
          "--repeats": "1", "--num-samples": "1", "--requests": "2", "--online-requests": "2",
          "--gd-epochs": "2", "--pre-epochs": "1",  # LiPT's shard models
          "--optimizers": "paper",  # bench crest: one of its two optimizers
          "--random-subset-size": "0.05",  # CREST: 0.05 x 2000 = 100 examples >= one batch of 64
          "--sizes": "40", "--image-size": "16",  # bench data: a fresh process per case, ~15-30 s each
          "--decode-blocks": "256,1024",  # bench data: still several blocks side by side, one case fewer
          "--repeat": "1",  # bench deltagrad: one timed round per method, not 3
          "--cli-runs": "1",  # bench overhead: one `effray --help` start-up timing
          "--reselect-every": "1", "--reselect": "1",  # adaptive selection: a round within the 2 epochs
          "--seeds": "1",  # bench frontier: the documented 3-seed measurements run one seed
          # bench frontier: its points one after another in this process (its Ray scheduler has tests of its
          # own, tests/ray/test_frontier_ray.py)
          "--slots": "1",
          "--threads": "1"}  # a documented 2-thread bench would take both cores from the suite's other process
WHEN_GIVEN = ("--decode-blocks", "--reselect-every", "--reselect", "--seeds", "--threads")  # replace, never add
# A ResNet (`--model resnet20`, `--setup digits-aug:resnet20`) trains ~100x slower per example than the
# MLP: its commands shrink further, to two batches of 128 an epoch
RESNET_SIZES = {"--train-size": "256", "--test-size": "128"}
# SHRINK flags a baseline refuses (it has no use for them): CREST's random subset, where it selects nothing
REFUSED_WITH = {"--random-subset-size": ("--selection-method", ("random", "none"))}
# flags added to a documented command (exactly as written), each leaving out a part that another
# test runs: the decode-block command runs stream-only and trains in-process; `bench data
# --workers 2` runs memory only on its Ray Train workers (streamed epochs on Ray Train workers
# equal memory's in test_stream.py); bench overhead times one Ray Train worker count, not 1 and 2
# (four Ray Train runs less); bench selection leaves its facility-location part (apricot's
# compile, ~20 s) to test_selection_pipeline.py
ADDED_TO = {"effray bench data --sizes 20000 --decode-blocks 256,1024,4096": ["--modes", "stream", "--workers", "0"],
            "effray bench data --workers 2": ["--modes", "memory"],
            "effray bench overhead": ["--workers", "2"],
            "effray bench selection": ["--skip-fl"]}
SIZES = ("--train-size", "--test-size")
SIZED_DATASETS = ("digits-aug", "synthetic")
QUIET = {"--progress/--no-progress": "--no-progress"}
SUBPROCESS = ("effray datasets", "effray train --dataset digits --model mlp",  # exact commands
              "effray tune train --num-samples 8")
EFFRAY = Path(sys.executable).with_name("effray")  # the console script the install made
REAL_DATASETS = ("mnist", "fashion-mnist", "cifar10", "cifar100", "imagefolder")
# jobs/<name>.py -> the effray command it runs (raypkg.jobs_support.run_job); any other: `effray run <name>`
JOB_COMMANDS = {"train": ["train"], "deltagrad": ["unlearn"]}


def readme_files(text: str) -> dict[str, str]:
    """The README's python blocks that name their file in a first-line comment
    (``# my_plugins.py: ...``), by file name: the commands after them use them."""
    return {m.group(1): m.group(0) for m in re.finditer(r"(?m)^# ([\w.]+\.py)\b.*\n(?:(?!```).*\n)*", text)
            if m.start() > 0 and text[:m.start()].endswith("```python\n")}


def job_script(words: list[str]) -> int | None:
    """Where `python jobs/X.py` starts in WORDS (a command of its own, or what `ray job
    submit ... --` runs), or None."""
    starts = [0] + [i + 1 for i, w in enumerate(words) if w == "--"] if words[:3] == ["ray", "job", "submit"] else [0]
    return next((i for i in starts if words[i:i + 1] in (["python"], ["python3"])
                 and re.fullmatch(r"jobs/\w+\.py", words[i + 1] if i + 1 < len(words) else "")), None)


def readme_commands(text: str) -> list[str]:
    """The `effray ...` and `python jobs/...` commands of the bash blocks, in order
    (continuations joined, comments and `VAR=value` prefixes dropped, `a && effray b` split;
    `ray job submit ... -- python jobs/...` kept whole: it needs a cluster)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|;", line):
                words = shlex.split(part, comments=True)
                while words and re.match(r"[A-Za-z_]\w*=", words[0]):
                    words = words[1:]
                if words and (words[0] == "effray" or job_script(words) is not None):
                    commands.append(shlex.join(words))
    return commands


def effray_words(words: list[str]) -> list[str]:
    """The `effray ...` command that WORDS run: themselves, or for `python jobs/X.py ARGS`
    (also after `ray job submit ... --`) the command of jobs/X.py with ARGS."""
    start = job_script(words)
    if start is None:
        return words
    name = Path(words[start + 1]).stem
    return ["effray", *JOB_COMMANDS.get(name, ["run", name]), *words[start + 2:]]


COMMANDS = list(dict.fromkeys(c for doc in DOCS for c in readme_commands(doc.read_text())))


def skip_reason(words: list[str]) -> str | None:
    if words[:3] == ["ray", "job", "submit"]:
        return "needs a Ray cluster (ray job submit)"
    if "--address" in words:
        return "needs a Ray cluster (--address)"
    if "--data-dir" in words or any(w.split(":")[0] in REAL_DATASETS for w in words):  # a --setup DATASET:MODEL too
        return "needs a data directory with a real dataset"
    if any(re.match(r"(s3|gs|hdfs)://", w) for w in words):
        return "needs object storage (test_storage.py runs s3:// against a local moto server)"
    return None


def click_command(words: list[str]):
    """The click command and its arguments for `effray WORDS...`."""
    import click

    from raypkg.cli import main

    command, rest = main, words[1:]
    while isinstance(command, click.Group) and rest:
        sub = command.get_command(click.Context(command), rest[0])  # groups may load lazily
        if sub is None:
            break
        command, rest = sub, rest[1:]
    return command, rest


def default_dataset(option) -> str:
    """The dataset a command loads without --dataset: the option's default, or the one its
    help names (options filled from a config say `Default: digits-aug.`)."""
    if option is None:
        return "digits"
    if isinstance(option.default, str):
        return option.default
    named = re.search(r"Default: ([\w-]+)", option.help or "")
    return named.group(1) if named else "digits"


def shrink(words: list[str]) -> list[str]:
    command, _ = click_command(words)
    flags = {opt: p for p in command.params for opt in p.opts}
    names = {p.name for p in command.params}
    out = list(words)
    dataset = out[out.index("--dataset") + 1] if "--dataset" in out else default_dataset(flags.get("--dataset"))
    sizes = RESNET_SIZES if any("resnet" in w for w in words) else {}
    for flag, value in {**SHRINK, **sizes}.items():
        if flag not in flags or flags[flag].hidden:  # hidden: a --with member's setting (CREST's on `train`)
            continue
        if flag in SIZES and "--dataset" in flags and dataset not in SIZED_DATASETS:
            continue  # a fixed-size dataset refuses --train-size (benches without --dataset size their own)
        if flag == "--image-size" and "--dataset" in flags and dataset != "imagefolder":
            continue  # only imagefolder resizes (another dataset refuses it, issue 48); bench data has no --dataset
        if flag in REFUSED_WITH and REFUSED_WITH[flag][0] in out and \
                out[out.index(REFUSED_WITH[flag][0]) + 1] in REFUSED_WITH[flag][1]:
            continue
        if flag in out:  # replace the README's value (one value: these flags take one)
            out[out.index(flag) + 1] = value
        elif flag not in WHEN_GIVEN:
            out += [flag, value]
    if "--lrlen" in out and "--epochs" in out:  # the piecewise phases fit the shrunken epochs (more is refused)
        start = out.index("--lrlen") + 1
        phases = next((i for i in range(start, len(out)) if not out[i].isdigit()), len(out)) - start
        out[start:start + phases] = ["1"] * phases
        out[out.index("--epochs") + 1] = str(max(int(out[out.index("--epochs") + 1]), phases))
    out += ADDED_TO.get(shlex.join(words), [])
    if "progress" in names and "--no-progress" not in out:
        out.append("--no-progress")
    if words[:2] == ["effray", "tune"] and "--space" not in out:
        out += tune_shrink(words[2])
    return out


def tune_shrink(method: str) -> list[str]:
    """`--set epochs=2` for a shipped space that trains for a fixed number of epochs."""
    import yaml

    from raypkg.tuning import default_space

    base = yaml.safe_load(default_space(method).read_text()).get("base") or {}
    return ["--set", f"epochs={SHRINK['--epochs']}"] if "epochs" in base and "lrlen" not in base else []


class Session:
    """State shared by the README's commands: the working directory, the runs made.

    A command that reads earlier runs (`runs/<run>`, `runs/dg`) takes those the README's
    earlier commands made, as a reader following the README would (and the suite saves
    their time); run alone (`-k`), it first makes what it reads itself."""

    def __init__(self, root: Path):
        self.root = root
        self.runs: list[str] = []

    def fill_in(self, words: list[str]) -> list[str]:
        """`runs/<run>`, `runs/<run-a>`, `runs/<run-b>`: the finished runs, newest last."""
        if "runs/dg" in words and not (self.root / "runs" / "dg").is_dir():
            self.invoke(shrink(shlex.split(next(c for c in COMMANDS if c.startswith("effray unlearn train")
                                                and "--name dg" in c))))
        placeholders = [w for w in words if re.search(r"<[^>]+>", w)]
        if not placeholders:
            return words
        while len(self.runs) < len(placeholders):
            self.invoke(shrink(["effray", "train", "--dataset", "digits", "--model", "logreg", "--epochs", "1"]))
        chosen = dict(zip(placeholders, self.runs[-len(placeholders):]))
        return [re.sub(r"runs/<[^>]+>", chosen[w], w) if w in chosen else w for w in words]

    def invoke(self, words: list[str], subprocess_run: bool = False, job: list[str] | None = None) -> str:
        """Run `effray WORDS...` in the working directory, in this process (or as a real
        process in a bare shell; with JOB, `python jobs/X.py ...`, the job script's process
        with the arguments that follow the command's words in WORDS); its output, once it
        exited 0. Notes the runs it made."""
        from click.testing import CliRunner

        from raypkg.cli import main

        if subprocess_run or job:
            head = [str(EFFRAY)] if EFFRAY.exists() else [sys.executable, "-m", "raypkg.cli"]
            args = words[1:]
            if job:
                head, args = [sys.executable, str(REPO / job[1])], words[len(effray_words(job)) - len(job) + 2:]
            proc = subprocess.run([*head, *args], capture_output=True, text=True, cwd=self.root, env=bare_env(),
                                  timeout=300)
            assert "Traceback" not in without_ray_noise(proc.stdout + proc.stderr), proc.stderr[-4000:]
            output, status = proc.stdout + proc.stderr, proc.returncode
        else:
            with pytest.MonkeyPatch.context() as patch:
                patch.chdir(self.root)
                for var in ("WANDB_MODE", "WANDB_API_KEY", "RAY_ADDRESS"):
                    patch.delenv(var, raising=False)
                result = CliRunner().invoke(main, words[1:])
            output, status = result.output, result.exit_code
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                raise result.exception
        assert status == 0, f"{shlex.join(words)}\n{output[-4000:]}"
        self.runs += re.findall(r"^run directory: (.+)$", output, flags=re.M)
        return output


# --------------------------------------------------------------------------------------
# What each command must print and write
# --------------------------------------------------------------------------------------

class Result:
    """A command as run (filled in and shrunk), what it printed, and where it ran."""

    def __init__(self, words: list[str], output: str, root: Path):
        self.words, self.output, self.root = words, output, root

    def flag(self, name: str, default: str | None = None) -> str | None:
        return self.words[self.words.index(name) + 1] if name in self.words else default

    def printed_paths(self, label: str) -> list[Path]:
        """The paths on `LABEL: a, b` lines, relative to the working directory."""
        lines = re.findall(rf"^{label}: (.+)$", self.output, flags=re.M)
        return [self.root / p.strip() for line in lines for p in line.split(", ")]

    @property
    def run(self) -> Path:
        """The run directory the command made (DeltaGrad requests print it as `saved:`)."""
        paths = self.printed_paths("run directory") or [p for p in self.printed_paths("saved") if p.is_dir()]
        assert paths, f"no run directory printed:\n{self.output[-2000:]}"
        return paths[-1]

    @property
    def summary(self) -> dict:
        return json.loads((self.run / "summary.json").read_text())


def prints(*patterns: str):
    """Lines matching each regex."""
    def check(r: Result) -> None:
        for pattern in patterns:
            assert re.search(pattern, r.output, flags=re.M), f"no line matches {pattern!r}:\n{r.output[-3000:]}"
    return check


def lists(registry: str, filled_by: str):
    """One line per name of REGISTRY (`module:DICT`, filled when FILLED_BY is imported), in its order."""
    def check(r: Result) -> None:
        module, name = registry.split(":")
        importlib.import_module(filled_by)
        names = list(getattr(importlib.import_module(module), name))
        assert [line.split()[0] for line in r.output.splitlines() if line.strip()] == names, r.output
    return check


def run_dir(method: str, keys: tuple[str, ...] = (), files: tuple[str, ...] = ()):
    """A run directory whose summary.json has METHOD (a regex), the command's dataset, model
    and selection, the KEYS (not null) and the test_acc it printed; FILES beside it."""
    def check(r: Result) -> None:
        summary = r.summary
        name, *stack = summary["method"].split("+")  # a stack (--with) follows the method's own name
        assert re.fullmatch(method, name), summary["method"]
        assert stack == (r.flag("--with").split(",") if r.flag("--with") else []), summary["method"]
        for flag, key in (("--dataset", "dataset"), ("--model", "model")):
            assert r.flag(flag) in (None, summary[key]), (flag, summary[key])
        for flag in ("--selection", "--method", "--selection-method"):
            assert r.flag(flag) is None or name.endswith("-" + r.flag(flag)), summary["method"]
        assert [k for k in ("wall_s", *keys) if summary.get(k) is None] == [], sorted(summary)
        if summary["test_acc"] is not None:
            assert f"{summary['test_acc']:.4f}" in r.output
        assert [f for f in files if not (r.run / f).is_file()] == [], sorted(p.name for p in r.run.iterdir())
    return check


def copied_to_storage(r: Result) -> None:
    """--storage: the finished run directory's copy there holds the same summary."""
    (copy,) = r.printed_paths("copied to storage")
    assert copy == Path(r.summary["storage"]) and json.loads((copy / "summary.json").read_text()) == r.summary


def one_row_per_epoch(r: Result) -> None:
    epochs = yaml.safe_load((r.run / "config.yaml").read_text())["epochs"]
    assert list(pd.read_parquet(r.run / "metrics.parquet")["epoch"]) == list(range(1, epochs + 1))


def selection_of_subset_size(r: Result) -> None:
    assert len(pd.read_parquet(r.run / "selection.parquet")) == r.summary["subset_size"] > 0


def merged_model_printed(r: Result) -> None:
    s = r.summary
    assert len(s["shard_test_acc"]) == s["shards"]
    assert f"merged ({s['merge']}) {s['merged_test_acc']:.4f}" in r.output, r.output[-2000:]


def crest_counts_printed(r: Result) -> None:
    s = r.summary
    assert f"steps {s['steps']}  regions {s['regions']}  checks {s['checks']}" in r.output, r.output[-2000:]


def request_ids_saved(r: Result) -> None:
    assert len(pd.read_parquet(r.run / "ids.parquet")) == r.summary["n_ids"] > 0


def one_row_per_request(r: Result) -> None:
    assert len(pd.read_parquet(r.run / "requests.parquet")) == r.summary["requests"] == int(r.flag("--requests"))


def report_of_the_runs(r: Result) -> None:
    """A row per run, in order, with speedup = the first run's wall_s / this run's; the plot."""
    runs = [r.root / w for w in r.words[2:] if not w.startswith("-")]
    walls = [json.loads((run / "summary.json").read_text())["wall_s"] for run in runs]
    # the runs filled in are the session's newest, which depend on the commands before this
    # one in its test process: runs of different data first get a warning line, then the table
    lines = [line for line in r.output.splitlines() if line.strip() and not line.startswith("warning:")]
    header, *rows = [line.split() for line in lines][:1 + len(runs)]
    assert header[0] == "run" and header[-1] == "speedup", header
    assert [row[0] for row in rows] == [run.resolve().name for run in runs], rows
    assert [row[-1] for row in rows] == [f"{walls[0] / wall:.4g}" for wall in walls], rows
    (plot,) = r.printed_paths("plot")
    assert_png(plot, min_width=900)


def sweep(r: Result) -> None:
    """best_config.yaml and trials.parquet agree with the printed best (tests/unit/test_tuning.py);
    W&B (offline by default, no key) holds one run per trial."""
    from raypkg.tune_space import read_space
    from raypkg.tuning import default_space

    (path,) = r.printed_paths("saved")
    metric, value = re.search(r"^best (\w+) = ([-\d.einf]+) with config:$", r.output, flags=re.M).groups()
    spec = read_space(r.flag("--space") and r.root / r.flag("--space") or default_space(r.words[2]))
    if r.flag("--search"):
        spec["search"] = r.flag("--search")
    sets = [r.words[i + 1] for i, w in enumerate(r.words) if w == "--set"]  # --set KEY=VALUE replaces a base value
    spec["base"] = {**(spec.get("base") or {}), **{k: yaml.safe_load(v) for k, _, v in (x.partition("=") for x in sets)}}
    assert metric == spec["metric"] and path.name == "best_config.yaml"
    trials, best = check_sweep(path.parent, spec, int(r.flag("--num-samples")), printed_value=float(value))
    assert len(list(path.parent.glob("wandb/offline-run-*"))) == len(trials), sorted(path.parent.iterdir())
    printed = r.output.split(" with config:\n", 1)[1].split("\nsaved: ", 1)[0]
    assert printed.splitlines() == [f"  {k}: {v}" for k, v in best.items()], printed


def own_ray_and_no_wandb_key(r: Result) -> None:
    """In a bare shell: a private local Ray, and W&B offline without asking for a key."""
    assert "ray: started a private local Ray with" in r.output and "No WandB API key" not in r.output, r.output[-3000:]


def bench_files(r: Result) -> None:
    """The table as Parquet (rows) and its plot as PNG, where `saved:` says."""
    saved = r.printed_paths("saved")
    tables = [p for p in saved if p.suffix == ".parquet"]
    assert tables and all(len(pd.read_parquet(p)) > 0 for p in tables), saved
    pngs = [p for p in saved if p.suffix == ".png"]
    assert pngs, saved
    for png in pngs:
        assert_png(png)


def bench_table(r: Result) -> pd.DataFrame:
    (table,) = [p for p in r.printed_paths("saved") if p.suffix == ".parquet" and "-curves" not in p.name]
    return pd.read_parquet(table)


def overhead_rows(r: Result) -> None:
    """CLI start-up first, then plain loop, engine, engine + callback, one row per worker count."""
    workers = r.flag("--workers", "1,2").split(",")
    assert len(bench_table(r)) == 3 + len(workers)
    assert re.search(r"^CLI start-up, median of \d+: python -c pass [\d.]+s, effray --help [\d.]+s, "
                     r"effray run lipt --help [\d.]+s$", r.output, flags=re.M), r.output[:2000]


def data_rows(r: Result) -> None:
    """One row per size and data path (--modes: memory, then stream once per decode block),
    each with the same training (the same inputs in the same batches), a peak per Ray Train
    worker (in-process: the driver's only); a progress line per case; the generated tree
    removed after."""
    sizes = sorted(int(s) for s in r.flag("--sizes").split(","))
    blocks = r.flag("--decode-blocks", "256").split(",")
    workers = int(r.flag("--workers", "1"))
    streams = ["stream"] if len(blocks) == 1 else [f"stream-{b}" for b in blocks]
    modes = [m for m in ["memory", *streams] if m.split("-")[0] in r.flag("--modes", "memory,stream").split(",")]
    table = bench_table(r)
    assert list(zip(table["images"], table["mode"])) == [(s, m) for s in sizes for m in modes], table
    for _, part in table.groupby("images"):
        assert part["train_loss"].nunique() == part["test_acc"].nunique() == 1, part
    ranks = [f"rank{i}_peak_mb" for i in range(workers)]
    assert (table["driver_peak_mb"] > 100).all() and (table["load_s"] > 0).all() and (table["epoch_s"] > 0).all()
    assert np.allclose(table["img_per_s"], table["images"] / table["epoch_s"])
    if workers:
        assert (table[ranks].max(axis=1) == table["worker_peak_mb"]).all() and (table["worker_peak_mb"] > 100).all()
    else:
        assert table["worker_peak_mb"].isna().all()
    assert not any(c.startswith("rank") for c in set(table) - set(ranks)), list(table)
    for size in sizes:
        for mode in modes:
            assert f"[bench data] {size:,} images, {mode}: loading and training" in r.output, r.output[:2000]
            assert re.search(rf"^\[bench data\] {size:,} images, {mode}: \d+ img/s, driver \d+ MB"
                             + (r", worker \d+ MB$" if workers else "$"), r.output, flags=re.M), r.output[:2000]
        for mode in modes[1:] if modes[0] == "memory" else []:  # the ratios need the memory row
            assert re.search(rf"^\s+{size} images: memory / {mode} images/s = \d+\.\d\dx$", r.output, flags=re.M)
    assert ("memory / " in r.output) == (modes[0] == "memory" and len(modes) > 1), r.output[-2000:]
    root = re.search(r"^wrote [\d,]+ \+ 1,000 images of \d+x\d+ in [\d.]+s under (.+)$", r.output, flags=re.M)
    assert root and not Path(root.group(1)).exists(), r.output[:2000]


# command prefix -> checks; the longest prefix that starts a README command applies to it
# (test_every_readme_command_has_expectations fails for a command that none starts)
RUN_FILES = ("summary.json", "config.yaml", "metrics.parquet")
EXPECT = {
    "effray datasets": [lists("raypkg.data.registry:DATASETS", "raypkg.data.sources")],
    "effray models": [lists("raypkg.models.registry:MODELS", "raypkg.models.zoo")],
    "effray train": [run_dir("train", ("test_acc",), (*RUN_FILES, "model.pt")), one_row_per_epoch],
    "effray train --workers 2 --storage": [run_dir("train", ("test_acc", "storage"), RUN_FILES), copied_to_storage],
    "effray report": [report_of_the_runs],
    "effray select": [run_dir(r"select-[\w-]+", ("subset_size",), ("summary.json", "selection.parquet")),
                      selection_of_subset_size],
    "effray run coreset": [run_dir(r"coreset-[\w-]+", ("test_acc", "subset_size"), (*RUN_FILES, "selection.parquet")),
                           selection_of_subset_size],
    "effray run lipt": [run_dir(r"lipt-\w+", ("test_acc", "merged_test_acc", "shard_test_acc"),
                                (*RUN_FILES, "selection.parquet")), merged_model_printed, selection_of_subset_size],
    "effray run sparse": [run_dir("sparse", ("test_acc", "method_variant"), RUN_FILES),
                          prints(r"^\S+ \S+/\S+: test_acc \d\.\d{4}")],
    "effray run crest": [run_dir(r"crest-\w+", ("test_acc", "steps", "regions"), RUN_FILES), crest_counts_printed],
    "effray run infobatch": [run_dir("infobatch", ("test_acc", "steps", "full_steps", "steps_saved"), RUN_FILES),
                             prints(r"^steps \d+ of \d+ \(saved \d+\.\d%\)$")],
    "effray unlearn train": [run_dir("deltagrad", ("test_acc", "steps", "num_params"), ("summary.json",)),
                             prints(r"^trained \w+ on [\w-]+: \d+ steps, p = \d+")],
    "effray unlearn delete": [run_dir("deltagrad-delete", ("n_ids", "speedup"), ("summary.json", "ids.parquet")),
                              prints(r"^deletion of \d+ samples", r"^  speedup\s+\d+\.\d\dx$"), request_ids_saved],
    "effray unlearn add": [run_dir("deltagrad-add", ("n_ids", "speedup"), ("summary.json", "ids.parquet")),
                           prints(r"^addition of \d+ samples", r"^  speedup\s+\d+\.\d\dx$"), request_ids_saved],
    "effray unlearn online": [run_dir("deltagrad-online", ("requests", "retrains"), ("requests.parquet",)),
                              prints(r"^online: \d+ requests of 1 \(delete\)"), one_row_per_request],
    "effray execution": [prints(r"^\d+ choice\(s\) in \S+execution\.json$")],
    "effray execution --clear": [prints(r"^cleared \d+ choice\(s\) from ")],
    "effray tune": [sweep],
    "effray tune train --num-samples 8": [sweep, own_ray_and_no_wandb_key],  # in SUBPROCESS
    "effray bench": [bench_files],
    "effray bench overhead": [bench_files, overhead_rows],
    "effray bench data": [bench_files, data_rows],
}


def expectations(command: str) -> list:
    command = shlex.join(effray_words(shlex.split(command)))  # a job script: the effray command it runs
    prefixes = [p for p in EXPECT if command == p or command.startswith(p + " ")]
    return EXPECT[max(prefixes, key=len)] if prefixes else []


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    import ray

    root = tmp_path_factory.mktemp("readme")
    # `effray tune train --space my_space.yaml`: the user's own space file, here a small one
    (root / "my_space.yaml").write_text(yaml.safe_dump({
        "method": "train", "metric": "test_acc", "mode": "max", "scheduler": "asha", "search": "random",
        "base": {"dataset": "digits", "model": "mlp", "epochs": 2, "progress": False},
        "space": {"lr": {"grid": [0.05, 0.1]}}}))  # a grid point is a trial, whatever the search
    for name, code in readme_files("\n".join(doc.read_text() for doc in DOCS)).items():  # `my_plugins.py` of
        # docs/architecture.md, "Your own model and data"
        (root / name).write_text(code)
    had_ray = ray.is_initialized()
    yield Session(root)
    if ray.is_initialized() and not had_ray:
        ray.shutdown()  # the session fixture of other tests starts its own


def test_readme_has_commands_of_every_kind():
    pages = {p.relative_to(REPO).as_posix() for p in DOCS}  # the pages moved out of the README are read
    assert {"docs/methods/coreset.md", "docs/operations.md", "docs/architecture.md"} <= pages, pages
    text = " ".join(COMMANDS)
    for command in ("effray train", "effray select", "effray run coreset", "effray unlearn train",
                    "effray tune", "effray bench", "effray report"):
        assert command in text, command


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{i:02d}" for i in range(len(COMMANDS))])
def test_readme_command_runs(command, session, monkeypatch, tmp_path):
    words = shlex.split(command)
    reason = skip_reason(words)
    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(session.root)  # the checks read paths relative to the working directory
    if words[:2] == ["effray", "execution"] and "--clear" in words:
        # it clears a copy: the suite's execution cache is shared with the other xdist worker, whose
        # test between two runs that must hit the same cached choice would otherwise measure again
        shared, copy = Path(os.environ["EFFRAY_CACHE_DIR"]), tmp_path / "cache"
        if shared.is_dir():
            shutil.copytree(shared, copy)
        monkeypatch.setenv("EFFRAY_CACHE_DIR", str(copy))
    job = words if job_script(words) is not None else None
    words = shrink(session.fill_in(effray_words(words)))
    output = session.invoke(words, subprocess_run=command in SUBPROCESS, job=job)
    for check in expectations(command):
        check(Result(words, output, session.root))


def test_every_readme_command_has_expectations():
    assert [c for c in COMMANDS if not expectations(c)] == []
    assert set(SUBPROCESS) | set(ADDED_TO) <= set(COMMANDS)  # commands named exactly are still documented


def test_the_readme_is_a_front_door_of_at_most_200_lines_naming_every_selector():
    """Issue 62: the README stays short (details are on the pages it links); its one row of
    selectors names exactly the registered ones, in no particular order."""
    from raypkg.selection.registry import SELECTORS, load_selectors

    text = README.read_text()
    assert len(text.splitlines()) <= 200
    load_selectors()
    row = next(line for line in text.splitlines() if line.startswith("| [selectors]"))
    named = re.search(r"`--selection NAME` \| ([^:]+):", row).group(1).split(", ")
    assert sorted(named) == sorted(SELECTORS)
