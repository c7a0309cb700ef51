"""An exclusive advisory lock on a file (``flock``), held by one process at a time.

``embed-corpus`` takes it on its output directory, so two runs never write the same output
at once. The kernel drops the lock when its holder dies, so a killed run never leaves a
stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block.

    With ``wait=False`` a lock held elsewhere raises ``BlockingIOError`` at once.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
