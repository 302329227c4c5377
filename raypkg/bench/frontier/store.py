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
- ``driver.json``: the driver running on the store (its host, pid, boot and the process's
  start), so that a second one is refused and ``--render`` writes beside, not over, what that
  one will write; a lock whose process is gone, or whose pid another process now has, is a
  dead driver's and is taken over; one of another host is named with how to clear it;
- ``broken/``, ``foreign/`` and ``stale/``: point files set aside (never over an earlier one:
  ``ID.json``, then ``ID.2.json``, ...), unreadable ones or those that are not a point (named
  when found; their points run again), those of another frontier (a row or a ``frontier``
  digest of other settings than frontier.json's, or a file named for another point: named,
  never judged as this one's) and those of other code (``--rerun-stale``).

Nothing is taken on trust: every point file is checked against the frontier it is in before
it is read for a table or a plan (``problem``), and frontier.json and driver.json that are
not what a frontier writes are refused in one line saying what to do. frontier.json also
remembers seeds until decided (``--seeds N --max-seeds K``, ``until_decided``), so that
``--render`` and the same command typed without ``--max-seeds`` judge at the store's level, and
the machine its points are timed on (``machine``: ``raypkg.tracking.provenance.machine``, the
first local driver's), so that a driver on another machine is refused (its seconds would not be
one clock with theirs) and a point of another machine is not judged (``judge.unsound``).

Each point's row records the code that ran it (``commit``, ``code``, ``draft``:
``raypkg.tracking.provenance.code_identity``), and a plug-in method's point its plug-in's
source digest (``plugin``: ``NAME@DIGEST``, ``points.plugin_code``); a stored point of other
code, effray's or the plug-in's, is not reused in silence.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid

import pyarrow.fs as pafs

from raypkg.errors import RunFailed, UsageError

VARIABLE = ("seeds", "first_seed", "methods")  # settings that grow a stored frontier rather than change it
RUN_ONLY = ("code",)  # what a run passes its points beside the settings (the code running), never a setting
JUDGING_ONLY = ("target_acc",)  # settings only judging reads: stored points are judged again with another
DERIVED = ("budgets",)  # settings derived from others (--budgets rounded to --epochs): named after those
NOT_STORED = VARIABLE + RUN_ONLY + JUDGING_ONLY
KINDS = ("points", "alone")  # a point's first run (packed beside others, or alone), and its run timed alone
REMEMBERED = ("until_decided", "machine")  # what frontier.json remembers beside the settings (never a refusal's setting)
MAX_SEEDS = 1000  # --max-seeds at most: each look spends 5% / looks; past it the intervals run off any float
NAMED_BY = ("seed", "method", "setting")  # what names a point (``points.point_id``)
ROW_SETTINGS = ("dataset", "model", "label_noise", "epochs")  # the settings every point's row records
JUDGED = ("family", "test_acc", "e2e_s")  # what judging a point reads of its row beside its name


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
        """``record`` as JSON at ``path``, atomically (a temporary name, then a rename); a
        store that cannot be written (a full disk, a read-only folder) is one line naming the
        path (``unwritable``)."""
        temporary = f"{path}.{uuid.uuid4().hex}.tmp"
        try:
            with self.fs.open_output_stream(temporary) as out:
                out.write(json.dumps(record, default=float).encode())
            self.fs.move(temporary, path)
        except OSError as e:
            with _quiet():
                self.fs.delete_file(temporary)  # what a full disk left of it
            self.unwritable(path, e)

    def _change(self, path: str, change, *args, **kwargs) -> None:
        """``change(*args)``, a pyarrow filesystem call that writes at ``path`` (a folder made,
        a file moved or deleted), its OSError one line naming the path (``unwritable``)."""
        try:
            change(*args, **kwargs)
        except OSError as e:
            self.unwritable(path, e)

    def unwritable(self, path: str, e: OSError):
        """An OSError writing ``path`` as one line: before a driver holds the store, a refusal
        (a read-only --storage, exit status 2); after, ``Unwritable`` (a full disk mid-run,
        exit status 1; ``command`` adds what goes on from the points kept)."""
        why = e.strerror or str(e).splitlines()[0]
        with _quiet():
            if self.started or self.fs.get_file_info(self._path("driver.json")).type == pafs.FileType.File:
                raise Unwritable(f"cannot write {path} ({why}): free space there, or make it writable")
        raise UsageError(f"cannot write {path} ({why}): the frontier's points are stored in {self.location}; give "
                         "a --storage (or --save) folder you can write") from None

    def _read(self, path: str):
        with self.fs.open_input_stream(path) as stream:
            return json.loads(stream.read().decode())

    def _records(self, folder: str) -> dict[str, dict]:
        """Every point file of ``folder`` that is a point of this frontier (``problem``;
        ``heal`` names the others and sets them aside)."""
        selector = pafs.FileSelector(self._path(folder), allow_not_found=True)
        settings = self.settings() if folder in KINDS else {}
        records = {}
        for info in self.fs.get_file_info(selector):
            if info.base_name.endswith(".json") and info.type == pafs.FileType.File:
                point = info.base_name[:-len(".json")]
                try:
                    record = self._read(info.path)
                except (ValueError, UnicodeDecodeError, OSError):
                    continue
                if problem(folder, point, record, settings) is None:
                    records[point] = record
        return records

    def check(self, settings: dict) -> None:
        """Refuse, in one line naming a setting that differs, a store that holds another
        frontier's points (nothing is written)."""
        stored = self.settings()
        key = differing_setting(stored, settings) if stored else None
        if key is not None:
            raise UsageError(f"{self.location} holds the points of a frontier run with {key.replace('_', '-')} "
                             f"{stored.get(key)!r}, not {settings.get(key)!r}: rerun it with that setting (only "
                             "--seeds and --methods may grow a stored frontier), or give a new --save or --storage")

    def check_machine(self, machine: str) -> None:
        """Refuse, in one line naming both, to time points on another machine than the one this
        store's points were timed on (frontier.json's ``machine``): their seconds would not be one clock."""
        stored = self.settings().get("machine")
        if stored and stored != machine:
            raise UsageError(f"{self.location} holds points timed on {stored}, and this machine is {machine}: "
                             "seconds timed here would not be one clock with theirs; run it on such a machine "
                             "(--render judges them anywhere), or give a new --save or --storage")

    def claim(self, settings: dict, until_decided: dict | None = None, machine: str | None = None) -> None:
        """Make this store the frontier of ``settings`` (``check`` it first): its folders, and
        frontier.json if it is new; ``until_decided`` (``{"seeds": N, "max_seeds": K}``, seeds
        until decided) and the ``machine`` its points are timed on (the caller has passed
        ``check_machine``) remembered in it if it does not hold them yet."""
        self.check(settings)
        for kind in KINDS:
            for folder in (kind, failed_folder(kind)):
                self._change(self._path(folder), self.fs.create_dir, self._path(folder), recursive=True)
        stored = self.settings()
        remembered = {"until_decided": until_decided, "machine": machine}
        if not stored or any(value and not stored.get(key) for key, value in remembered.items()):
            stored = stored or {k: v for k, v in settings.items() if k not in NOT_STORED}
            self._write(self._path("frontier.json"),
                        {**stored, **{k: v for k, v in remembered.items() if v and not stored.get(k)}})

    def until_decided(self, max_seeds: int | None, seeds: int) -> tuple[int | None, int]:
        """Seeds until decided as this store runs it: (``--max-seeds`` K, the ``--seeds`` N its
        looks count from, K - N + 1), the store's own where it remembers them (so that the
        same command typed without --max-seeds, and --render, judge at its level), else the
        flags'; another --max-seeds than the store's refused in one line."""
        kept = self.settings().get("until_decided")
        if not kept:
            return max_seeds, seeds
        if max_seeds is not None and max_seeds != kept["max_seeds"]:
            raise UsageError(f"{self.location} holds a frontier of seeds until decided, --seeds {kept['seeds']} "
                             f"--max-seeds {kept['max_seeds']} (its frontier.json), not --max-seeds {max_seeds}: its "
                             f"cells are judged at its own looks; leave out --max-seeds (or give {kept['max_seeds']}), "
                             "or give a new --save or --storage")
        return kept["max_seeds"], kept["seeds"]

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
        """The stored frontier's settings (empty if there is none); a frontier.json that is
        not a frontier's settings (broken, emptied, another JSON type, a folder), or none
        beside stored points, refused in one line saying what to do: never rebuilt from the
        flags given now, which would let any settings claim the stored points."""
        path = self._path("frontier.json")
        kind = self.fs.get_file_info(path).type
        if kind == pafs.FileType.NotFound:
            if any(self._ids(folder) for kind in KINDS for folder in (kind, failed_folder(kind))):
                raise UsageError(f"{path} is missing, but {self.location} holds points: its settings are unknown, so "
                                 "they cannot be reused; restore it, or give a new --save or --storage")
            return {}
        advice = "its points' settings are unknown; restore it, or give a new --save or --storage"
        try:
            if kind != pafs.FileType.File:
                raise UsageError(f"{path} is a folder, not a frontier's settings: {advice}")
            settings = self._read(path)
        except (ValueError, UnicodeDecodeError, OSError) as e:
            if isinstance(e, UsageError):
                raise
            raise UsageError(f"{path} is broken ({type(e).__name__}: {str(e)[:80]}): {advice}") from None
        missing = [k for k in ("dataset", "model", "epochs") if not isinstance(settings, dict) or k not in settings]
        kept, machine = (settings.get(k) if isinstance(settings, dict) else None for k in ("until_decided", "machine"))
        bad_kept = kept is not None and not (isinstance(kept, dict) and all(
            type(kept.get(k)) is int and kept[k] > 0 for k in ("seeds", "max_seeds")))
        bad_machine = machine is not None and not (isinstance(machine, str) and machine)
        if missing or bad_kept or bad_machine:
            held = (f"JSON {type(settings).__name__ if not isinstance(settings, dict) else 'object'}"
                    + (" with no " + ", ".join(missing) if isinstance(settings, dict) and missing else "")
                    + ("" if not bad_kept or missing else f", until_decided {kept!r}")
                    + ("" if not bad_machine or missing else f", machine {machine!r}"))
            raise UsageError(f"{path} is not a frontier's settings (it holds a {held}): {advice}")
        return settings

    def heal(self, fix: bool = True) -> list[str]:
        """Name, a line each, every point file that is not a point of this frontier
        (``problem``: unreadable, not a point, a folder, another frontier's) and every leftover
        temporary file (a run killed mid-write); with ``fix`` (a driver's run, not
        ``--render``) set the first aside, to ``broken/`` or ``foreign/`` (its point runs
        again), and delete the second. Never judged either way (``_records``)."""
        said = []
        settings = self.settings()
        for folder in (*KINDS, *map(failed_folder, KINDS)):
            selector = pafs.FileSelector(self._path(folder), allow_not_found=True)
            for info in self.fs.get_file_info(selector):
                if info.base_name.endswith(".tmp"):
                    if fix:
                        self._change(info.path, self.fs.delete_file, info.path)
                    said.append(f"{'removed' if fix else 'left'} {info.path}: a temporary file a killed run left")
                    continue
                if not info.base_name.endswith(".json"):
                    continue
                point = info.base_name[:-len(".json")]
                if info.type != pafs.FileType.File:
                    found = "broken", "a folder, not a file"
                else:
                    try:
                        found = problem(folder, point, self._read(info.path), settings if folder in KINDS else {})
                    except (ValueError, UnicodeDecodeError, OSError) as e:
                        found = "broken", f"{type(e).__name__}: {str(e)[:80]}"
                if found is None:
                    continue
                why, what = found
                if fix:
                    self.set_aside(folder, point, why)
                said.append(f"{why} point file {info.path} ({what}): " + (
                    f"set aside to {why}/, its point runs again" if fix else "not judged"))
        return said

    def set_aside(self, folder: str, point: str, why: str) -> str:
        """Move a point file of ``folder`` to ``why``/``folder``/ (broken, foreign or stale),
        never over one set aside before (``ID.json``, then ``ID.2.json``, ...); where it went."""
        self._change(self._path(why, folder), self.fs.create_dir, self._path(why, folder), recursive=True)
        target, n = self._path(why, folder, f"{point}.json"), 1
        while self.fs.get_file_info(target).type != pafs.FileType.NotFound:
            n += 1
            target = self._path(why, folder, f"{point}.{n}.json")
        self._change(target, self.fs.move, self._path(folder, f"{point}.json"), target)
        return target

    def stale(self, code: str, wanted: set[str] | dict[str, str | None]) -> dict[tuple[str, str], str]:
        """The stored runs of the points ``wanted`` run by other code than ``code``, or (``wanted``
        a dict: id -> its plug-in's ``NAME@DIGEST``, or None) by another source of its plug-in:
        (kind, id) -> the commit that ran it (``unknown`` for points stored before they recorded
        it), or the plug-in's source it ran."""
        plugins = wanted if isinstance(wanted, dict) else {}
        found = {}
        for kind in KINDS:
            for point, record in self._records(kind).items():
                row = record["row"]
                if point not in wanted:
                    continue
                if row.get("code") != code:
                    found[(kind, point)] = row.get("commit", "unknown")
                elif row.get("plugin") != plugins.get(point):
                    found[(kind, point)] = f"plug-in {row.get('plugin') or 'none'}"
        return found

    started = False  # whether this process drives the store (``drive``): a write that fails after is a run's

    def drive(self) -> None:
        """Become the store's one driver: refused in one line while another runs (``driver``),
        naming its lock and how it clears; ``release`` at the end."""
        import datetime
        import socket

        path = self._path("driver.json")
        other = self.driver()
        if other and other["host"] != socket.gethostname():
            raise UsageError(f"{path} says a frontier driver runs on {self.location} from another host ({describe(other)}), "
                             f"which this host cannot check: if it still runs, wait for it to finish or give a new "
                             f"--save or --storage; if it does not, delete {path} and run again")
        if other:
            raise UsageError(f"another frontier driver runs on {self.location} ({describe(other)}; its lock {path}): "
                             f"wait for it to finish (its lock goes with it; or stop it, kill {other['pid']}), or give a "
                             "new --save or --storage (two would train points twice and time them side by side)")
        self._change(self.root, self.fs.create_dir, self.root, recursive=True)
        self._write(path, {"host": socket.gethostname(), "pid": os.getpid(),
                           "started": datetime.datetime.now().isoformat(timespec="seconds"),
                           **process_identity(os.getpid())})
        self.started = True

    def driver(self) -> dict:
        """The other driver running on the store (its driver.json: host, pid, started, ...), or
        {} (none, this process, or a dead one: on this host, its pid gone or now another
        process's, by the process's start and the host's boot). A driver.json that is not a
        driver's lock refused in one line naming it and how to clear it."""
        import socket

        path = self._path("driver.json")
        kind = self.fs.get_file_info(path).type
        if kind == pafs.FileType.NotFound:
            return {}
        clear = (f"if no frontier driver runs on {self.location}, delete {path} and run again (or give a new --save "
                 "or --storage)")
        try:
            if kind != pafs.FileType.File:
                raise ValueError("a folder, not a file")
            driver = self._read(path)
        except (ValueError, UnicodeDecodeError, OSError) as e:
            raise UsageError(f"{path} is not a frontier driver's lock ({str(e)[:80]}): {clear}") from None
        if not (isinstance(driver, dict) and isinstance(driver.get("host"), str) and type(driver.get("pid")) is int):
            held = f"JSON {type(driver).__name__}" if not isinstance(driver, dict) else "no host and pid"
            raise UsageError(f"{path} is not a frontier driver's lock (it holds {held}): {clear}")
        if driver["host"] != socket.gethostname():
            return driver
        if driver["pid"] == os.getpid() and same_process(driver, process_identity(os.getpid())):
            return {}
        if not pid_alive(driver["pid"]) or not same_process(driver, process_identity(driver["pid"])):
            return {}
        return driver

    def release(self) -> None:
        """Remove this process's lock (never another's, nor one it cannot read)."""
        path = self._path("driver.json")
        with _quiet():
            if self.started and self.fs.get_file_info(path).type == pafs.FileType.File:
                driver = self._read(path)
                if isinstance(driver, dict) and driver.get("pid") == os.getpid() and same_process(
                        driver, process_identity(os.getpid())):
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
                if info.base_name.endswith(".json") and info.type == pafs.FileType.File}

    def ids(self, kind: str = "points") -> set[str]:
        return self._ids(kind)

    def failed_ids(self, kind: str = "points") -> set[str]:
        return self._ids(failed_folder(kind))

    def points(self, kind: str = "points") -> dict[str, dict]:
        return self._records(kind)

    def failures(self, kind: str = "points") -> dict[str, dict]:
        return self._records(failed_folder(kind))


def problem(folder: str, point: str, record, settings: dict) -> tuple[str, str] | None:
    """Why the file ``point``.json of ``folder`` is not a point of the frontier of
    ``settings`` (its frontier.json; {}: unknown): (where it is set aside, broken or foreign,
    why in words), or None. A failure record needs a label and an error; a point's record a
    row that names it (``NAMED_BY``, its file named for that point: ``point_id``) and holds
    what judging reads, its epochs, and the settings it ran with: its ``frontier`` digest,
    where it has one, and its row's settings (``ROW_SETTINGS``) equal to frontier.json's."""
    if folder not in KINDS:
        if not (isinstance(record, dict) and isinstance(record.get("label"), str)
                and isinstance(record.get("error"), str)):
            return "broken", "not a failed point's record: no label and error"
        return None
    row = record.get("row") if isinstance(record, dict) else None
    lacks = [k for k in (*NAMED_BY, *JUDGED) if k not in row] if isinstance(row, dict) else []
    if not isinstance(row, dict) or lacks or not isinstance(record.get("epochs"), list):
        what = (f"JSON {type(record).__name__}" if not isinstance(record, dict) else "no row" if not isinstance(row, dict)
                else f"a row without {', '.join(lacks)}" if lacks else "no epochs")
        return "broken", f"not a point: {what}"
    named = point_name(row)
    if named != point:
        return "foreign", f"its row is {row['method']} {row['setting']} seed {row['seed']}, whose file is {named}.json"
    if not settings:
        return None
    if record.get("frontier") not in (None, frontier_digest(settings)):
        return "foreign", "run by a frontier of other settings than frontier.json's"
    for key in ROW_SETTINGS:
        if key in row and key in settings and not same(row[key], settings[key]):
            return "foreign", f"its row records {key.replace('_', '-')} {row[key]!r}, frontier.json {settings[key]!r}"
    return None


def point_name(row: dict) -> str:
    """The file name (less .json) of the point a row names, as ``points.point_id`` makes it."""
    label = f"{row['seed']}|{row['method']}|{row['setting']}"
    return f"seed{row['seed']}-" + hashlib.sha1(label.encode()).hexdigest()[:16]


def frontier_digest(settings: dict) -> str:
    """A digest of a frontier's settings as its frontier.json keeps them (less what it
    remembers beside them): what each point's record holds as ``frontier``, so that a point
    file of another frontier is known by it."""
    fixed = {k: v for k, v in settings.items() if k not in NOT_STORED + REMEMBERED}
    text = json.dumps(json.loads(json.dumps(fixed, default=float)), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def process_identity(pid: int) -> dict:
    """What tells process ``pid`` of this host from a later one given its pid: the host's boot
    (``/proc/sys/kernel/random/boot_id``) and the process's start in clock ticks after it
    (``/proc/PID/stat``, field 22); {} where /proc does not say (another OS, a pid gone)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        with open(f"/proc/{pid}/stat") as f:
            start = int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return {}
    return {"boot": boot, "process_start": start}


def same_process(driver: dict, now: dict) -> bool:
    """Whether the process a driver.json names (``process_identity`` as it started) is the one
    its pid has now; a lock written before it recorded them: whether the pid lives."""
    if "process_start" not in driver or not now:
        return bool(now) or "process_start" not in driver
    return driver.get("boot") == now["boot"] and driver["process_start"] == now["process_start"]


def describe(driver: dict) -> str:
    return f"pid {driver.get('pid')} on {driver.get('host')}, started {driver.get('started')}"


class Unwritable(RunFailed):
    """A store that cannot be written mid-run (a full disk): one line naming the path."""


class _quiet:
    """``with _quiet():`` an OSError ignored (a clean-up that may find nothing to clean)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        return kind is not None and issubclass(kind, OSError)


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


def frontier_settings(settings: dict) -> dict:
    """What makes two frontiers' points the same points: the settings a store checks (not the
    seeds and methods that grow it, the code running, nor what only judging reads)."""
    return {k: v for k, v in settings.items() if k not in NOT_STORED + REMEMBERED}


def differing_setting(a: dict, b: dict) -> str | None:
    """The first setting (of ``frontier_settings``) in which two frontiers differ, the ones
    derived from others last; None if they are one frontier's."""
    a, b = frontier_settings(a), frontier_settings(b)
    differ = sorted((k for k in set(a) | set(b) if not same(a.get(k), b.get(k))), key=lambda k: (k in DERIVED, k))
    return differ[0] if differ else None


def same(a, b) -> bool:
    """Equal settings, JSON's round trip aside (tuples as lists, NaN equal to NaN)."""
    a, b = json.loads(json.dumps(a, default=float)), json.loads(json.dumps(b, default=float))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b
