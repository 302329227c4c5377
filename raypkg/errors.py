"""The one exception type for bad user input.

Anything raised as ``UsageError`` reaches the user as one line on stderr with exit
status 2 (see ``raypkg.cli``); nothing else is caught there, so real bugs keep their
traceback.
"""


class UsageError(ValueError):
    """Bad input from the user: a value that is not allowed, and what is."""


def choose(kind: str, value: str, allowed) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a one-line UsageError."""
    allowed = sorted(allowed)
    if value not in allowed:
        raise UsageError(f"unknown {kind} {value!r}; choose one of: {', '.join(allowed)}")
    return value
