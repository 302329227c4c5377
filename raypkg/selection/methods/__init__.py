"""The selection methods; each module registers one selector with ``@register_selector``."""

from raypkg.selection.methods import craig, glister, gradmatch, grand, uniform  # noqa: F401
