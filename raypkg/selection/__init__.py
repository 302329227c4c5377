"""Gradient-based coreset selection: closed-form last-layer gradient embeddings, facility
location, the selectors (uniform, grand, glister, gradmatch, craig) behind one registry
and ``select``, and the DeepCore-style pipeline (``pipeline``).

Methods: GraNd (Paul, Ganguli, Dziugaite, "Deep learning on a data diet", NeurIPS 2021),
Glister (Killamsetty et al., AAAI 2021), GradMatch (Killamsetty et al., ICML 2021: OMP),
CRAIG (Mirzasoleiman, Bilmes, Leskovec, ICML 2020: facility location with cluster-size
weights), as benchmarked in DeepCore (Guo, Zhao, Bai, DEXA 2022).

The registry's names are imported on first use, so that `effray --help` needs no torch.
"""

_REGISTRY_NAMES = ("SELECTORS", "Compute", "Keep", "Picks", "Scoring", "SelectionContext", "SelectionResult",
                   "register_selector", "select")


def __getattr__(name):
    if name in _REGISTRY_NAMES:
        from raypkg.selection import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'raypkg.selection' has no attribute {name!r}")
