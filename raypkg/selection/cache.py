"""The selection cache: warm-up checkpoints and selections, keyed by content hashes.

    <out>/.cache/warmup/<key>.pt          state_dict + seconds it took (+ a warm-up record: Forgetting's counts)
    <out>/.cache/selection/<key>.parquet  index, position, weight, score, label
    <out>/.cache/selection/<key>.json     seconds it took, info

A warm-up's key hashes everything that determines its weights (dataset and its options,
model, seed, the warm-up's training settings, device type). A selection's key hashes
the digests of the warm-up checkpoints it used (their tensor bytes) and the method's
config (method, size, balance, embedding, options, seed). A rerun of the same config
therefore skips warm-up and selection; ``--no-cache`` recomputes (and refreshes) both.
Files are written to a temporary name and renamed, so a reader never sees half a file.
Each file gets a ``<file>.sum`` (size and BLAKE2b digest) when written; a cached file that
does not match it is refused with one line naming it (``--no-cache`` recomputes).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from raypkg.checksums import verify_sidecar, write_sidecar
from raypkg.paths import atomic_write
from raypkg.selection.registry import SelectionResult
from raypkg.tracking.run import to_plain, write_parquet

CACHE_VERSION = 1


def digest(obj: Any) -> str:
    """A short stable hash of a JSON-able object."""
    text = json.dumps(to_plain(obj), sort_keys=True, default=str)
    return hashlib.sha256(f"v{CACHE_VERSION}:{text}".encode()).hexdigest()[:24]


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """Hash of a state_dict's names, shapes, dtypes and bytes (0-dim and integer buffers,
    e.g. batch norm's ``num_batches_tracked``, included: they are flattened to 1-d first,
    as ``Tensor.view(dtype)`` refuses a 0-dim tensor of a wider dtype)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


class SelectionCache:
    """Pre-trained models and selections under ``root``; ``enabled=False`` neither reads
    nor writes (``--no-cache``, Tune trials), the entries are still computed."""

    def __init__(self, root: str | Path, enabled: bool = True):
        self.root = Path(root)
        self.enabled = enabled

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / f"{key}{suffix}"

    def _atomic(self, path: Path, write) -> None:
        if not self.enabled:
            return
        atomic_write(path, write)
        write_sidecar(path)

    @staticmethod
    def _verified(path: Path) -> Path:
        verify_sidecar(path, "the selection cache (run again with --no-cache to recompute it)")
        return path

    # -- warm-ups ---------------------------------------------------------------------
    def load_warmup(self, key: str) -> dict | None:
        path = self._path("warmup", key, ".pt")
        if not (self.enabled and path.is_file()):
            return None
        return torch.load(self._verified(path), map_location="cpu", weights_only=False)

    def save_warmup(self, key: str, state: dict[str, torch.Tensor], seconds: float,
                    record: dict[str, torch.Tensor] | None = None) -> dict:
        """``record``: what a selector's warm-up callback kept (Forgetting's counts), saved
        beside the weights; entries written without one still load (``"record"`` absent)."""
        entry = {"state_dict": {k: v.detach().cpu() for k, v in state.items()}, "seconds": seconds}
        entry["digest"] = state_digest(entry["state_dict"])
        if record is not None:
            entry["record"] = {k: v.detach().cpu() for k, v in record.items()}
        self._atomic(self._path("warmup", key, ".pt"), lambda p: torch.save(entry, p))
        return entry

    # -- selections -------------------------------------------------------------------
    def load_selection(self, key: str) -> tuple[SelectionResult, dict] | None:
        table = self._path("selection", key, ".parquet")
        meta = self._path("selection", key, ".json")
        if not (self.enabled and table.is_file() and meta.is_file()):
            return None
        info = json.loads(self._verified(meta).read_text())
        frame = pd.read_parquet(self._verified(table))
        scores = torch.tensor(frame["score"].to_numpy(), dtype=torch.float64)
        all_path = self._path("selection", key, ".scores.parquet")
        all_scores = (torch.tensor(pd.read_parquet(self._verified(all_path))["score"].to_numpy(), dtype=torch.float64)
                      if all_path.is_file() else None)
        result = SelectionResult(
            info["method"], torch.tensor(frame["index"].to_numpy(), dtype=torch.long),
            torch.tensor(frame["position"].to_numpy(), dtype=torch.long),
            torch.tensor(frame["weight"].to_numpy(), dtype=torch.float64),
            torch.tensor(frame["label"].to_numpy(), dtype=torch.long),
            None if bool(torch.isnan(scores).all()) else scores, all_scores, info.get("info", {}))
        return result, info

    def save_selection(self, key: str, result: SelectionResult, seconds: float) -> None:
        table = {**result.table(), "position": result.positions.numpy()}
        if result.all_scores is not None:
            self._atomic(self._path("selection", key, ".scores.parquet"),
                         lambda p: write_parquet(p, {"score": result.all_scores.numpy()}))
        self._atomic(self._path("selection", key, ".parquet"), lambda p: write_parquet(p, table))
        meta = {"method": result.method, "seconds": seconds, "info": to_plain(result.info)}
        self._atomic(self._path("selection", key, ".json"), lambda p: p.write_text(json.dumps(meta)))
