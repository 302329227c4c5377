"""`effray train`: full-data training, in-process or on Ray Train, tracked in a run dir."""

from __future__ import annotations

import torch

from raypkg.data.augment import CropFlip
from raypkg.data.registry import load_dataset
from raypkg.engine.config import TrainConfig
from raypkg.engine.loop import evaluate, fit, pick_device, seed_everything
from raypkg.models.registry import build_model
from raypkg.tracking import RunDir


def load_data(cfg: TrainConfig):
    return load_dataset(cfg.dataset, data_dir=cfg.data_dir, download=cfg.download, seed=cfg.seed,
                        train_size=cfg.train_size, test_size=cfg.test_size, flat=cfg.flat, normalize=cfg.normalize,
                        image_size=cfg.image_size, num_classes=cfg.num_classes, shape=cfg.shape)


def use_augmentation(cfg: TrainConfig, data) -> CropFlip | None:
    """The dataset's crop+flip when it takes one, unless the config turns it off."""
    wanted = data.augmentable if cfg.augment is None else cfg.augment and data.augmentable
    return CropFlip(data.crop_padding, data.flip) if wanted else None


def run_training(cfg: TrainConfig, method: str = "train") -> dict:
    """Train ``cfg.model`` on all of ``cfg.dataset``; returns the run's summary."""
    cfg.validate()
    data = load_data(cfg)  # bad data dirs fail here, before any run directory exists
    augment = use_augmentation(cfg, data)
    with RunDir.create(cfg.out, method, cfg.to_dict(), cfg.dataset, cfg.model, name=cfg.name,
                       wandb_mode=cfg.wandb, wandb_project=cfg.wandb_project) as run:
        if cfg.workers == 0:
            device = pick_device(cfg.use_gpu)
            seed_everything(cfg.seed)
            model = build_model(cfg.model, data.input_shape, data.num_classes).to(device)
            train, test = data.train.to(device), data.test.to(device)
            with run.phase("train"):
                fit(model, train, test, cfg, device=device, augment=augment, on_epoch=run.log_metrics)
            state = model.state_dict()
        else:
            from raypkg.cluster import connect_ray
            from raypkg.engine.ray_train import fit_on_ray_train

            connect_ray()
            with run.phase("train"):
                state, history = fit_on_ray_train(cfg, data, run.path / "ray", augment)
            for row in history:
                run.log_metrics(row)
            model = build_model(cfg.model, data.input_shape, data.num_classes)
            model.load_state_dict(state)
            device = torch.device("cpu")
            test = data.test
        torch.save({k: v.cpu() for k, v in state.items()}, run.path / "model.pt")
        with run.phase("eval"):
            final = evaluate(model, test, device)
        return run.finish(test_acc=final["acc"], test_loss=final["loss"], workers=cfg.workers,
                          epochs=cfg.epochs, device=str(device))
