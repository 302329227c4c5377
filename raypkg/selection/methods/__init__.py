"""The selection methods; each module registers one selector with ``@register_selector``."""

from raypkg.selection.methods import (cal, craig, deepfool, el2n, forgetting, glister, gradmatch,  # noqa: F401
                                      grand, herding, kcenter, rs2, submodular, uncertainty, uniform)
