"""A plug-in module whose import raises KeyboardInterrupt (tests/test_plugins.py)."""

raise KeyboardInterrupt
