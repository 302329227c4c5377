"""The coreset method's recipes: `effray select` (warm up, select) and `effray run coreset`
(warm up, select, train on the subset), made of the selection library's stages
(``raypkg.selection.stages``), and its frontier rows (uniform, DeepCore, CCS, CORDS's adaptive)."""

from __future__ import annotations

from raypkg.errors import UsageError
from raypkg.recipe import BenchCase, Recipe
from raypkg.recipe_registry import register, register_case
from raypkg.selection.config import CoresetConfig, SelectConfig
from raypkg.selection.stages import SELECTION_METRICS, check_coreset, choose_subset, train_subset, warm_up, without_ccs

SELECT = register(Recipe("select", SelectConfig, [warm_up, choose_subset], label=lambda cfg: f"select-{cfg.selection}",
                         check=check_coreset, metrics=()))
CORESET = register(Recipe("coreset", CoresetConfig, [warm_up, choose_subset, train_subset],
                          label=lambda cfg: f"coreset-{cfg.selection}", check=check_coreset,
                          metrics=SELECTION_METRICS, tune_phases=("pretrain", "selection")))


def coreset_point(method: str, fraction: float, s: dict, common: dict, n: int | None) -> CoresetConfig:
    """A subset of ``fraction``: RS2 or uniform, or DeepCore-style after --pretrain-epochs of
    warm-up (GraNd: --repeats of them). ``NAME:KEY=VALUE;...`` (`bench coreset`'s methods): a
    KEY that is a config field (``weighting``, ``weight_cap``) sets it, any other is a selector
    option; the method's defaults fill the rest."""
    import yaml

    from raypkg.engine.config import config_fields
    from raypkg.selection.registry import get_selector

    name, _, rest = (part.strip() for part in method.partition(":"))
    name, stratify = without_ccs(name)
    fields = dict(common, weighting=None, weight_cap=None, cache=False, selection=name, fraction=fraction, options={},
                  stratify=stratify)
    for pair in filter(None, rest.split(";")):
        key, sep, value = (part.strip() for part in pair.partition("="))
        if not sep:
            raise UsageError(f"method options take KEY=VALUE, got {pair!r} in {method!r}")
        try:
            (fields if key in config_fields(CoresetConfig) else fields["options"])[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise UsageError(f"method option {pair!r} in {method!r}: the value is not valid YAML "
                             f"({str(e).splitlines()[0]})") from None
    selector = get_selector(name)
    if selector.needs_model:
        fields.update(pretrain_epochs=s["pretrain_epochs"], repeats=s["repeats"] if selector.uses_repeats else None)
    return CoresetConfig(**fields)


def coreset_examples(cfg: CoresetConfig, summary: dict, n: int, per_example) -> tuple[int, float]:
    """DeepCore's warm-ups (none for uniform; SVP's at its proxy's FLOPs), then the subset,
    dense (less dropped ragged batches)."""
    from raypkg.engine.plans import trained_examples

    epoch_of = lambda size: trained_examples(size, cfg.batch_size, cfg.drop_last)  # noqa: E731
    warm = summary["pretrain_epochs"] * epoch_of(n) * summary["repeats"]
    train = cfg.epochs * epoch_of(summary["subset_size"])
    proxy = per_example(model=cfg.selection_model) if cfg.selection_model else per_example()
    return warm + train, warm * proxy + train * per_example()


register_case(BenchCase("uniform", "coreset", ("rs2", "uniform"), "fractions", coreset_point, coreset_examples))
register_case(BenchCase("deepcore", "coreset", ("grand", "glister", "craig"), "fractions", coreset_point,
                        coreset_examples, marker="^"))
# DeepCore's other selectors: the frontier runs them when --methods names them
register_case(BenchCase("deepcore", "coreset", ("el2n", "least-confidence", "entropy", "margin", "herding", "kcenter",
                                                "contextual-diversity", "facility-location", "graphcut", "logdet",
                                                "forgetting", "cal", "deepfool"),
                        "fractions", coreset_point, coreset_examples, default=False, marker="^"))
# Coverage-centric selection (CCS) of the score-based selectors: run when --methods names them
register_case(BenchCase("ccs", "coreset", ("grand-ccs", "el2n-ccs", "forgetting-ccs"), "fractions", coreset_point,
                        coreset_examples, default=False, marker="v"))


CORDS_KAPPA = 0.5  # the warm start of CORDS's warm configs (kappa)


def adaptive_point(method: str, fraction: float, s: dict, common: dict, n: int | None) -> CoresetConfig:
    """``SELECTOR-rR``: the selector every R epochs with the model being trained, after
    CORDS's warm start (``raypkg.selection.adaptive``)."""
    selection, every = method.rsplit("-r", 1)
    return CoresetConfig(**common, weighting=None, weight_cap=None, cache=False, selection=selection,
                         fraction=fraction, reselect_every=int(every), warm_start=CORDS_KAPPA)


def adaptive_examples(cfg: CoresetConfig, summary: dict, n: int, per_example) -> tuple[int, float]:
    """The warm start's full-data epochs, then the subset's (skipped epochs take no step;
    less dropped ragged batches)."""
    from raypkg.engine.plans import trained_examples

    subset_epochs = cfg.epochs - summary["warm_epochs"] - summary["skipped_epochs"]
    seen = (summary["warm_epochs"] * trained_examples(n, cfg.batch_size, cfg.drop_last)
            + subset_epochs * trained_examples(summary["subset_size"], cfg.batch_size, cfg.drop_last))
    return seen, seen * per_example()


# CORDS's adaptive GradMatch, CRAIG and Glister: the frontier runs them when --methods names them
ADAPTIVE_METHODS = tuple(f"{m}-r{r}" for r in (2, 5, 20) for m in ("gradmatch", "craig", "glister"))
register_case(BenchCase("adaptive", "coreset", ADAPTIVE_METHODS, "fractions", adaptive_point, adaptive_examples,
                        default=False))
