"""The ``--data-dir`` / ``--download`` contract shared by the datasets read from disk.

Nothing is downloaded unless the user asks (``download=True``). A missing directory, or
files torchvision cannot find there, is a ``UsageError`` of one line that names the
directory and says what to do, never a torchvision traceback.
"""

from __future__ import annotations

import os
from typing import Callable, TypeVar

from raypkg.data.registry import DataOptions
from raypkg.errors import UsageError

T = TypeVar("T")


def data_root(name: str, options: DataOptions, files_hint: str, downloadable: bool = True) -> str:
    """The data directory for dataset ``name``; it must exist unless downloading."""
    fetch = f"pass --download to fetch {name} there, or " if downloadable else ""
    if options.data_dir is None:
        raise UsageError(f"dataset {name} needs --data-dir DIR, a directory holding {files_hint}"
                         + (" (add --download to fetch it there)" if downloadable else ""))
    root = os.path.abspath(os.path.expanduser(os.fspath(options.data_dir)))
    if not (options.download and downloadable) and not os.path.isdir(root):
        raise UsageError(f"data directory {root} does not exist: {fetch}put {files_hint} in it")
    return root


def open_torchvision(name: str, root: str, options: DataOptions, files_hint: str,
                     make: Callable[[], T]) -> T:
    """Call ``make()`` (a torchvision dataset constructor) and turn its errors into one line.

    torchvision raises ``RuntimeError`` when the files are missing or fail their checksum
    (and ``OSError``/``URLError`` when a download fails).
    """
    try:
        return make()
    except (RuntimeError, OSError) as err:
        reason = " ".join(str(err).split())[:300] or type(err).__name__  # one line
        if options.download:
            raise UsageError(f"could not download {name} into {root}: {reason}") from None
        # torchvision's RuntimeError says "use download=True": say it in CLI terms instead.
        problem = "not found or corrupted" if isinstance(err, RuntimeError) else f"not readable ({reason})"
        raise UsageError(f"{name} files {problem} in {root}: pass --download to fetch them, "
                         f"or put {files_hint} there") from None
