"""What several test files share: the environment of a new user's shell, Ray's noise filtered
from a process's output, small problems and files to test on, and the checks of a finished
sweep, a PNG and a run's copy. No test imports another test module or conftest."""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from torch.func import functional_call, grad, vmap

from raypkg.data.base import IndexedDataset
from raypkg.models.zoo.mlp import MLP
from raypkg.tuning import setting_as_text

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = Path(TESTS_DIR).parent
# The tiers, a directory each (marked by conftest.py): tests/unit (no Ray; `pytest tests/unit -m "not
# slow"` is the quick tier), tests/ray (Ray instances, clusters, jobs), tests/docs (every command the
# docs show, their links and tables). A Ray worker imports test modules from any of them.
TIERS = ("unit", "ray", "docs")
TEST_DIRS = [TESTS_DIR, *(os.path.join(TESTS_DIR, tier) for tier in TIERS)]
# The dataset sizes of the embedded default (`digits`): its training and test examples.
DIGITS_TRAIN, DIGITS_TEST = 1347, 450

# Ray's own warning, logged with its traceback by Ray Train's controller when a request to its
# autoscaling coordinator takes over 5 s (ray/train/v2/.../autoscaling_coordinator_client.py):
# it happens on a busy 2-CPU machine, and Ray says it is safe to ignore.
RAY_SAFE_TO_IGNORE = "it's safe to ignore this error"


def without_ray_noise(text: str) -> str:
    """TEXT less two kinds of Ray's own noise, each with the traceback it logs under its
    ``(Process pid=N)`` prefix (up to the exception's own line); any other traceback stays
    for the test to find:
    - Ray's warnings that call themselves safe to ignore;
    - a Ray worker stopped by SIGTERM (Ray's handler raises SystemExit) while Python ran a
      garbage-collection callback, which Python reports as "Exception ignored in: ...":
      a Tune trial's actor ended by Tune on a busy machine."""
    lines, kept, i = text.splitlines(), [], 0
    while i < len(lines):
        prefix = lines[i].split(")", 1)[0] + ")"
        ignored = _body(lines[i], prefix).startswith("Exception ignored in:")
        if RAY_SAFE_TO_IGNORE in lines[i] or ignored:
            end, exception = _traceback_after(lines, i, prefix)
            if not ignored or exception.startswith("SystemExit"):
                i = end
                continue
        kept.append(lines[i])
        i += 1
    return "\n".join(kept)


def _body(line: str, prefix: str) -> str:
    return line[len(prefix):].removeprefix("\x1b[0m").removeprefix(" ")


def _traceback_after(lines: list[str], i: int, prefix: str) -> tuple[int, str]:
    """(the line after it, the exception's line) of the traceback that follows line I under
    PREFIX: its lines start with "Traceback" or a space, the exception's line ends it."""
    j = i + 1
    while j < len(lines) and lines[j].startswith(prefix):
        body = _body(lines[j], prefix)
        j += 1
        if not body.startswith(("Traceback", " ")):
            return j, body
    return j, ""


def without_env_settings(command: str) -> str:
    """A stored result's command less the ``NAME=value`` settings that lead it (the ISA caps
    ``raypkg.tracking.provenance`` names: a run under them is rerun under them)."""
    return re.sub(r"^(?:[A-Z][A-Z0-9_]*=\S* )+", "", command)


def bare_env(**extra) -> dict:
    """The environment of a new user's shell: no W&B mode or key, no Ray cluster named."""
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY", "RAY_ADDRESS")}
    env.update(extra)
    return env


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_width=300):
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[1] >= min_width and image.shape[0] >= 200
    assert image.std() > 0.01  # something is drawn


def expected_trials(spec: dict, num_samples: int) -> int:
    """Trials a sweep runs: num_samples times every grid point (`search: grid` sweeps each
    choice entry as a grid too)."""
    count = num_samples
    for dist in (spec.get("space") or {}).values():
        (kind, args), = dist.items()
        if kind == "grid" or kind == "choice" and spec["search"] == "grid":
            count *= len(args)
    return count


def check_sweep(sweep, spec: dict, num_samples: int, printed_value: float | None = None):
    """A finished sweep directory against its space: trials.parquet holds one row per trial;
    the best is the max (min) of the metric over them (the printed value, to 4 decimals);
    best_config.yaml is the base plus the config of a trial that reached it."""
    import math

    import pandas as pd

    from raypkg.tracking.provenance import read_provenance

    trials = pd.read_parquet(sweep / "trials.parquet")
    command = without_env_settings(read_provenance(sweep / "trials.parquet")["command"])
    assert command.startswith("effray")  # a docs table can show it
    best = yaml.safe_load((sweep / "best_config.yaml").read_text())
    assert len(trials) == expected_trials(spec, num_samples), trials
    scores = trials[spec["metric"]]
    top = scores.max() if spec["mode"] == "max" else scores.min()
    assert math.isfinite(top), scores
    if printed_value is not None:
        assert abs(printed_value - top) <= 5e-5, (printed_value, top)
    for key, value in (spec.get("base") or {}).items():
        if key not in spec.get("space", {}):
            assert best[key] == value, key
    columns = [c for c in trials if c.startswith("config/")]  # a list (a stack, an lr) kept as its text
    assert columns or not spec.get("space"), list(trials)
    winners = trials[scores == top]
    assert any(all(setting_as_text(best[c.removeprefix("config/")]) == row[c] for c in columns)
               for _, row in winners.iterrows()), (best, winners[columns])
    return trials, best


def same_run_files(local: Path, copy: Path) -> dict:
    """The copy's summary.json and metrics.parquet equal the local run directory's; returns the summary."""
    summary = json.loads((local / "summary.json").read_text())
    assert json.loads((copy / "summary.json").read_text()) == summary
    pd.testing.assert_frame_equal(pd.read_parquet(copy / "metrics.parquet"), pd.read_parquet(local / "metrics.parquet"))
    return summary


def tiny_problem(n=120, classes=3, features=6, hidden=5, seed=0, dtype=torch.float64):
    """A small float64 classification set (shifted class means) and an MLP trained a little."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    y = y[torch.randperm(n, generator=gen)]
    centers = torch.randn(classes, features, generator=gen, dtype=dtype)
    x = centers[y] + 0.9 * torch.randn(n, features, generator=gen, dtype=dtype)
    data = IndexedDataset(x, y, classes, index=torch.arange(n) * 3 + 7)  # index values != positions
    torch.manual_seed(seed)
    model = MLP((features,), classes, (hidden,)).to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, data


def identity_logreg(dim: int, classes: int) -> MLP:
    """Logistic regression whose logits are its inputs when dim == classes (features = inputs)."""
    model = MLP((dim,), classes).double()
    with torch.no_grad():
        model.head.weight.copy_(torch.eye(classes, dim, dtype=torch.float64))
        model.head.bias.zero_()
    return model


def points(rows, classes: int = 2, y=None) -> IndexedDataset:
    x = torch.tensor(rows, dtype=torch.float64)
    y = torch.as_tensor(y) if y is not None else torch.arange(len(x)) % classes
    return IndexedDataset(x, y, classes)


def write_png(path, pixels: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="RGB").save(path)


def make_image_tree(root, rng, split: str, counts: dict[str, int], size: int = 8):
    """Write PNGs under root/split/<class>/ and return {path: pixels [3, H, W]}."""
    written = {}
    for cls, count in counts.items():
        for k in range(count):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            path = root / split / cls / f"img{k}.png"
            write_png(path, pixels)
            written[str(path)] = pixels.transpose(2, 0, 1)
    return written


def train_on_subset(cfg, data, result, callbacks=()):
    """The coreset recipe's training on ``result`` (its ``SubsetTraining``: subset, weights,
    plan) by the engine, with ``callbacks`` added to watch it."""
    from raypkg.data.augment import use_augmentation
    from raypkg.engine.trainer import train
    from raypkg.selection.algorithm import SubsetTraining

    subset = SubsetTraining(cfg, data, result)
    return train(cfg, data if subset.split is None else subset.split, weights=subset.weights, plan=subset.plan,
                 augment=use_augmentation(cfg, data), callbacks=callbacks)


def autograd_last_layer_grads(model, data) -> torch.Tensor:
    """Per-example [dL/db, vec(dL/dW)] of the head by torch.func (vmap of grad)."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, x, y):
        out = functional_call(model, p, (x[None],))
        return torch.nn.functional.cross_entropy(out, y[None])

    grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, data.x, data.y)
    return torch.cat([grads["head.bias"], grads["head.weight"].flatten(1)], 1)


# ---------------------------------------------------------------- numbers quoted from stored tables
# (tests/docs/test_claims.py and test_prose_numbers.py: a registry of texts, each computed from Parquet)


@functools.lru_cache(maxsize=None)
def stored_table(path: str) -> pd.DataFrame:
    """A stored table of the repository (a path relative to it), read once per test process."""
    return pd.read_parquet(REPO / path)


CIFAR10_SEEDS = 3  # the seeds every stored CIFAR-10 point has: later ones reach only the cells without a word


def first_seeds_rows(d: pd.DataFrame, count: int = 1) -> pd.DataFrame:
    """The rows of a frontier's first ``count`` seeds (a table without a ``seed`` column, a summary, whole)."""
    return d[d.seed < count] if "seed" in d.columns else d


def first_seeds(count: int, *entries):
    """``entries`` (prose or claims, each with the stored tables it quotes and its ``compute``) computed on
    the first ``count`` seeds' rows: a frontier whose later seeds are being stored is quoted at the seeds
    every point has until they all are."""
    import dataclasses

    def on_first_seeds(compute):
        return lambda *frames: compute(*(first_seeds_rows(frame, count) for frame in frames))

    return [dataclasses.replace(e, compute=on_first_seeds(e.compute)) for e in entries]


def whole_seeds(rows: pd.DataFrame, *tables: pd.DataFrame) -> tuple[pd.DataFrame, ...]:
    """A frontier's ``rows`` and its other ``tables`` with a ``seed`` column (its epochs) at the seeds
    that have every point the rows hold: a store whose last seed is still being stored is quoted at
    its whole seeds."""
    points = rows.method + " " + rows.setting
    per_seed = points.groupby(rows.seed).nunique()
    whole = per_seed.index[per_seed == points.nunique()]
    return tuple(t[t.seed.isin(whole)] for t in (rows, *tables))


def seed_zero(*entries):
    """``entries`` computed on seed 0's rows (``first_seeds``)."""
    return first_seeds(1, *entries)


def value_at(d: pd.DataFrame, method: str, setting: str, column: str = "test_acc") -> float:
    """A point's value: its one row in a summary, the mean over its seeds in a frontier's rows."""
    values = d.loc[(d.method == method) & (d.setting == setting), column]
    assert len(values), f"no {method} {setting}"
    return float(values.mean())


def quote_values(text: str, value) -> str:
    """``text`` formatted with ``value`` (one or a tuple), each float rounded half up from its decimal
    value (a mean of 3 seeds' accuracies over 2,000 images can end in a 5 exactly: 0.6465 reads 0.647,
    not the float's 0.646)."""
    from decimal import ROUND_HALF_UP, Decimal, localcontext

    values = value if isinstance(value, (tuple, list)) else (value,)
    with localcontext(rounding=ROUND_HALF_UP):
        return text.format(*(Decimal(repr(round(float(v), 9))) if isinstance(v, float) else v for v in values))
