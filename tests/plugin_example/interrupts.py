"""A plug-in module whose import raises KeyboardInterrupt (tests/unit/test_plugins.py)."""

raise KeyboardInterrupt
