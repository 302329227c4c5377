"""A model and dataset package outside effray, used by tests/unit/test_plugins.py by import
path (``plugin_example.models:bn_net``); tests/ is on ``sys.path`` under pytest."""
