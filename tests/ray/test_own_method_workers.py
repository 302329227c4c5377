"""A method defined outside effray (issue 81) on Ray Train workers: it trains on two of them
in the session's Ray, and a module its workers cannot import fails the run in one line that
names the module and what to do (``raypkg.plugins.import_on_worker``). In-process and the
refusals: tests/unit/test_own_method.py."""

from __future__ import annotations

import os
import socket

import pytest

import raypkg
from raypkg.errors import RunFailed
from raypkg.plugins import WORKER_FIX

pytestmark = pytest.mark.ray

TINY = {"dataset": "digits", "model": "mlp", "epochs": 1, "workers": 2, "progress": False, "wandb": "disabled"}


def test_a_plugin_method_trains_on_two_workers_and_fails_in_one_line_where_they_cannot_import_it(
        ray_session, tmp_path, monkeypatch):
    """The session's Ray has tests/ on its workers' PYTHONPATH (tests/conftest.py): they import
    plugin_example.methods, and not a module in ``tmp_path`` that only this process has on
    its path (as a cluster's node without the plug-in installed)."""
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # resolving a plug-in exports its directory
    own = raypkg.run("plugin_example.methods:Hardest", save=False, keep=0.5, **TINY)
    assert len(own.summary["nodes"]["train"]) == 2  # a node per rank
    assert own.summary["keep"] == 0.5 and own.summary["test_acc"] > 0.2
    (tmp_path / "worker_gone_method.py").write_text("from plugin_example.methods import Hardest  # noqa: F401\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RunFailed) as failed:
        raypkg.run("worker_gone_method:Hardest", save=False, max_failures=0, **TINY)
    assert str(failed.value) == (f"method 'worker_gone_method:Hardest': a Ray worker on {socket.gethostname()} cannot "
                                 f"import 'worker_gone_method' (No module named 'worker_gone_method'): {WORKER_FIX}")
