"""W&B logging of a run's metrics: offline by default, never a prompt for a key."""

from __future__ import annotations

import os
from pathlib import Path


class WandbLogger:
    """Thin wrapper around one W&B run living in ``<run_dir>/wandb``.

    ``mode`` is offline (default: `wandb sync <run_dir>/wandb/offline-run-*` uploads it
    later), online (needs WANDB_API_KEY or a prior `wandb login`), or disabled.
    """

    def __init__(self, run_dir: Path, name: str, group: str, config: dict,
                 mode: str = "offline", project: str = "effray"):
        self.run = None
        mode = os.environ.get("EFFRAY_WANDB_MODE", mode)
        if mode == "disabled":
            return
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(project=project, name=name, group=group, config=config, mode=mode,
                              dir=str(run_dir), reinit="create_new",
                              settings=wandb.Settings(console="off", silent=True))

    def log(self, row: dict) -> None:
        if self.run is not None:
            self.run.log({k: v for k, v in row.items() if isinstance(v, (int, float))})

    def summary(self, summary: dict) -> None:
        if self.run is not None:
            flat = {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}
            flat.update({f"phase/{k}": v for k, v in summary.get("phases", {}).items()})
            self.run.summary.update(flat)

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
