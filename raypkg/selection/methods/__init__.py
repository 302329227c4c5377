"""The selection methods; each module registers one selector with ``@register_selector``."""

from raypkg.selection.methods import (  # noqa: F401
    cal,
    craig,
    deepfool,
    el2n,
    forgetting,
    glister,
    gradmatch,
    grand,
    herding,
    kcenter,
    rs2,
    submodular,
    uncertainty,
    uniform,
)
