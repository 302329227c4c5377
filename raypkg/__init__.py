"""effray: a Ray platform for efficient-training research.

    import raypkg
    result = raypkg.run("lipt", dataset="digits", epochs=5)   # or raypkg.train(...)

(``raypkg.api``; importing the package loads neither torch nor Ray.)
"""

from raypkg.api import Result, run, train

__version__ = "0.1.0"
__all__ = ["Result", "run", "train"]
