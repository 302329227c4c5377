"""Sparse training: dynamic sparse training (SET/RigL-ITOP) and adaptive gradient correction
(AGC/AGENT), all as engine callbacks, on the random masks of ``raypkg.sparsity.masks`` (shared
with LiPT)."""
