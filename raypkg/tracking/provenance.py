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
DRAFT_ENV = "EFFRAY_DRAFT"  # =1: write a table from a tree whose raypkg/ differs, marked a draft
CODE = "raypkg/"  # a difference here is code a result's run may have run


def _git(*args: str) -> str:
    """git's output for ``args`` in the checkout this package runs from."""
    repo = Path(__file__).resolve().parents[2]
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10,
                          check=True).stdout


def dirty_files() -> list[str] | None:
    """The paths where the checkout differs from its commit, sorted: every tracked file with
    changes (``git status --porcelain``, both sides of a rename), and new files under
    raypkg/ that git does not ignore (code a run would import). None outside a git checkout."""
    try:
        entries = _git("status", "--porcelain", "-z", "--untracked-files=no").split("\0")
        new = _git("ls-files", "--others", "--exclude-standard", "-z", "--", CODE).split("\0")
    except (OSError, subprocess.SubprocessError):
        return None
    paths, renamed = {path for path in new if path}, False
    for entry in entries:
        if renamed:  # the entry after a rename's or copy's is the path it came from
            paths.add(entry)
            renamed = False
        elif entry:
            paths.add(entry[3:])
            renamed = "R" in entry[:2] or "C" in entry[:2]
    return sorted(paths)


def commit(dirty: list[str] | None = None) -> str:
    """The checkout's commit (``+dirty`` where ``dirty_files`` finds differences), or ``unknown``."""
    try:
        head = _git("rev-parse", "--short", "HEAD").strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    dirty = dirty_files() if dirty is None else dirty
    return head + ("+dirty" if dirty else "")


def is_draft() -> bool:
    """Whether the result being written is marked a draft (``EFFRAY_DRAFT=1``)."""
    return os.environ.get(DRAFT_ENV, "") not in ("", "0")


def check_rebuildable(dirty: list[str] | None, draft: bool) -> None:
    """Refuse, before any work, to store a result from a tree whose raypkg/ differs from its
    commit: no one could rebuild what ran. A draft (``EFFRAY_DRAFT=1``) is let through and says so."""
    from raypkg.errors import UsageError

    code = [path for path in dirty or () if path.startswith(CODE)]
    if code and not draft:
        shown = ", ".join(code[:3]) + (f" and {len(code) - 3} more" if len(code) > 3 else "")
        raise UsageError(f"the checkout's raypkg/ differs from its commit ({shown}), so no one could rebuild "
                         f"this result: commit the change first, or set {DRAFT_ENV}=1 to write a draft table")


def provenance(threads: int) -> dict:
    """The date, commit, command (led by any ISA cap set in the environment), CPU (model and
    the flags that decide bf16 and AVX-512), torch's version and threads of the result being
    written; with a dirty tree, the files that differ (``dirty_files``), and ``draft`` when it
    is one. Refuses a tree whose raypkg/ differs unless a draft (``check_rebuildable``): call
    it before the work whose result it describes."""
    import torch

    from raypkg.engine.execution import cpu_model

    dirty, draft = dirty_files(), is_draft()
    check_rebuildable(dirty, draft)
    source = {"date": datetime.date.today().isoformat(), "commit": commit(dirty),
              "command": " ".join([*isa_caps(), shlex.join(["effray", *sys.argv[1:]])]), "cpu": cpu_model(),
              "cpu_flags": shown_cpu_flags(), "torch": torch.__version__, "threads": str(threads),
              "device": "cuda: " + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    if dirty:
        source["dirty_files"] = dirty
    if draft:
        source["draft"] = f"{DRAFT_ENV}={os.environ[DRAFT_ENV]}"
    return source


def shown_cpu_flags() -> str:
    """The CPU flags that decide bf16 and AVX-512 (``avx2,avx512_bf16,avx512f``), less those above an
    ISA cap (``isa_caps`` names it); ``none`` where there are none."""
    from raypkg.engine.execution import BF16_CPU_FLAGS, cpu_flags

    return ",".join(sorted(f for f in cpu_flags() if f in BF16_CPU_FLAGS or f in ("avx512f", "avx2", "amx_tile"))) \
        or "none"


def isa_caps() -> list[str]:
    """The ISA caps set in the environment, ``NAME=VALUE`` each (``ONEDNN_MAX_CPU_ISA=AVX2``)."""
    from raypkg.engine.execution import ISA_CAPS

    return [f"{name}={shlex.quote(os.environ[name])}" for name in ISA_CAPS if os.environ.get(name)]


def machine() -> str:
    """The clock a point is timed on, as the frontier's store records it with each point: the CPU's
    model, its generation (``/proc/cpuinfo``'s family and model numbers: two CPUs of one model name
    can be years apart), the flags that decide bf16 and AVX-512 and any ISA cap, e.g. ``AMD EPYC
    (family 25 model 17; avx2,avx512_bf16,avx512f)``; where torch has a GPU, the GPU that trains
    and the host's model name (``cuda: NVIDIA H200 on AMD EPYC``: a lent card's host may change
    between calls). Two points' seconds are on one clock only where this is the same."""
    import torch

    from raypkg.engine.execution import cpu_generation, cpu_model

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name()} on {cpu_model()}"
    parts = [cpu_generation(), shown_cpu_flags(), " ".join(isa_caps())]
    return f"{cpu_model()} ({'; '.join(p for p in parts if p)})"


def executions() -> str:
    """The executions this process's runs trained at (``model precision/memory_format``,
    sorted, ``; ``-joined), or ``""`` before any: what a result written now was measured at."""
    from raypkg.engine.execution import TRAINED_AT

    return "; ".join(sorted(TRAINED_AT))


def read_provenance(path: str | Path) -> dict[str, str]:
    """The provenance stored with a Parquet table (empty for a table written without one)."""
    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata[KEY]) if KEY in metadata else {}


def code_identity() -> dict:
    """The code a point is run by, as the frontier's store records it with each point: the
    checkout's ``commit`` (``+dirty`` where it differs), ``code``: the git tree of raypkg/ as it
    is on disk, what decides whether two runs ran the same code (the same files give the same
    tree, committed or not; a commit that changes only docs keeps it), and ``draft``
    (``EFFRAY_DRAFT``). ``unknown`` outside a git checkout."""
    import tempfile

    repo = Path(__file__).resolve().parents[2]
    try:
        with tempfile.TemporaryDirectory() as scratch:  # a scratch index: the checkout's own is not touched
            env = {**os.environ, "GIT_INDEX_FILE": os.path.join(scratch, "index")}
            for args in (["read-tree", "HEAD"], ["add", "--all", "--", CODE]):
                subprocess.run(["git", "-C", str(repo), *args], env=env, capture_output=True, timeout=30, check=True)
            tree = subprocess.run(["git", "-C", str(repo), "write-tree", f"--prefix={CODE}"], env=env,
                                  capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "code": "unknown", "draft": is_draft()}
    return {"commit": commit(), "code": tree[:12], "draft": is_draft()}
