"""effray: a Ray platform for efficient-training research.

    import raypkg
    result = raypkg.run("lipt", dataset="digits", epochs=5)   # or raypkg.train(...)

(``raypkg.api``; importing the package loads neither torch nor Ray.)
"""

import os

# Every worker's progress line is its own: Ray's log dedup merged "shard 3/10 done" and "shard 7/10
# done" into one "[repeated 8x]". Ray reads this once, when it is imported: off before anything is.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

from raypkg.api import Result, run, train  # noqa: E402 (after the environment Ray reads at import)

__version__ = "0.1.0"
__all__ = ["Result", "run", "train"]
