"""W&B logging of a run's metrics: offline by default, never a prompt for a key."""

from __future__ import annotations

import os
from pathlib import Path

from raypkg.errors import UsageError
from raypkg.interrupts import release_logging_lock

WANDB_MODES = ("offline", "online", "disabled")


def use_wandb_mode(mode: str) -> str:
    """Make ``mode`` the W&B mode of this process and of the Ray workers it starts.

    W&B code that does not take a mode (Ray's WandbLoggerCallback asks for an API key
    unless WANDB_MODE says offline or disabled) reads it from WANDB_MODE, so the chosen
    mode is written there. ``online`` without a key is refused with one line.
    """
    if mode not in WANDB_MODES:
        raise UsageError(f"unknown wandb mode {mode!r}; choose one of: {', '.join(WANDB_MODES)}")
    if mode == "online" and not _has_api_key():
        raise UsageError("--wandb online needs a W&B API key: run `wandb login` or set WANDB_API_KEY "
                         "(or use --wandb offline and `wandb sync` later)")
    os.environ["WANDB_MODE"] = mode
    os.environ.setdefault("WANDB_SILENT", "true")
    return mode


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    import contextlib
    import io
    import warnings

    # W&B's own warnings (a deprecation of this very check) stay out of a refusal's one line
    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import wandb

            wandb.ensure_configured()
            return bool(wandb.api.api_key)
        except Exception:  # noqa: BLE001  (no readable W&B settings: no key)
            return False


class WandbLogger:
    """Thin wrapper around one W&B run living in ``<run_dir>/wandb``.

    ``mode`` is offline (default: `wandb sync <run_dir>/wandb/offline-run-*` uploads it
    later), online (needs WANDB_API_KEY or a prior `wandb login`), or disabled.
    """

    def __init__(self, run_dir: Path, name: str, group: str, config: dict,
                 mode: str = "offline", project: str = "effray"):
        self.run = None
        mode = os.environ.get("EFFRAY_WANDB_MODE", mode)
        use_wandb_mode(mode)
        if mode == "disabled":
            return
        import wandb

        self.run = wandb.init(project=project, name=name, group=group, config=config, mode=mode,
                              dir=str(run_dir), reinit="create_new",
                              settings=wandb.Settings(console="off", silent=True))

    def log(self, row: dict) -> None:
        if self.run is not None:
            self.run.log({k: v for k, v in row.items() if isinstance(v, (int, float))})

    def log_table(self, key: str, frame) -> None:
        """A pandas DataFrame as one W&B table (a benchmark's results)."""
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Table(dataframe=frame)})

    def log_images(self, images: dict[str, Path]) -> None:
        """PNG files as W&B images, by key."""
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Image(str(path)) for key, path in images.items()})

    def summary(self, summary: dict) -> None:
        if self.run is not None:
            flat = {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}
            flat.update({f"phase/{k}": v for k, v in summary.get("phases", {}).items()})
            self.run.summary.update(flat)

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            # After a Ctrl-C the logging lock may be left held, and W&B's threads log while
            # the run finishes and while W&B tears down at exit (raypkg.interrupts).
            release_logging_lock()
            self.run.finish(exit_code=exit_code)
            self.run = None
