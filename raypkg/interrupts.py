"""What a Ctrl-C can leave behind that would keep effray from exiting.

Python 3.11 and 3.12 take the ``logging`` module lock in ``logging.Manager._clear_cache``
(run by every ``Logger.setLevel``; imports of torch, Ray and W&B call it dozens of times)
without a ``try``/``finally``: a KeyboardInterrupt that lands there leaves the lock held
by the main thread. The main thread can still log (the lock is reentrant), but any other
thread that logs waits forever. Seen with Ctrl-C during a Ray Train run's start-up: W&B's
teardown at exit waits for its service thread, which waits for the lock, and effray hung
instead of exiting. ``release_logging_lock`` undoes that on the way out of a Ctrl-C.
"""

from __future__ import annotations

import logging


def release_logging_lock() -> None:
    """Release the ``logging`` module lock if this thread holds it. Call it only outside
    any logging call (an exception handler or clean-up of ours), where this thread holding
    the lock can only be such a leftover."""
    lock = getattr(logging, "_lock", None)
    while lock is not None and lock._is_owned():
        lock.release()
