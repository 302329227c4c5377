"""`effray train`: full-data training, in-process or on Ray Train, tracked in a run dir."""

from __future__ import annotations

import torch

from raypkg.data.augment import CropFlip
from raypkg.data.registry import load_dataset
from raypkg.engine.config import RunConfig, TrainConfig
from raypkg.engine.loop import evaluate
from raypkg.engine.trainer import train
from raypkg.tracking import RunDir


def load_data(cfg: RunConfig):
    """``cfg``'s dataset; prints how image files are held (memory or streamed) and why."""
    data = load_dataset(cfg.dataset, **cfg.data_options())
    if data.note:
        print(data.note, flush=True)
    return data


def use_augmentation(cfg: TrainConfig, data) -> CropFlip | None:
    """The dataset's crop+flip when it takes one, unless the config turns it off."""
    wanted = data.augmentable if cfg.augment is None else cfg.augment and data.augmentable
    return CropFlip(data.crop_padding, data.flip) if wanted else None


def run_training(cfg: TrainConfig, method: str = "train") -> dict:
    """Train ``cfg.model`` on all of ``cfg.dataset``; returns the run's summary."""
    cfg.validate()
    data = load_data(cfg)  # bad data dirs fail here, before any run directory exists
    with RunDir.create(cfg.out, method, cfg.to_dict(), cfg.dataset, cfg.model, name=cfg.name,
                       wandb_mode=cfg.wandb, wandb_project=cfg.wandb_project) as run:
        with run.phase("train"):
            result = train(cfg, data, augment=use_augmentation(cfg, data), on_epoch=run.log_metrics,
                           storage=run.path / "ray")
        torch.save({k: v.cpu() for k, v in result.model.state_dict().items()}, run.path / "model.pt")
        with run.phase("eval"):
            final = evaluate(result.model, data.test.to(result.device), result.device)
        return run.finish(test_acc=final["acc"], test_loss=final["loss"], workers=cfg.workers,
                          epochs=cfg.epochs, device=str(result.device), restarts=result.restarts)
