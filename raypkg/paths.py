"""Checks of output paths, made before any work starts: bad ones are one-line UsageErrors."""

from __future__ import annotations

import os
from pathlib import Path

from raypkg.errors import RunFailed, UsageError


def check_writable_dir(path: str | Path, flag: str, shown: str | Path | None = None) -> Path:
    """``path`` is (or can be created as) a directory this process can write into; the line
    quotes ``shown`` as the value given (default ``path``: a file's directory is checked
    for the file the user named)."""
    path = Path(path)
    given = str(path if shown is None else shown)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UsageError(f"{flag} {given!r}: {str(probe)!r} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK) or not _can_make_dir_in(probe):  # root: /proc, read-only mounts
        raise UsageError(f"{flag} {given!r}: directory {str(probe)!r} is not writable")
    return path


def _can_make_dir_in(parent: Path) -> bool:
    """Whether a directory can really be made in ``parent`` (os.access says yes to root in
    /proc and on read-only mounts): makes one and removes it."""
    import tempfile

    try:
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".effray-probe-"))
        return True
    except OSError:
        return False


def check_writable_file(path: str | Path, flag: str, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` names a file that can be written (its directory is writable, it is not a
    directory), with one of ``suffixes`` when given."""
    path = Path(path)
    if suffixes and path.suffix not in suffixes:
        raise UsageError(f"{flag} {str(path)!r} must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise UsageError(f"{flag} {str(path)!r} is a directory; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{flag} {str(path)!r} is not writable")
    check_writable_dir(path.parent if str(path.parent) else Path("."), flag, shown=path)
    return path


MAX_NAME_BYTES = 255  # a directory name's limit on Linux and macOS filesystems


def check_run_name(name: str | None) -> None:
    """A run name is one directory name: it cannot climb out of --out or into subfolders,
    holds no control characters (a newline would split every line that prints it) and fits
    the filesystem's name limit."""
    if name is None:
        return
    if not isinstance(name, str) or not name.strip() or name in (".", "..") or "/" in name \
            or os.sep in name or (os.altsep and os.altsep in name) or "\0" in name:
        raise UsageError(f"--name {name!r} must be a plain directory name (no '/', not '.' or '..')")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise UsageError(f"--name {name!r} has a control character (a newline or tab); give a plain name")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise UsageError(f"--name is {len(name.encode())} bytes long; a directory name holds at most "
                         f"{MAX_NAME_BYTES}")


def atomic_write(path: str | Path, write) -> Path:
    """``write(tmp_path)`` (a temporary name in the same directory) then rename onto
    ``path``: readers never see half a file, and a failure (a full disk) leaves nothing
    behind. Every writer of run outputs goes through here. An OSError is a one-line
    ``RunFailed`` (the paths were checked before the run: this is the disk, not the input)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise RunFailed(f"cannot write {str(path)!r}: {e.strerror or e}") from None
    except BaseException:  # Ctrl-C, or the writer's own error
        tmp.unlink(missing_ok=True)
        raise
    return path


def check_working_directory() -> None:
    """The current directory still exists (a deleted one breaks imports, torch's included)."""
    try:
        os.getcwd()
    except OSError:
        raise UsageError("the current directory no longer exists (deleted?); cd to an existing directory "
                         "and run again") from None


def check_home() -> None:
    """HOME is a directory this process can write into: Ray keeps its session token in
    ~/.ray and W&B its settings and logs under ~/.cache and ~/.config."""
    home = probe = Path.home()
    while not probe.exists() and probe.parent != probe:  # a HOME not made yet: Ray and W&B make it
        probe = probe.parent
    if not probe.is_dir() or not _can_make_dir_in(probe):
        raise UsageError(f"HOME {str(home)!r} is not a writable directory; Ray (~/.ray) and W&B (~/.cache, "
                         "~/.config) keep files there: set HOME to one")


def expand_home(arg: str) -> str:
    """A command-line argument ``~/x`` or ``--flag=~/x`` with its ``~`` expanded (a shell
    expands neither the second form nor a quoted ``'~/x'``)."""
    flag, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    if not value.startswith("~") or (flag and not eq):
        return arg
    return flag + eq + os.path.expanduser(value)
