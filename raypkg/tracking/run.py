"""One directory per run: resolved config, per-epoch metrics (Parquet), summary, artifacts.

    runs/<name>/
      config.yaml        the resolved config; `--config` with it repeats the run
      metrics.parquet    one row per epoch (or step)
      summary.json       method, dataset, model, test_acc, wall_s, phases {name: seconds}, ...
      wandb/             the W&B run (offline unless asked for online)
      ray/               Ray Train checkpoints (without --storage)
      ...                artifacts (checkpoints, selection.parquet, ...)

With ``--storage`` (``raypkg.storage``), Ray Train checkpoints go to STORAGE/<name>/ray
instead, and a finished run directory is copied to STORAGE/<name>/.

A run that does not finish removes its directory: bad input (``UsageError``), a failed
Ray Train run (``RunFailed``), Ctrl-C (KeyboardInterrupt) or any other exception. A run
directory is either finished (``summary.json``) or still running; `effray report` skips
one left by a killed process.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from raypkg import storage as shared
from raypkg.errors import RunFailed, UsageError
from raypkg.paths import atomic_write, check_writable_dir
from raypkg.tracking.timings import Timings, wall_split
from raypkg.tracking.wandb_logger import WandbLogger


def to_plain(value: Any) -> Any:
    """Make config values YAML/JSON friendly (tuples -> lists, paths -> str)."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return value.item()
    return value


def write_parquet(path: Path, table: pd.DataFrame | dict, provenance: dict | None = None) -> Path:
    """Write a DataFrame or a dict of equal-length columns atomically (tmp file + rename),
    with ``provenance`` (``raypkg.tracking.provenance``) in its schema's metadata."""
    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(
        {k: (v.cpu().numpy() if hasattr(v, "cpu") else v) for k, v in table.items()})
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    if provenance:
        import json

        from raypkg.tracking.provenance import KEY

        arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), KEY: json.dumps(provenance)})
    return atomic_write(path, lambda tmp: pq.write_table(arrow, tmp))


class RunDir:
    def __init__(self, path: Path, method: str, config: dict, dataset: str, model: str,
                 wandb_mode: str = "offline", wandb_project: str = "effray", storage: str | None = None,
                 keep_checkpoints: bool = False):
        self.path = path
        # this run's place in --storage (None: none, checkpoints stay in the run directory)
        self.remote = shared.join(storage, path.name) if storage else None
        self.keep_checkpoints = keep_checkpoints
        self.method, self.dataset, self.model = method, dataset, model
        self.config = to_plain(config)
        self.rows: list[dict] = []
        self.timings = Timings()
        self.started, self.started_at = time.perf_counter(), time.time()
        self.summary: dict | None = None
        self.wandb = WandbLogger(path, name=path.name, group=method, config=self.config,
                                 mode=wandb_mode, project=wandb_project)

    @classmethod
    def create(cls, out_root: str | Path, method: str, config: dict, dataset: str, model: str,
               name: str | None = None, wandb_mode: str = "offline",
               wandb_project: str = "effray", storage: str | None = None,
               keep_checkpoints: bool = False) -> "RunDir":
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        plain = [re.sub(r"[^\w.-]+", "_", part) for part in (method, dataset, model)]  # plug-ins: a.b:c -> a.b_c
        path = cls.check(out_root, name or "-".join([*plain, stamp]), storage)
        path.mkdir(parents=True, exist_ok=True)
        run = None
        try:
            run = cls(path, method, config, dataset, model, wandb_mode, wandb_project, storage, keep_checkpoints)
            atomic_write(path / "config.yaml", lambda tmp: tmp.write_text(yaml.safe_dump(run.config, sort_keys=False)))
        except BaseException:  # W&B could not start, the disk is full, Ctrl-C: no half-made run directory
            if run is not None:
                run.wandb.finish(exit_code=1)
            shutil.rmtree(path, ignore_errors=True)
            raise
        return run

    @staticmethod
    def check(out_root: str | Path, name: str | None, storage: str | None) -> Path | None:
        """The config's I/O probes, where output begins (``Recipe.run`` makes them before
        the data loads or Ray starts): --out is writable, --storage opens, and the run
        directory ``name`` (when given) is free here and in the storage. Returns its path
        (None without a name)."""
        check_writable_dir(out_root, "--out")
        shared.check_storage(storage)
        path = Path(out_root) / name if name else None
        if path is not None and path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UsageError(f"run directory {str(path)!r} already exists and is not empty; "
                             "pick another --name")
        if path is not None and storage:
            shared.check_free(shared.join(storage, path.name))
        return path

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.wandb.finish(exit_code=0 if exc_type is None else 1)
        finally:
            if exc_type is not None:  # nothing half-written stays behind
                shutil.rmtree(self.path, ignore_errors=True)
                if self.remote:
                    try:
                        shared.remove(self.remote)
                    except Exception:  # noqa: BLE001 - the run's own error is the one to report
                        pass
        if exc_type is None and self.remote:
            self._copy_to_storage()

    def _copy_to_storage(self) -> None:
        """A finished run: its checkpoints in the storage removed (unless kept), then the
        run directory copied beside them. A failure keeps the local run directory."""
        try:
            if not self.keep_checkpoints:
                shared.remove(shared.join(self.remote, "ray"))
            shared.upload(self.path, self.remote)
        except Exception as e:  # noqa: BLE001 - pyarrow raises OSError and ArrowException kinds
            raise RunFailed(f"the run finished in {str(self.path)!r}, but copying it to {self.remote!r} "
                            f"failed: {shared.first_line(e)}") from None

    def phase(self, name: str):
        """Time a named phase; repeated phases of the same name add up."""
        return self.timings.phase(name)

    def log_metrics(self, row: dict) -> None:
        """Append one row (an epoch or a step) to metrics.parquet and to W&B."""
        row = to_plain(row)
        self.rows.append(row)
        write_parquet(self.path / "metrics.parquet", pd.DataFrame(self.rows))
        self.wandb.log(row)

    @property
    def storage(self) -> Path | str:
        """Where Ray Train keeps this run's checkpoints: RUN/ray (kept and removed with the
        run), or STORAGE/<name>/ray with --storage."""
        return shared.join(self.remote, "ray") if self.remote else self.path / "ray"

    def note(self, entries: dict) -> None:
        """Summary entries known early: the run directory writes them with the summary."""

    def write_table(self, filename: str, table: pd.DataFrame | dict, wandb_prefix: str | None = None) -> Path:
        """``filename`` as Parquet; with ``wandb_prefix`` every row also goes to W&B as
        ``{prefix}/{column}``."""
        path = write_parquet(self.path / filename, table)
        if wandb_prefix is not None:
            frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
            for row in frame.to_dict("records"):
                self.wandb.log({f"{wandb_prefix}/{k}": v for k, v in to_plain(row).items()})
        return path

    def save_state(self, filename: str, state: dict) -> Path:
        """A state dict (CPU tensors) as ``filename``."""
        import torch

        state = {k: v.cpu() if hasattr(v, "cpu") else v for k, v in state.items()}
        return atomic_write(self.path / filename, lambda tmp: torch.save(state, tmp))

    def finish(self, test_acc: float | None, **extra) -> dict:
        """Write summary.json; returns the summary. With per-epoch rows, it also has
        ``epochs_s`` (their sum) and ``overhead_s`` (the rest of the wall time: start-up,
        selection, evaluation, saving)."""
        wall = time.perf_counter() - self.started
        self.summary = to_plain({
            "method": self.method, "dataset": self.dataset, "model": self.model,
            "test_acc": test_acc, "wall_s": wall, "started_at": self.started_at, **wall_split(wall, self.rows),
            **self.timings.summary(), "run_dir": str(self.path),
            **({"storage": self.remote} if self.remote else {}), **extra})
        text = json.dumps(self.summary, indent=2)
        atomic_write(self.path / "summary.json", lambda tmp: tmp.write_text(text))
        self.wandb.summary(self.summary)
        return self.summary


def read_summary(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise UsageError(f"{str(run_dir)!r} is not a finished run directory (no summary.json)")
    return json.loads(path.read_text())
