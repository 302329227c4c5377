"""Gradient-based coreset selection (selection.md): closed-form last-layer gradient
embeddings, facility location, the selectors (uniform, grand, glister, gradmatch, craig)
behind one registry and ``select``, and the DeepCore-style pipeline (``pipeline``)."""

from raypkg.selection.registry import (SELECTORS, Picks, SelectionContext, SelectionResult,  # noqa: F401
                                       register_selector, select)
