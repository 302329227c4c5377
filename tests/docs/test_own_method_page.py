"""docs/methods/own-method.md (issue 81): every command of the page, run as a user would,
from a directory outside the repository with the page's `my_method.py` on PYTHONPATH only
(not installed); then the same module installed as an entry point of `effray.methods`.

The page's files are its blocks that name themselves in a first-line comment
(``# my_method.py: ...``, ``# hardest_space.yaml: ...``); its commands are its bash block's,
shrunk (`SHRINK`) to a few seconds of training each."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import REPO, bare_env, without_ray_noise

PAGE = REPO / "docs" / "methods" / "own-method.md"
EFFRAY = Path(sys.executable).with_name("effray")
# flag -> value, replacing the page's or added where the command takes it
SHRINK = {"run": {"--epochs": "1"}, "tune": {"--num-samples": "1"},
          "frontier": {"--seeds": "1", "--epochs": "2", "--train-size": "1000", "--test-size": "300",
                       "--budgets": "0.5", "--curve-schedules": "cosine", "--slots": "1", "--threads": "1"}}
QUIET = {"run": ["--no-progress", "--wandb", "disabled"], "tune": ["--wandb", "disabled"],
         "frontier": ["--wandb", "disabled"], "verdicts": ["--wandb", "disabled"]}


def page_files() -> dict[str, str]:
    """The page's self-naming blocks: file name -> its text."""
    blocks = re.findall(r"```(?:python|yaml)\n(# ([\w.]+\.(?:py|yaml))\b.*?)```", PAGE.read_text(), flags=re.S)
    return {name: text for text, name in blocks}


def page_commands() -> list[list[str]]:
    (block,) = re.findall(r"```bash\n(.*?)```", PAGE.read_text(), flags=re.S)
    return [shlex.split(line) for line in block.splitlines() if line.startswith("effray ")]


def kind(words: list[str]) -> str:
    return words[2] if words[1] == "bench" else words[1]


def shrunk(words: list[str]) -> list[str]:
    out = list(words)
    for flag, value in SHRINK.get(kind(words), {}).items():
        if flag in out:
            out[out.index(flag) + 1] = value
        else:
            out += [flag, value]
    return out + QUIET.get(kind(words), [])


def effray(args: list[str], cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = bare_env(PYTHONPATH=str(pythonpath), EFFRAY_DRAFT="1")
    return subprocess.run([str(EFFRAY), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """(a working directory, the directory of the page's module): both outside the repository."""
    root = tmp_path_factory.mktemp("own-method")
    assert REPO not in root.parents
    work, modules = root / "work", root / "modules"
    work.mkdir()
    modules.mkdir()
    for name, text in page_files().items():
        (modules if name.endswith(".py") else work).joinpath(name).write_text(text)
    return work, modules


def test_the_page_names_its_files_and_commands():
    assert set(page_files()) == {"my_method.py", "hardest_space.yaml"}
    assert [kind(words) for words in page_commands()] == ["run", "run", "tune", "frontier", "verdicts"]
    assert len(page_files()["my_method.py"].splitlines()) < 60


def test_every_command_of_the_page_runs_from_outside_the_repository(outside):
    work, modules = outside
    outputs = []
    for words in page_commands():
        proc = effray(shrunk(words)[1:], work, modules)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{shlex.join(words)}\n{output[-4000:]}"
        assert "Traceback" not in without_ray_noise(output), output[-4000:]
        outputs.append(output)
    run, stacked, tune, frontier, verdicts = outputs

    def summary(output: str) -> dict:
        run_dir = re.findall(r"^run directory: (.+)$", output, flags=re.M)[-1]
        return json.loads((work / run_dir / "summary.json").read_text())

    own = summary(run)
    assert own["method"] == "my_method:Hardest" and own["keep"] == 0.5 and own["test_acc"] > 0.2
    with_infobatch = summary(stacked)
    assert with_infobatch["method"] == "infobatch+my_method:Hardest"
    assert with_infobatch["my_method:Hardest"] == {"keep": 0.7} and with_infobatch["steps_saved"] >= 0
    best = re.search(r"^saved: (.+best_config\.yaml)$", tune, flags=re.M).group(1)
    assert yaml.safe_load((work / best).read_text())["keep"] in (0.3, 0.6)
    rows = pd.read_parquet(work / "runs/own-frontier.parquet")
    plugin = rows.loc[rows["method"] == "my_method:Hardest", "plugin"].tolist()
    assert len(plugin) == 1 and re.fullmatch(r"my_method:Hardest@[0-9a-f]{12}", plugin[0]), rows["plugin"]
    assert rows.loc[rows["method"] != "my_method:Hardest", "plugin"].isna().all()
    table = pd.read_parquet(work / "runs/own-frontier-summary.parquet").set_index("method")
    assert table.loc["my_method:Hardest", "n"] == 1 and table.loc["my_method:Hardest", "verdict"] != "-"
    line = next(line for line in verdicts.splitlines() if line.startswith("my_method:Hardest "))
    assert "n=1" in line and re.search(r"faster|slower|equivalent|below curve|inconclusive", line), verdicts

    # an edited plug-in makes its stored point another code's: refused, then run again with --rerun-stale
    frontier_words = shrunk(page_commands()[3])[1:]
    source = modules / "my_method.py"
    source.write_text(source.read_text() + "# edited\n")
    refused = effray(frontier_words, work, modules)
    assert refused.returncode == 2, refused.stderr[-3000:]
    (error,) = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    # (raypkg/ itself may have changed under a test run in a checkout being edited: its points are stale too)
    other = re.search(r"holds (\d+) point runs of other code \((.*)\) than this checkout's \((.*)\): add "
                      r"--rerun-stale", error)
    assert other, error
    assert other[1] == "1" and other[2] == f"plug-in {plugin[0]}" or other[2].count("+dirty"), error
    assert other[3].endswith(", plug-in my_method:Hardest@" + now_digest(modules)), error
    rerun = effray([*frontier_words, "--rerun-stale"], work, modules)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert re.search(r"^# --rerun-stale: \d+ point runs of other code set aside to stale/", rerun.stderr, flags=re.M)
    again = pd.read_parquet(work / "runs/own-frontier.parquet")
    (now,) = again.loc[again["method"] == "my_method:Hardest", "plugin"]
    assert now != plugin[0] and now.startswith("my_method:Hardest@")


def now_digest(modules: Path) -> str:
    """The digest a frontier records for the page's module as it is now."""
    proc = subprocess.run([sys.executable, "-c", "from raypkg.plugins import source_digest; "
                           "print(source_digest('method', 'my_method:Hardest')[:12])"],
                          env=bare_env(PYTHONPATH=str(modules)), capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def test_an_installed_entry_point_is_listed_and_runs_by_name(outside, tmp_path):
    """A tiny distribution, as importlib.metadata finds an installed one (NAME.dist-info beside
    the module on the path): `effray methods` and `effray --help` list its method, and
    `effray run NAME` runs it."""
    work, modules = outside
    site = tmp_path / "site"
    site.mkdir()
    (site / "my_method.py").write_text(page_files()["my_method.py"])
    info = site / "hardest_k-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hardest-k\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[effray.methods]\nhardest = my_method:Hardest\nema = my_method:Hardest\n")
    listed = effray(["methods"], work, site)
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert names.count("ema") == 1 and names[-1] == "hardest"  # a built-in name wins
    assert "Hardest k: train each batch's --keep x B highest-loss examples only. (plug-in my_method:Hardest)" \
        in listed.stdout
    assert "installed (effray.methods): hardest" in " ".join(effray(["--help"], work, site).stdout.split())
    proc = effray(["run", "hardest", "--keep", "0.4", "--epochs", "1", "--no-progress", "--wandb", "disabled"],
                  work, site)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = re.findall(r"^run directory: (.+)$", proc.stdout, flags=re.M)[-1]
    summary = json.loads((work / run_dir / "summary.json").read_text())
    assert summary["method"] == "hardest" and summary["keep"] == 0.4
