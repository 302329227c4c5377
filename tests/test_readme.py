"""Every `effray ...` command in README.md's bash blocks runs, on a shrunken size.

The commands are read from README.md when the tests are collected, so a new README
section is tested without touching this file. Each runs in the order the README gives
(later commands use earlier runs: `runs/<run>` placeholders become the runs made so far,
`runs/dg` is the run named `dg`), in one temporary working directory, with its sizes
shrunk through the flags it has (`SHRINK`). Most run in-process through click's
CliRunner (one Ray instance for all of them); the commands in `SUBPROCESS` run as real
`effray` processes in a bare shell. Skipped, with the reason: commands that need a Ray
cluster or a real data directory.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import bare_env

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

# flag -> shrunken value, applied (replacing the README's value) when the command has the flag
SHRINK = {"--epochs": "2", "--train-size": "2000", "--test-size": "500", "--pretrain-epochs": "1",
          "--repeats": "1", "--num-samples": "1", "--requests": "2", "--online-requests": "2",
          "--gd-epochs": "2", "--pre-epochs": "1",  # LiPT's shard models
          "--optimizers": "paper",  # bench crest: one of its two optimizers
          "--random-subset-size": "0.05",  # CREST: 0.05 x 2000 = 100 examples >= one batch of 64
          "--sizes": "40", "--image-size": "16"}  # bench data: one Ray Train run per mode, ~25 s each
SIZES = ("--train-size", "--test-size")
SIZED_DATASETS = ("digits-aug", "synthetic")
QUIET = {"--progress/--no-progress": "--no-progress"}
SUBPROCESS = ("effray datasets", "effray train --dataset digits --model mlp")  # exact commands
REAL_DATASETS = ("mnist", "cifar10", "cifar100", "imagefolder")


def readme_commands(text: str) -> list[str]:
    """The `effray ...` commands of the bash blocks, in order (continuations joined,
    comments dropped, `a && effray b` split)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|;", line):
                words = shlex.split(part, comments=True)
                if words and words[0] == "effray":
                    commands.append(shlex.join(words))
    return commands


COMMANDS = readme_commands(README.read_text())


def skip_reason(words: list[str]) -> str | None:
    if "--address" in words:
        return "needs a Ray cluster (--address)"
    if "--data-dir" in words or any(w in REAL_DATASETS for w in words):
        return "needs a data directory with a real dataset"
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


def shrink(words: list[str]) -> list[str]:
    command, _ = click_command(words)
    flags = {opt: p for p in command.params for opt in p.opts}
    names = {p.name for p in command.params}
    out = list(words)
    dataset = out[out.index("--dataset") + 1] if "--dataset" in out else flags.get("--dataset", None)
    dataset = getattr(dataset, "default", dataset) or "digits"
    for flag, value in SHRINK.items():
        if flag not in flags:
            continue
        if flag in SIZES and "--dataset" in flags and dataset not in SIZED_DATASETS:
            continue  # a fixed-size dataset refuses --train-size (benches without --dataset size their own)
        if flag in out:  # replace the README's value (one value: these flags take one)
            out[out.index(flag) + 1] = value
        else:
            out += [flag, value]
    if "progress" in names and "--no-progress" not in out:
        out.append("--no-progress")
    return out


class Session:
    """State shared by the README's commands: the working directory, the runs made."""

    def __init__(self, root: Path):
        self.root = root
        self.runs: list[str] = []

    def fill_in(self, words: list[str]) -> list[str]:
        """`runs/<run>`, `runs/<run-a>`, `runs/<run-b>`: the finished runs, newest last."""
        placeholders = [w for w in words if re.search(r"<[^>]+>", w)]
        if not placeholders:
            return words
        assert len(self.runs) >= len(placeholders), f"no earlier runs for {placeholders}"
        chosen = dict(zip(placeholders, self.runs[-len(placeholders):]))
        return [re.sub(r"runs/<[^>]+>", chosen[w], w) if w in chosen else w for w in words]

    def note_runs(self, output: str) -> None:
        self.runs += re.findall(r"^run directory: (.+)$", output, flags=re.M)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    import ray

    root = tmp_path_factory.mktemp("readme")
    # `effray tune train --space my_space.yaml`: the user's own space file, here a small one
    (root / "my_space.yaml").write_text(yaml.safe_dump({
        "method": "train", "metric": "test_acc", "mode": "max", "scheduler": "asha", "search": "random",
        "base": {"dataset": "digits", "model": "mlp", "epochs": 2, "progress": False},
        "space": {"lr": {"loguniform": [0.01, 0.3]}}}))
    had_ray = ray.is_initialized()
    yield Session(root)
    if ray.is_initialized() and not had_ray:
        ray.shutdown()  # the session fixture of other tests starts its own


def test_readme_has_commands_of_every_kind():
    text = " ".join(COMMANDS)
    for command in ("effray train", "effray select", "effray run coreset", "effray unlearn train",
                    "effray tune", "effray bench", "effray report"):
        assert command in text, command


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{i:02d}" for i in range(len(COMMANDS))])
def test_readme_command_runs(command, session, monkeypatch):
    from click.testing import CliRunner

    words = shlex.split(command)
    reason = skip_reason(words)
    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(session.root)
    words = shrink(session.fill_in(words))
    if command in SUBPROCESS:
        proc = subprocess.run([sys.executable, "-m", "raypkg.cli", *words[1:]], capture_output=True, text=True,
                              cwd=session.root, env=bare_env(), timeout=300)
        output, status = proc.stdout + proc.stderr, proc.returncode
    else:
        for var in ("WANDB_MODE", "WANDB_API_KEY", "RAY_ADDRESS"):
            monkeypatch.delenv(var, raising=False)
        from raypkg.cli import main

        result = CliRunner().invoke(main, words[1:])
        output, status = result.output, result.exit_code
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
    assert status == 0, f"{shlex.join(words)}\n{output[-4000:]}"
    session.note_runs(output)
