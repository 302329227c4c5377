"""Sparse training: masks (shared with LiPT), dynamic sparse training (SET/RigL-ITOP) and
adaptive gradient correction (AGC/AGENT), all as engine callbacks."""
