"""Sparse training as an algorithm (``raypkg.algorithms``): dense, SET/RigL-ITOP masks and
AGC as callbacks; stacked onto another method with ``--with sparse``.

Callback order (it matters): ``SparseTraining`` first, whose ``on_after_backward`` keeps
the dense, uncorrected gradient for RigL's growth, then ``AGCorrection``, which replaces
that gradient by g_new - c*g_old + c*g~ before SGD's step applies weight decay and
momentum; after the step ``SparseTraining.on_step_end`` masks weights and momentum and
updates the masks. A data plan stacked with them comes first (``raypkg.algorithms.DATA``),
and RigL's horizon follows the steps it actually takes (``SparseTraining.follow_steps``).
Free of torch at import (the callbacks load as it trains): the command line reads its settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raypkg.algorithms import MASKS, Algorithm
from raypkg.methods.sparse.config import SparseSettings

if TYPE_CHECKING:
    from raypkg.engine.callbacks import Callback


def build_callbacks(cfg) -> list[Callback]:
    """[SparseTraining if cfg.sparse] + [AGCorrection if cfg.agc], in that order."""
    from raypkg.methods.sparse.agc import AGCorrection
    from raypkg.methods.sparse.dst import SparseTraining

    callbacks: list[Callback] = []
    if cfg.sparse:
        callbacks.append(SparseTraining(cfg.density, cfg.sparse_init, cfg.seed, growth=cfg.growth, death=cfg.death,
                                        redistribution=cfg.redistribution, death_rate=cfg.death_rate,
                                        update_frequency=cfg.update_frequency, scale_init=cfg.scale_init,
                                        backend=cfg.sparse_backend))
    if cfg.agc:
        callbacks.append(AGCorrection(cfg.agc_gamma, cfg.agc_alpha, cfg.agc_sample, seed=cfg.seed,
                                      masks=callbacks[0] if cfg.sparse else None))
    return callbacks


def method_name(cfg) -> str:
    name = "dense" if not cfg.sparse else {"random": "SET-ITOP", "gradient": "RigL-ITOP",
                                          "momentum": "SNFS-ITOP"}[cfg.growth]
    return f"A-{name}" if cfg.agc else name


class SparseTrainingAlgorithm(Algorithm):
    """Sparse training on another method's training (``--with sparse``): RigL-ITOP masks by
    default, SET-ITOP with --growth random, none with --dense; --agc adds AGENT's correction.
    `effray run sparse` is its own command, on ``SparseConfig`` (the paper's schedule)."""

    name, order = "sparse", MASKS  # (AGC, a gradient correction, acts after the masks within it)
    settings = SparseSettings

    def __init__(self, cfg, run):
        self.cfg = cfg  # the config that trains: --multiplier already stretched it
        self.callbacks = build_callbacks(cfg)

    @staticmethod
    def stacked_flops(cfg, per_example):
        """Every forward pass at the masks' densities (AGC's extra passes are not counted)."""
        if not cfg.sparse:
            return per_example
        return lambda density=1.0, init="ERK": per_example(cfg.density, cfg.sparse_init)

    def finish(self, run, trained) -> dict:
        """Saves masks.pt and mask_updates.parquet; the final density, R_s, the masks' digest
        and the AGC coefficient."""
        from raypkg.sparsity.masks import maskable_parameters, masks_digest

        cfg, sink, notes = self.cfg, run.sink, {}
        if cfg.sparse:
            dst = self.callbacks[0]
            sink.save_state("masks.pt", dst.state_dict()["masks"])
            if dst.updates:
                sink.write_table("mask_updates.parquet", {k: [u[k] for u in dst.updates] for k in dst.updates[0]})
            notes.update(R_s=dst.exploration_rate(), mask_digest=masks_digest(dst.masks),
                         sparse_backend=cfg.sparse_backend, sparse_layers=dst.sparse_layers,
                         sparse_layer_ms=dst.sparse_timings)
            if dst.rank_digests:  # on Ray Train: each rank's masks at the last epoch's end
                notes["rank_mask_digests"] = dst.rank_digests
        params = maskable_parameters(trained.model).values()
        notes["density"] = sum(int((p != 0).sum()) for p in params) / sum(p.numel() for p in params)
        if cfg.agc:
            log = self.callbacks[-1].c_log
            notes["agc_c"] = log[-1]["agc_c"] if log else None
        notes.update(method_variant=method_name(cfg), workers=cfg.workers, epochs=cfg.epochs)
        return notes
