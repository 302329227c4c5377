"""effray: a Ray platform for efficient-training research."""

__version__ = "0.1.0"
