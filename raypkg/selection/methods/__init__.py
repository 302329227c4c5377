"""The selection methods; each module registers one selector with ``@register_selector``."""

from raypkg.selection.methods import (craig, el2n, glister, gradmatch, grand, herding, kcenter, rs2,  # noqa: F401
                                      submodular, uncertainty, uniform)
