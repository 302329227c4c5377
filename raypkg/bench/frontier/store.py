"""What a frontier keeps: each finished point, written the moment it finishes, so that a
frontier killed at any time (SIGKILL of the driver, Ctrl-C, a lost node) loses only the
points that were running, and the same command runs only the points not yet stored.

The store is a folder beside the frontier's tables, ``STEM-points/`` (or ``--storage URI``,
any filesystem pyarrow opens, shared by every node of a cluster):

- ``frontier.json``: the settings every point was run with, less the seeds and methods (a
  frontier with more seeds or methods is the same frontier; with another epoch budget it is
  another, and is refused);
- ``points/ID.json``: one finished point (``raypkg.bench.frontier.points.point_id``): its row
  and what judging it later needs (its epochs' accuracies and clocks, its phases' seconds);
  written to a temporary name and renamed, so a reader never sees half of one;
- ``failed/ID.json``: a point whose run raised, with the error (run again on the next call);
- ``alone/ID.json`` and ``failed-alone/ID.json``: the same point timed again alone on its
  node (``--time-alone``), the run whose seconds its verdict compares.
"""

from __future__ import annotations

import json
import math
import os
import uuid

import pyarrow.fs as pafs

from raypkg.errors import UsageError

VARIABLE = ("seeds", "first_seed", "methods")  # settings that grow a stored frontier rather than change it
KINDS = ("points", "alone")  # a point's first run (packed beside others, or alone), and its run timed alone


def open_store(location: str):
    """(the pyarrow filesystem, the path in it) of a local folder or a URI."""
    if "://" in location:
        try:
            return pafs.FileSystem.from_uri(location)
        except Exception as e:  # pyarrow's errors name the scheme or the bucket
            raise UsageError(f"--storage {location!r} cannot be opened: {e}") from None
    return pafs.LocalFileSystem(), os.path.abspath(location)


class FrontierStore:
    """The stored points of one frontier (see the module's docstring)."""

    def __init__(self, location: str):
        # absolute: a Ray task opens it from its own working directory
        self.location = location if "://" in location else os.path.abspath(location)
        self.fs, self.root = open_store(self.location)

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def _write(self, path: str, record: dict) -> None:
        """``record`` as JSON at ``path``, atomically (a temporary name, then a rename)."""
        temporary = f"{path}.{uuid.uuid4().hex}.tmp"
        with self.fs.open_output_stream(temporary) as out:
            out.write(json.dumps(record, default=float).encode())
        self.fs.move(temporary, path)

    def _read(self, path: str) -> dict:
        with self.fs.open_input_stream(path) as stream:
            return json.loads(stream.read().decode())

    def _records(self, folder: str) -> dict[str, dict]:
        selector = pafs.FileSelector(self._path(folder), allow_not_found=True)
        return {info.base_name[:-len(".json")]: self._read(info.path) for info in self.fs.get_file_info(selector)
                if info.base_name.endswith(".json")}

    def check(self, settings: dict) -> None:
        """Refuse, in one line naming a setting that differs, a store that holds another
        frontier's points (nothing is written)."""
        stored = self.settings()
        fixed = {k: v for k, v in settings.items() if k not in VARIABLE}
        differ = sorted(k for k in set(stored) | set(fixed) if not same(stored.get(k), fixed.get(k))) if stored else []
        if differ:
            key = differ[0]
            raise UsageError(f"{self.location} holds the points of a frontier run with {key.replace('_', '-')} "
                             f"{stored.get(key)!r}, not {fixed.get(key)!r}: rerun it with that setting (only "
                             "--seeds and --methods may grow a stored frontier), or give a new --save or --storage")

    def claim(self, settings: dict) -> None:
        """Make this store the frontier of ``settings`` (``check`` it first): its folders, and
        frontier.json if it is new."""
        self.check(settings)
        for kind in KINDS:
            self.fs.create_dir(self._path(kind), recursive=True)
            self.fs.create_dir(self._path(failed_folder(kind)), recursive=True)
        if not self.settings():
            self._write(self._path("frontier.json"), {k: v for k, v in settings.items() if k not in VARIABLE})

    def cache_dir(self, kind: str = "points") -> str:
        """Where the points' shared work is cached (``raypkg.selection.cache``): the store's
        ``cache/`` folder, or for a store behind a URI a folder of this node's temp dir; the
        runs timed alone have their own (``cache-alone/``), so that the work they share is
        timed alone too, not charged the seconds it took beside other points."""
        import hashlib
        import tempfile

        folder = "cache" if kind == "points" else f"cache-{kind}"
        if isinstance(self.fs, pafs.LocalFileSystem):
            return self._path(folder)
        return os.path.join(tempfile.gettempdir(), "effray-frontier-cache",
                            hashlib.sha1(self.location.encode()).hexdigest()[:16], folder)

    def settings(self) -> dict:
        """The stored frontier's settings (empty if there is none)."""
        path = self._path("frontier.json")
        return self._read(path) if self.fs.get_file_info(path).type == pafs.FileType.File else {}

    def put(self, point: str, record: dict, kind: str = "points") -> None:
        """A finished point's run of ``kind`` (its failure record, if it had one, removed)."""
        self._write(self._path(kind, f"{point}.json"), record)
        failed = self._path(failed_folder(kind), f"{point}.json")
        if self.fs.get_file_info(failed).type == pafs.FileType.File:
            self.fs.delete_file(failed)

    def fail(self, point: str, label: str, error: str, kind: str = "points") -> None:
        self._write(self._path(failed_folder(kind), f"{point}.json"), {"label": label, "error": error})

    def _ids(self, folder: str) -> set[str]:
        selector = pafs.FileSelector(self._path(folder), allow_not_found=True)
        return {info.base_name[:-len(".json")] for info in self.fs.get_file_info(selector)
                if info.base_name.endswith(".json")}

    def ids(self, kind: str = "points") -> set[str]:
        return self._ids(kind)

    def failed_ids(self, kind: str = "points") -> set[str]:
        return self._ids(failed_folder(kind))

    def points(self, kind: str = "points") -> dict[str, dict]:
        return self._records(kind)

    def failures(self, kind: str = "points") -> dict[str, dict]:
        return self._records(failed_folder(kind))


def failed_folder(kind: str) -> str:
    return "failed" if kind == "points" else f"failed-{kind}"


def same(a, b) -> bool:
    """Equal settings, JSON's round trip aside (tuples as lists, NaN equal to NaN)."""
    a, b = json.loads(json.dumps(a, default=float)), json.loads(json.dumps(b, default=float))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b
