"""The selection methods; each module registers one selector with ``@register_selector``."""

from raypkg.selection.methods import craig, glister, gradmatch, grand, rs2, uniform  # noqa: F401
