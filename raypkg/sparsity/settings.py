"""``MaskSettings``: a random sparse mask's settings (``raypkg.sparsity.masks``), free of torch so
that building the command line stays fast; sparse training's config and LiPT's shard models
share them."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from raypkg.engine.config import setting
from raypkg.errors import UsageError, choose
from raypkg.models.density import SPARSE_INITS, check_density

SPARSE_BACKENDS = ("masked", "sparse", "auto")


@dataclass
class MaskSettings:
    """A random mask (``raypkg.sparsity.masks``): its overall ``density``, how that splits
    into layer densities (``sparse_init``) and whether the masked init is rescaled."""

    density: float = setting(0.05, "Overall density of the masked weights, in (0, 1].")
    sparse_init: str = setting("ERK", "Initial layer densities.", choices=SPARSE_INITS)
    scale_init: bool = setting(True, "Scale each masked layer's initial weights by 1/sqrt(its density) "
                                     "(sparse-aware init, Evci et al. 2022; keeps the fan-in variance).")
    sparse_backend: str = setting("masked", "How masked layers compute: masked (dense arithmetic with the zeros, "
                                  "bit-for-bit repeatable), sparse (SparseProp's CPU kernels for every Linear/Conv2d "
                                  "at least 80% sparse; the same math to ~1e-6), auto (of those, the ones timed "
                                  "faster on one real batch at the start; masked on a GPU).",
                                  choices=SPARSE_BACKENDS)

    def check_mask_settings(self) -> None:
        check_density(self.density)
        choose("sparse init", self.sparse_init, SPARSE_INITS)
        choose("sparse backend", self.sparse_backend, SPARSE_BACKENDS)
        if self.sparse_backend == "sparse" and importlib.util.find_spec("sparseprop") is None:
            raise UsageError("--sparse-backend sparse needs SparseProp's kernels (pip install sparseprop)")
