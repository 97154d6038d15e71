"""Lock files, so that two processes never write one prepared dataset, feature cache or
SQLite study at once: the second waits, or stops with a message that says why."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from poster_ml.errors import PosterMLError


class BusyError(PosterMLError):
    """Another process holds the lock."""


@contextlib.contextmanager
def exclusive(path: Path, wait: bool, busy_message: str = "") -> Iterator[None]:
    """Holds an exclusive lock on `path` (created if missing) while the block runs.

    With `wait` false a lock held elsewhere raises BusyError(busy_message); the operating
    system releases the lock when its holder exits, even on SIGKILL.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip()
            raise BusyError(
                busy_message + (f" (lock {path} held by process {holder})" if holder else "")
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield
