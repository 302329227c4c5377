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
  node (``--time-alone``), the run whose seconds its verdict compares;
- ``driver.json``: the driver running on the store (its host, pid and start), so that a
  second one is refused and ``--render`` writes beside, not over, what that one will write;
- ``broken/`` and ``stale/``: point files set aside, unreadable ones (named when found; their
  points run again) and those of other code (``--rerun-stale``).

Each point's row records the code that ran it (``commit``, ``code``, ``draft``:
``raypkg.tracking.provenance.code_identity``); a stored point of other code is not reused in
silence.
"""

from __future__ import annotations

import json
import math
import os
import uuid

import pyarrow.fs as pafs

from raypkg.errors import UsageError

VARIABLE = ("seeds", "first_seed", "methods")  # settings that grow a stored frontier rather than change it
RUN_ONLY = ("code",)  # what a run passes its points beside the settings (the code running), never a setting
JUDGING_ONLY = ("target_acc",)  # settings only judging reads: stored points are judged again with another
DERIVED = ("budgets",)  # settings derived from others (--budgets rounded to --epochs): named after those
NOT_STORED = VARIABLE + RUN_ONLY + JUDGING_ONLY
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
        if self.fs.get_file_info(self.root).type == pafs.FileType.File:
            raise UsageError(f"--storage {self.location} is a file: the points are stored in a folder; name a folder "
                             "(or leave --storage out: STEM-points beside --save)")

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
        """Every readable point file of ``folder`` (``heal`` names the others)."""
        selector = pafs.FileSelector(self._path(folder), allow_not_found=True)
        records = {}
        for info in self.fs.get_file_info(selector):
            if info.base_name.endswith(".json"):
                try:
                    records[info.base_name[:-len(".json")]] = self._read(info.path)
                except (ValueError, UnicodeDecodeError):
                    continue
        return records

    def check(self, settings: dict) -> None:
        """Refuse, in one line naming a setting that differs, a store that holds another
        frontier's points (nothing is written)."""
        stored = self.settings()
        fixed = {k: v for k, v in settings.items() if k not in NOT_STORED}
        stored = {k: v for k, v in stored.items() if k not in NOT_STORED}  # judging-only ones stored before
        differ = sorted((k for k in set(stored) | set(fixed) if not same(stored.get(k), fixed.get(k))),
                        key=lambda k: (k in DERIVED, k)) if stored else []
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
            self._write(self._path("frontier.json"), {k: v for k, v in settings.items() if k not in NOT_STORED})

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
        """The stored frontier's settings (empty if there is none); a broken frontier.json, or
        none beside stored points, refused in one line saying what to do."""
        path = self._path("frontier.json")
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            if self._ids("points") or self._ids(failed_folder("points")):
                raise UsageError(f"{path} is missing, but {self.location} holds points: its settings are unknown, so "
                                 "they cannot be reused; restore it, or give a new --save or --storage")
            return {}
        try:
            return self._read(path)
        except (ValueError, UnicodeDecodeError) as e:
            raise UsageError(f"{path} is broken ({type(e).__name__}: {e}): its points' settings are unknown; restore "
                             "it, or give a new --save or --storage") from None

    def heal(self, fix: bool = True) -> list[str]:
        """Name every point file that cannot be read and every leftover temporary file (a run
        killed mid-write), a line each; with ``fix`` (a driver's run, not ``--render``) set the
        first aside to ``broken/`` (its point runs again) and delete the second."""
        said = []
        for folder in (*KINDS, *map(failed_folder, KINDS)):
            selector = pafs.FileSelector(self._path(folder), allow_not_found=True)
            for info in self.fs.get_file_info(selector):
                if info.base_name.endswith(".tmp"):
                    if fix:
                        self.fs.delete_file(info.path)
                    said.append(f"{'removed' if fix else 'left'} {info.path}: a temporary file a killed run left")
                elif info.base_name.endswith(".json"):
                    try:
                        self._read(info.path)
                    except (ValueError, UnicodeDecodeError) as e:
                        if fix:
                            self.set_aside(folder, info.base_name[:-len(".json")], "broken")
                        said.append(f"broken point file {info.path} ({type(e).__name__}: {str(e)[:80]}): "
                                    + ("set aside to broken/, its point runs again" if fix else "not judged"))
        return said

    def set_aside(self, folder: str, point: str, why: str) -> None:
        """Move a point file of ``folder`` to ``why``/``folder``/ (broken or stale)."""
        self.fs.create_dir(self._path(why, folder), recursive=True)
        self.fs.move(self._path(folder, f"{point}.json"), self._path(why, folder, f"{point}.json"))

    def stale(self, code: str, wanted: set[str]) -> dict[tuple[str, str], str]:
        """The stored runs of the points ``wanted`` run by other code than ``code``: (kind, id)
        -> the commit that ran it (``unknown`` for points stored before they recorded it)."""
        return {(kind, point): record["row"].get("commit", "unknown") for kind in KINDS
                for point, record in self._records(kind).items()
                if point in wanted and record["row"].get("code") != code}

    def drive(self) -> None:
        """Become the store's one driver: refused in one line while another runs (on this host,
        a live pid; on another, until its driver.json is removed); ``release`` at the end."""
        import datetime
        import socket

        other = self.driver()
        if other:
            raise UsageError(f"another frontier driver runs on {self.location} ({other}): wait for it to finish, or "
                             "give a new --save or --storage (two would train points twice and time them side by "
                             "side)")
        self.fs.create_dir(self.root, recursive=True)
        self._write(self._path("driver.json"), {"host": socket.gethostname(), "pid": os.getpid(),
                                                 "started": datetime.datetime.now().isoformat(timespec="seconds")})

    def driver(self) -> str:
        """The other driver running on the store, in words, or "" (none, this process, or one
        whose pid on this host is gone)."""
        import socket

        path = self._path("driver.json")
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return ""
        try:
            driver = self._read(path)
        except (ValueError, UnicodeDecodeError):
            return ""
        if driver.get("host") == socket.gethostname():
            if driver.get("pid") == os.getpid() or not pid_alive(driver.get("pid", 0)):
                return ""
        return f"pid {driver.get('pid')} on {driver.get('host')}, started {driver.get('started')}"

    def release(self) -> None:
        path = self._path("driver.json")
        if self.fs.get_file_info(path).type == pafs.FileType.File and not self.driver():
            self.fs.delete_file(path)

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


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` lives on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    return pid > 0


def failed_folder(kind: str) -> str:
    return "failed" if kind == "points" else f"failed-{kind}"


def same(a, b) -> bool:
    """Equal settings, JSON's round trip aside (tuples as lists, NaN equal to NaN)."""
    a, b = json.loads(json.dumps(a, default=float)), json.loads(json.dumps(b, default=float))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b
