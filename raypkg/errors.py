"""The exception types that reach the user as one line: bad input, a failed run, Ctrl-C.

Anything raised as ``UsageError`` reaches the user as one line on stderr with exit
status 2 (see ``raypkg.cli``); nothing else is caught there, so real bugs keep their
traceback.

``RunFailed`` is a run that could not finish for a reason outside the user's input (Ray
Train's workers died more often than ``--max-failures`` allows): one line, exit status 1.
``Interrupted`` is Ctrl-C (KeyboardInterrupt) or SIGTERM (``raypkg.interrupts``) on its way
out: one line, exit status 130 (143 for SIGTERM).
Either way the run directory is removed (``RunDir``): nothing half-written stays.
"""


class UsageError(ValueError):
    """Bad input from the user: a value that is not allowed, and what is."""


class RunFailed(RuntimeError):
    """A run that failed for a reason outside the user's input; one line, exit status 1."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM (``by``: ``raypkg.interrupts.stopped_by``), past the run's clean-up;
    one line, exit status 130 or 143. (An Exception, not a KeyboardInterrupt, so that click
    does not turn it into its own "Aborted!".)"""

    def __init__(self, message: str = "", by: str = "Ctrl-C"):
        super().__init__(message)
        self.by = by


EXIT_STATUS = {"Ctrl-C": 130, "SIGTERM": 143}  # 128 + the signal's number, as a shell reports it


INT64 = 2**63  # every integer effray takes fits torch's and numpy's int64


def check_int64(name: str, value) -> None:
    """The one check of an integer's size, whatever the entry point (a flag, a config file, a
    tune space, the API, a bench's count): it fits a 64-bit integer, else a one-line UsageError."""
    if not -INT64 <= value < INT64:
        shown = str(value)
        raise UsageError(f"{name} {shown[:30]}{'...' if len(shown) > 30 else ''} does not fit a 64-bit integer "
                         f"(at most {INT64 - 1})")


def choose(kind: str, value: str, allowed) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a one-line UsageError."""
    allowed = sorted(allowed)
    if value not in allowed:
        raise UsageError(f"unknown {kind} {value!r}; choose one of: {', '.join(allowed)}")
    return value
