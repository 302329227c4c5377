"""``--storage``: a place every node of a Ray cluster can reach (a shared path, or a URI
pyarrow opens: file://, s3://, gs://, hdfs://) for a run's Ray Train checkpoints and,
once the run finishes, a copy of its run directory::

    STORAGE/<run name>/ray/   Ray Train checkpoints of every stage (removed at the end
                              unless --keep-checkpoints)
    STORAGE/<run name>/...    the run directory, copied when the run has finished

Default: the environment variable EFFRAY_STORAGE, else none (checkpoints stay in the
local run directory, as ``RUN/ray``).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path, PurePosixPath

from raypkg.errors import UsageError

STORAGE_ENV = "EFFRAY_STORAGE"
PROBE_TIMEOUT_S = 6  # how long a check or small read of an object store may take


def default_storage() -> str | None:
    """The storage of a run that names none: EFFRAY_STORAGE, else None."""
    return os.environ.get(STORAGE_ENV) or None


def is_uri(location: str | Path) -> bool:
    """``scheme://...``, or ``file:...`` (pyarrow opens ``file:/abs`` and refuses ``file:rel``)."""
    return "://" in str(location) or str(location).startswith("file:")


def local(location: str | Path) -> Path:
    """A local path, ``~`` expanded, absolute."""
    return Path(location).expanduser().resolve()


def join(location: str | Path, *parts: str) -> str:
    """``location/part/...`` for a URI (its ?query kept at the end) or a local path (made absolute)."""
    if not is_uri(location):
        return str(local(location).joinpath(*parts))
    base, question, query = str(location).partition("?")
    return "/".join([base.rstrip("/"), *parts]) + question + query


def filesystem(location: str | Path, what: str = "--storage"):
    """(pyarrow filesystem, path inside it) of a URI or a local path; a one-line UsageError
    (``what`` and the location) when pyarrow cannot open it (unknown scheme, missing
    credentials or libraries)."""
    import pyarrow
    import pyarrow.fs as pafs

    if not is_uri(location):
        return pafs.LocalFileSystem(), str(local(location))
    try:
        return pafs.FileSystem.from_uri(str(location))
    except (pyarrow.ArrowException, OSError, ValueError) as e:
        raise UsageError(f"{what} {str(location)!r}: cannot open it ({first_line(e)})") from None


def first_line(error: BaseException, most: int = 200) -> str:
    """The first non-empty line of an error's message (pyarrow's run to several; GCS's one
    line to 1,500 characters), cut at ``most`` characters, else its type."""
    line = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return line if len(line) <= most else line[:most] + "..."


def basename(location: str | Path) -> str:
    """The last part of a path or a URI's path (``s3://b/runs/r?endpoint_override=...`` -> ``r``)."""
    base = str(location).partition("?")[0] if is_uri(location) else str(location)
    return PurePosixPath(base.rstrip("/")).name


def quick(fs):
    """``fs`` made to answer fast for a check or a small read: an S3 filesystem tries once,
    with a 2 s connect and 5 s request timeout (pyarrow's default retries take ~6 s to give
    up on a closed port, longer on a silent one); a GCS one retries for 3 s, not 15 minutes.
    Other filesystems are returned as they are."""
    from datetime import timedelta

    import pyarrow.fs as pafs

    if not isinstance(fs, (pafs.S3FileSystem, pafs.GcsFileSystem)):
        return fs
    _, (options,) = fs.__reduce__()  # the options it was made with (what it pickles)
    if isinstance(fs, pafs.GcsFileSystem):
        return pafs.GcsFileSystem(**{**options, "retry_time_limit": timedelta(seconds=3)})
    return pafs.S3FileSystem(**{**options, "connect_timeout": 2, "request_timeout": 5,
                                "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=1)})


def within_deadline(call, what: str, location: str):
    """``call()``'s result (or its exception) if it comes within ``PROBE_TIMEOUT_S``, else a
    one-line UsageError: opening an object store can block for minutes with no network
    (S3's region lookup, GCS's credentials). ``call`` runs in a daemon thread; the wait
    here stays interruptible by Ctrl-C."""
    done, outcome = threading.Event(), {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread below
            outcome["error"] = e
        finally:
            done.set()

    threading.Thread(target=target, name="effray-storage-probe", daemon=True).start()
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    while not done.wait(0.1):  # short waits: a Ctrl-C that another thread received is seen at once
        if time.monotonic() > deadline:
            raise UsageError(f"{what} {str(location)!r}: no answer within {PROBE_TIMEOUT_S} s (no network, or the "
                             "store or its credentials service does not respond)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def read_bytes(location: str | Path, what: str) -> bytes:
    """The bytes of the file at a URI or a local path; OSError when it cannot be read."""
    if not is_uri(location):
        return Path(location).expanduser().read_bytes()

    def read():
        fs, path = filesystem(location, what)
        with quick(fs).open_input_file(path) as f:
            return f.read()

    return within_deadline(read, what, location)


def download(location: str, filenames: list[str], into: Path, what: str) -> bool:
    """Copy the files ``filenames`` of the directory at URI ``location`` that exist into the
    local directory ``into``; False when ``location`` is not a directory. A one-line
    UsageError when it cannot be reached."""
    import pyarrow.fs as pafs

    def fetch() -> bool:
        fs, path = filesystem(location, what)
        fs = quick(fs)
        if fs.get_file_info(path).type != pafs.FileType.Directory:
            return False
        into.mkdir(parents=True, exist_ok=True)
        for info in fs.get_file_info([f"{path}/{filename}" for filename in filenames]):
            if info.type == pafs.FileType.File:
                with fs.open_input_file(info.path) as f:
                    (into / info.base_name).write_bytes(f.read())
        return True

    try:
        return within_deadline(fetch, what, location)
    except OSError as e:
        raise UsageError(f"{what} {location!r}: cannot read it ({first_line(e)})") from None


def check_storage(location: str | None) -> None:
    """Before anything runs: the storage can be opened and, when local, written; a URI's
    store answers (``check_reachable``)."""
    import pyarrow.fs as pafs

    from raypkg.paths import check_writable_dir

    if location is None:
        return
    if not isinstance(location, str) or not location.strip():
        raise UsageError(f"--storage must be a path or a URI, got {location!r}")
    if not is_uri(location):
        check_writable_dir(local(location), "--storage")
        return

    def probe() -> None:
        fs, path = filesystem(location)
        if isinstance(fs, pafs.LocalFileSystem):
            check_writable_dir(path, "--storage")
        else:
            check_reachable(location, quick(fs), path)

    within_deadline(probe, "--storage", location)


def check_reachable(location: str, fs, path: str) -> None:
    """One request or two, before any worker starts: ``path`` is not a file, and for s3://
    and gs:// its bucket is there. Refuses an endpoint that does not answer and credentials
    that are missing or refused (the store says access denied)."""
    import pyarrow.fs as pafs

    bucket = path.split("/")[0]
    try:
        if fs.get_file_info(path).type == pafs.FileType.File:
            raise UsageError(f"--storage {location!r}: {path!r} is a file, not a directory")
        if fs.type_name in ("s3", "gcs") and fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise UsageError(f"--storage {location!r}: there is no bucket {bucket!r}")
    except OSError as e:
        raise UsageError(f"--storage {location!r}: cannot reach it ({first_line(e)})") from None


def check_free(location: str) -> None:
    """``location`` (a run's place in the storage) does not exist, or is an empty directory."""
    import pyarrow.fs as pafs

    fs, path = filesystem(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return
    if info.type != pafs.FileType.Directory or fs.get_file_info(pafs.FileSelector(path)):
        raise UsageError(f"{location!r} already exists in the storage; pick another --name")


def remove(location: str) -> None:
    """Delete the directory at ``location`` if it is there."""
    import pyarrow.fs as pafs

    fs, path = filesystem(location)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)


def upload(local_dir: str | Path, location: str) -> None:
    """Copy the directory ``local_dir`` (recursively) to ``location``."""
    import pyarrow.fs as pafs

    fs, path = filesystem(location)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(str(local(local_dir)), path, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=fs)


def ray_train_storage(location: str | Path) -> dict:
    """Ray Train's RunConfig arguments for checkpoints at ``location``."""
    if not is_uri(location):
        return {"storage_path": str(local(location))}
    fs, path = filesystem(location)
    return {"storage_path": path, "storage_filesystem": fs}
