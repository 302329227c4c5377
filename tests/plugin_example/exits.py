"""A plug-in module that calls sys.exit on import."""

import sys

sys.exit("missing configuration")
