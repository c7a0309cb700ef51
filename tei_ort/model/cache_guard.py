"""Who may write a model's engine cache entries, and what crashed writers left behind.

Builders (and repairs) of one model hold an exclusive ``flock`` on ``<model dir>/.lock``
for the whole build: a second process starting on the same cache waits for the first and
then finds the entry finished. While the lock is held, no live build owns a
``.building-*`` directory, so the ones older than a few minutes are debris of a killed
build and are removed, as are stale ``*.tmp`` files.

A cache that cannot be written (a read-only mount, ``chmod -R a-w`` for another user, a
root-owned volume for a non-root user) is reported by ``build_lock`` with the error that
said so: the caller then uses what is there or refuses, naming that error.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
BUILDING_PREFIX = ".building-"
STALE_PREFIX = ".stale-"
#: debris younger than this is left alone (a build on another host may own it)
DEBRIS_AGE_S = 300.0
_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL)


@contextlib.contextmanager
def build_lock(model_dir: Path) -> Iterator[OSError | None]:
    """Hold the model's build lock and yield None; if the cache cannot be written, hold
    nothing and yield the error that said so (permission denied, read-only file system)."""
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(model_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno not in _READ_ONLY:
            raise
        yield exc
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno not in _NO_LOCKS:
                raise
            # some network file systems have no flock: builds then race, and the entry
            # renamed into place first wins (EngineCache._build)
            logger.warning("cannot lock %s (%s): building without the lock", model_dir, exc)
        yield None
    finally:
        os.close(fd)  # closing releases the lock


def tidy(model_dir: Path, root: Path) -> None:
    """Clean debris if no build of the model runs now and the cache can be written.

    A start that finds its entry complete calls this: it takes the build lock without
    waiting (a running build owns its temporary directory) and never creates anything.
    """
    try:
        fd = os.open(model_dir / LOCK_FILE, os.O_RDWR)
    except OSError:  # no lock file (nothing was built here) or a read-only cache
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a build is running
        os.close(fd)
        return
    try:
        clean_debris(model_dir, root)
    finally:
        os.close(fd)


def _age(path: Path, now: float) -> float:
    """Seconds since anything in ``path`` (a file or a directory's files) last changed."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            with contextlib.suppress(OSError):
                newest = max(newest, child.lstat().st_mtime)
    return now - newest


def clean_debris(model_dir: Path, root: Path, min_age_s: float = DEBRIS_AGE_S) -> list[Path]:
    """Remove what killed builds left: call with the build lock held. Returns what went."""
    now = time.time()
    candidates: list[Path] = []
    for child in model_dir.iterdir():
        if child.name.startswith((BUILDING_PREFIX, STALE_PREFIX)):
            candidates.append(child)
        elif child.is_dir():
            candidates += [p for p in child.iterdir() if p.name.endswith(".tmp")]
        elif child.name.endswith(".tmp"):
            candidates.append(child)
    candidates += [p for p in root.glob("*.tmp") if p.is_file()]
    removed = []
    for path in candidates:
        try:
            if _age(path, now) < min_age_s:
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:
            logger.warning("could not remove %s left by an earlier build: %s", path, exc)
            continue
        removed.append(path)
    if removed:
        logger.info("removed %d files left by killed builds in %s", len(removed), model_dir)
    return removed


def make_readable(entry: Path) -> None:
    """Directories 0755 and files 0644: a cache built by root serves any user."""
    entry.chmod(0o755)  # mkdtemp creates 0700
    for path in entry.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
