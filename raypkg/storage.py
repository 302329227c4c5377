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
from pathlib import Path

from raypkg.errors import UsageError

STORAGE_ENV = "EFFRAY_STORAGE"


def default_storage() -> str | None:
    """The storage of a run that names none: EFFRAY_STORAGE, else None."""
    return os.environ.get(STORAGE_ENV) or None


def is_uri(location: str | Path) -> bool:
    return "://" in str(location)


def join(location: str | Path, *parts: str) -> str:
    """``location/part/...`` for a URI (its ?query kept at the end) or a local path (made absolute)."""
    if not is_uri(location):
        return str(Path(location).resolve().joinpath(*parts))
    base, question, query = str(location).partition("?")
    return "/".join([base.rstrip("/"), *parts]) + question + query


def filesystem(location: str | Path):
    """(pyarrow filesystem, path inside it) of a URI or a local path; a one-line UsageError
    when pyarrow cannot open it (unknown scheme, missing credentials or libraries)."""
    import pyarrow
    import pyarrow.fs as pafs

    if not is_uri(location):
        return pafs.LocalFileSystem(), str(Path(location).resolve())
    try:
        return pafs.FileSystem.from_uri(str(location))
    except (pyarrow.ArrowException, OSError, ValueError) as e:
        reason = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise UsageError(f"--storage {str(location)!r}: cannot open it ({reason})") from None


def check_storage(location: str | None) -> None:
    """Before anything runs: the storage can be opened and, when local, written."""
    import pyarrow.fs as pafs

    from raypkg.paths import check_writable_dir

    if location is None:
        return
    if not isinstance(location, str) or not location.strip():
        raise UsageError(f"--storage must be a path or a URI, got {location!r}")
    fs, path = filesystem(location)
    if isinstance(fs, pafs.LocalFileSystem):
        check_writable_dir(path, "--storage")


def check_free(location: str) -> None:
    """``location`` (a run's place in the storage) does not exist, or is an empty directory."""
    import pyarrow.fs as pafs

    fs, path = filesystem(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return
    if info.type != pafs.FileType.Directory or fs.get_file_info(pafs.FileSelector(path)):
        raise UsageError(f"{location!r} already exists in the storage; pick another --name or --storage")


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
    pafs.copy_files(str(Path(local_dir).resolve()), path, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=fs)


def ray_train_storage(location: str | Path) -> dict:
    """Ray Train's RunConfig arguments for checkpoints at ``location``."""
    if not is_uri(location):
        return {"storage_path": str(Path(location).resolve())}
    fs, path = filesystem(location)
    return {"storage_path": path, "storage_filesystem": fs}
