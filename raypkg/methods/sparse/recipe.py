"""The sparse-training recipe (`effray run sparse`): dense, SET/RigL-ITOP and AGC training,
its algorithm (``raypkg.methods.sparse.algorithm``) alone on the engine's training."""

from __future__ import annotations

from raypkg.algorithms import train_stack
from raypkg.errors import UsageError
from raypkg.methods.sparse.algorithm import SparseTrainingAlgorithm, method_name
from raypkg.methods.sparse.config import AGC_SETTINGS, MASK_SETTINGS, SparseConfig
from raypkg.recipe import EPOCH_METRICS, BenchCase, Recipe, Run
from raypkg.recipe_registry import register, register_case
from raypkg.sparsity.masks import check_layers_keep_weights


def check_against_data(cfg: SparseConfig, data) -> None:
    """The masks keep a weight in every layer; AGC's sample fits the training set."""
    if cfg.sparse:
        check_layers_keep_weights(cfg, data)
    if cfg.agc_sample is not None and cfg.agc_sample > len(data.train):
        raise UsageError(f"--agc-sample {cfg.agc_sample} exceeds the training set ({len(data.train)} examples)")


def train_sparse(run: Run) -> None:
    """Train with the masks and AGC (``multiplier`` times the epochs); saves masks.pt and
    mask_updates.parquet; notes the final density, R_s, the masks' digest and AGC coefficient."""
    train_stack(run, lambda cfg: SparseTrainingAlgorithm(cfg, run), desc=method_name(run.cfg))


SPARSE = register(Recipe("sparse", SparseConfig, [train_sparse], check=check_against_data,
                         metrics=EPOCH_METRICS + ("density", "R_s", "mask_updates", "agc_c", "agc_c_hat",
                                                  "agc_snapshot_s")))


# `bench sparse`'s methods: name -> (sparse, growth, agc); the frontier runs the sparse ones in lower case
# (rigl-itop and a-rigl-itop by default, set-itop and a-set-itop when --methods names them).
SPARSE_METHODS = {
    "dense": (False, "random", False),
    "SET-ITOP": (True, "random", False),
    "RigL-ITOP": (True, "gradient", False),
    "A-SET-ITOP": (True, "random", True),
    "A-RigL-ITOP": (True, "gradient", True),
}


def sparse_point(method: str, density: float, s: dict, common: dict, n: int | None) -> SparseConfig:
    """A method of SPARSE_METHODS (any case) at ``density``: SET-ITOP or RigL-ITOP, their
    versions with adaptive gradient correction (A-), or dense; on the auto sparse backend
    unless ``common`` names one."""
    sparse, growth, agc = {name.lower(): v for name, v in SPARSE_METHODS.items()}[method.lower()]
    sample = s["agc_sample"] and min(s["agc_sample"], n or s["agc_sample"])
    fields = {"sparse_backend": "auto", **common, "sparse": sparse, "density": density, "growth": growth,
              "agc": agc, "update_frequency": s["update_frequency"], "agc_sample": sample}
    idle = (() if sparse else MASK_SETTINGS) + (() if agc else AGC_SETTINGS)  # left at their defaults
    return SparseConfig(**{k: v for k, v in fields.items() if k not in idle})


def sparse_examples(cfg: SparseConfig, summary: dict, n: int, per_example) -> tuple[int, float]:
    """Every epoch over the training set at the masks' densities; AGC also forwards every
    batch again at the snapshot (g_old) and the snapshot gradient's sample each epoch."""
    from raypkg.engine.plans import trained_examples

    seen = cfg.epochs * trained_examples(n, cfg.batch_size, cfg.drop_last)
    agc = seen + cfg.epochs * (cfg.agc_sample or n) if cfg.agc else 0
    return seen, (seen + agc) * per_example(cfg.density, cfg.sparse_init)


# The AGC claim (Lei et al. 2024): the target in <= 70% of the plain method's epochs at <= 1.5x its time per epoch.
EPOCH_RATIO_TARGET, TIME_RATIO_TARGET = 0.7, 1.5


def epochs_to(accuracies: list[float], target: float) -> int | None:
    """1-based epoch at which the test accuracy first reaches ``target`` (None: never)."""
    return next((i + 1 for i, acc in enumerate(accuracies) if acc >= target), None)


def agc_vs_plain(run: dict, plain: dict, target: float, target_of_dense: float) -> dict:
    """An AGC run against its plain method's (each: per-epoch ``acc`` and ``epoch_s``): the
    time per epoch and the epochs to ``target`` as ratios, whether that meets the claim, and
    the epochs to a target every density can reach (``target_of_dense`` x the plain best)."""
    import statistics

    out = {"time_vs_plain": statistics.median(run["epoch_s"]) / statistics.median(plain["epoch_s"]),
           "pair_target": target_of_dense * max(plain["acc"])}
    out["epochs_to_pair_target"] = epochs_to(run["acc"], out["pair_target"])
    out["plain_epochs_to_pair_target"] = epochs_to(plain["acc"], out["pair_target"])
    ours, theirs = epochs_to(run["acc"], target), epochs_to(plain["acc"], target)
    if ours is not None and theirs is not None:
        out["epochs_vs_plain"] = ours / theirs
        out["meets_paper_target"] = bool(out["epochs_vs_plain"] <= EPOCH_RATIO_TARGET
                                         and out["time_vs_plain"] <= TIME_RATIO_TARGET)
    return out


register_case(BenchCase("sparse", "sparse", ("rigl-itop", "a-rigl-itop"), "densities", sparse_point, sparse_examples,
                        marker="v"))
register_case(BenchCase("sparse", "sparse", ("set-itop", "a-set-itop"), "densities", sparse_point, sparse_examples,
                        default=False, marker="v"))
