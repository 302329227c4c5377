"""`effray run sparse`: dense, SET/RigL-ITOP and AGC training through the engine's train().

Callback order (it matters): ``SparseTraining`` first, whose ``on_after_backward`` keeps
the dense, uncorrected gradient for RigL's growth, then ``AGCorrection``, which replaces
that gradient by g_new - c*g_old + c*g~ before SGD's step applies weight decay and
momentum; after the step ``SparseTraining.on_step_end`` masks weights and momentum and
updates the masks.
"""

from __future__ import annotations

import torch

from raypkg.engine.callbacks import Callback
from raypkg.sparse.agc import AGCorrection
from raypkg.sparse.config import SparseConfig
from raypkg.sparse.dst import SparseTraining


def build_callbacks(cfg: SparseConfig) -> list[Callback]:
    """[SparseTraining if cfg.sparse] + [AGCorrection if cfg.agc], in that order."""
    callbacks: list[Callback] = []
    if cfg.sparse:
        callbacks.append(SparseTraining(cfg.density, cfg.sparse_init, cfg.seed, growth=cfg.growth, death=cfg.death,
                                        redistribution=cfg.redistribution, death_rate=cfg.death_rate,
                                        update_frequency=cfg.update_frequency, scale_init=cfg.scale_init))
    if cfg.agc:
        callbacks.append(AGCorrection(cfg.agc_gamma, cfg.agc_alpha, cfg.agc_sample, seed=cfg.seed))
    return callbacks


def method_name(cfg: SparseConfig) -> str:
    name = "dense" if not cfg.sparse else {"random": "SET-ITOP", "gradient": "RigL-ITOP",
                                          "momentum": "SNFS-ITOP"}[cfg.growth]
    return f"A-{name}" if cfg.agc else name


def check_against_data(cfg: SparseConfig, data) -> None:
    from raypkg.errors import UsageError

    if cfg.agc_sample is not None and cfg.agc_sample > len(data.train):
        raise UsageError(f"--agc-sample {cfg.agc_sample} exceeds the training set ({len(data.train)} examples)")


def run_sparse(cfg: SparseConfig) -> dict:
    """Validate, load data, train in a RunDir (metrics.parquet with density, R_s, agc_c;
    mask_updates.parquet; summary.json with the final density, R_s and test_acc)."""
    from raypkg.engine.loop import evaluate
    from raypkg.engine.runner import load_data, use_augmentation
    from raypkg.engine.trainer import train
    from raypkg.sparse.masks import maskable_parameters
    from raypkg.tracking import RunDir

    cfg.validate()
    data = load_data(cfg)
    check_against_data(cfg, data)
    run_cfg = cfg.stretched()
    callbacks = build_callbacks(run_cfg)
    with RunDir.create(cfg.out, "sparse", cfg.to_dict(), cfg.dataset, cfg.model, name=cfg.name,
                       wandb_mode=cfg.wandb, wandb_project=cfg.wandb_project) as run:
        with run.phase("train"):
            result = train(run_cfg, data, augment=use_augmentation(cfg, data), callbacks=callbacks,
                           on_epoch=run.log_metrics, storage=run.path / "ray", desc=method_name(cfg))
        torch.save({k: v.cpu() for k, v in result.model.state_dict().items()}, run.path / "model.pt")
        extra = {}
        if cfg.sparse:
            dst = callbacks[0]
            torch.save(dst.state_dict()["masks"], run.path / "masks.pt")
            if dst.updates:
                run.write_table("mask_updates.parquet", {k: [u[k] for u in dst.updates] for k in dst.updates[0]})
            extra["R_s"] = dst.exploration_rate()
        params = maskable_parameters(result.model).values()
        extra["density"] = sum(int((p != 0).sum()) for p in params) / sum(p.numel() for p in params)
        if cfg.agc:
            extra["agc_c"] = callbacks[-1].c_log[-1]["agc_c"] if callbacks[-1].c_log else None
        with run.phase("eval"):
            final = evaluate(result.model, data.test.to(result.device), result.device)
        return run.finish(test_acc=final["acc"], test_loss=final["loss"], method_variant=method_name(cfg),
                          workers=cfg.workers, epochs=run_cfg.epochs, device=str(result.device),
                          restarts=result.restarts, **extra)
