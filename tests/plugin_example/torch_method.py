"""A method module that imports torch at module level (issue 81: noted, not refused)."""

import torch  # noqa: F401

from plugin_example.methods import Hardest as TorchHardest  # noqa: F401
