"""Space on disk: checked before the big writes, and "no space left on device" told in one
line that names the path, the space needed and what is free, whenever a write meets it.

A memory-mapped shard on a full disk does not fail cleanly (the process dies with SIGBUS
on the first page that cannot be stored), so preprocess and the training's epoch backup
check the space they need before they write; whatever still fails midway is removed or
left unmarked, so that the same command, once space is freed, starts clean.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

from poster_ml.errors import DiskFullError

AGAIN = "free some space (or choose another folder) and run the same command again"


def megabytes(count: int | float) -> str:
    return f"{count / 2**20:,.1f} MB"


def free_bytes(path: Path) -> int:
    """The free space of the filesystem that holds `path` (or would hold it)."""
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def require_space(path: Path, needed: int, what: str) -> None:
    """Stops with one line before writing `what` to `path` if `needed` bytes are not free."""
    free = free_bytes(path)
    if free < needed:
        raise DiskFullError(
            f"not enough space for {what} in {path}: needs {megabytes(needed)}, "
            f"{megabytes(free)} free; {AGAIN}"
        )


def is_disk_full(error: BaseException) -> bool:
    """ "No space left on device", as the OS says it (ENOSPC) or as a library words it
    (h5py's message carries the errno in its text)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(error)


def disk_full_error(error: BaseException, path: Path | str | None = None) -> DiskFullError:
    """The one line for a full disk: the file the OS names, else the one being written."""
    where = getattr(error, "filename", None) or path
    if where is None:
        return DiskFullError(f"no space left on device ({error}); {AGAIN}")
    free = megabytes(free_bytes(Path(str(where))))
    return DiskFullError(f"no space left on device writing {where} ({free} free); {AGAIN}")


@contextlib.contextmanager
def writing(path: Path, cleanup: tuple[Path, ...] = ()) -> Iterator[None]:
    """Turns a full disk while writing `path` into one line, removing `cleanup` (the
    half-written files) first so that nothing later trusts them."""
    try:
        yield
    except Exception as error:
        if not is_disk_full(error):
            raise
        for partial in cleanup:
            partial.unlink(missing_ok=True)
        raise disk_full_error(error, path) from error
