"""Where a stored result came from: written into every bench table's Parquet metadata, and
rendered under every table the docs show (``raypkg.tracking.markdown``)."""

from __future__ import annotations

import datetime
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

KEY = b"effray"  # the Parquet schema metadata key that holds the provenance (JSON)


def commit() -> str:
    """The checkout's commit (``+dirty`` with uncommitted changes to tracked files), or ``unknown``."""
    repo = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def provenance(threads: int) -> dict[str, str]:
    """The date, commit, command (led by any ISA cap set in the environment), CPU (model and
    the flags that decide bf16 and AVX-512), torch's version and threads of the result being
    written."""
    import torch

    from raypkg.engine.execution import BF16_CPU_FLAGS, ISA_CAPS, cpu_flags, cpu_model

    flags = cpu_flags()  # less those above an ISA cap, which the command then names
    shown = sorted(f for f in flags if f in BF16_CPU_FLAGS or f in ("avx512f", "avx2", "amx_tile"))
    caps = [f"{name}={shlex.quote(os.environ[name])}" for name in ISA_CAPS if os.environ.get(name)]
    return {"date": datetime.date.today().isoformat(), "commit": commit(),
            "command": " ".join([*caps, shlex.join(["effray", *sys.argv[1:]])]), "cpu": cpu_model(),
            "cpu_flags": ",".join(shown) or "none", "torch": torch.__version__, "threads": str(threads),
            "device": "cuda: " + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}


def executions() -> str:
    """The executions this process's runs trained at (``model precision/memory_format``,
    sorted, ``; ``-joined), or ``""`` before any: what a result written now was measured at."""
    from raypkg.engine.execution import TRAINED_AT

    return "; ".join(sorted(TRAINED_AT))


def read_provenance(path: str | Path) -> dict[str, str]:
    """The provenance stored with a Parquet table (empty for a table written without one)."""
    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata[KEY]) if KEY in metadata else {}
