"""SIGTERM as Ctrl-C, and what a Ctrl-C can leave behind that would keep effray from exiting.

``kill PID``, ``ray job stop`` and a batch scheduler stop a process with SIGTERM, whose
default ends it on the spot: no clean-up, no line saying what is kept (a frontier's stored
points, a fetch's cache). Inside ``sigterm_as_interrupt`` (every command's, from
``cli_options.run_standalone``) SIGTERM raises KeyboardInterrupt, so that every clean-up
Ctrl-C runs runs for it too, and the command's one line names it (``stopped_by``: the
exception cannot say, since Ray's ``ray.get`` raises a KeyboardInterrupt of its own for
whatever signal interrupted its wait). ``ray.init`` puts its own handler (``sys.exit``) in
its place; ``keep_sigterm`` puts ours back.

Python 3.11 and 3.12 take the ``logging`` module lock in ``logging.Manager._clear_cache``
(run by every ``Logger.setLevel``; imports of torch, Ray and W&B call it dozens of times)
without a ``try``/``finally``: a KeyboardInterrupt that lands there leaves the lock held
by the main thread. The main thread can still log (the lock is reentrant), but any other
thread that logs waits forever. Seen with Ctrl-C during a Ray Train run's start-up: W&B's
teardown at exit waits for its service thread, which waits for the lock, and effray hung
instead of exiting. ``release_logging_lock`` undoes that on the way out of a Ctrl-C.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

# Set by a SIGTERM inside this process's sigterm_as_interrupt: a plain flag, since a signal handler must not
# take a lock (threading.Event's would deadlock if the signal landed while clear() held it)
_sigterm_received = False


def _on_sigterm(signum, frame):
    global _sigterm_received
    _sigterm_received = True
    raise KeyboardInterrupt("SIGTERM")


def stopped_by() -> str:
    """What stopped the run that a KeyboardInterrupt is ending: ``SIGTERM`` where one
    arrived inside ``sigterm_as_interrupt``, else ``Ctrl-C``."""
    return "SIGTERM" if _sigterm_received else "Ctrl-C"


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While inside, SIGTERM raises KeyboardInterrupt in this process's main thread (the
    thread Python runs signal handlers in; entered from another, nothing changes); SIGTERM's
    handler before it is put back at its end."""
    global _sigterm_received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    _sigterm_received = False
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        _sigterm_received = False


@contextlib.contextmanager
def keep_sigterm():
    """Around ``ray.init``: SIGTERM's handler as it was before (``ray.init`` sets its own,
    ``sys.exit``), where that was ``sigterm_as_interrupt``'s."""
    ours = signal.getsignal(signal.SIGTERM) is _on_sigterm
    try:
        yield
    finally:
        if ours:
            signal.signal(signal.SIGTERM, _on_sigterm)


def release_logging_lock() -> None:
    """Release the ``logging`` module lock if this thread holds it. Call it only outside
    any logging call (an exception handler or clean-up of ours), where this thread holding
    the lock can only be such a leftover."""
    lock = getattr(logging, "_lock", None)
    while lock is not None and lock._is_owned():
        lock.release()
