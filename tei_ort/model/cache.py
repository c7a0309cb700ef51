"""The engine cache: built graphs keyed by everything that changes them.

Layout::

    <root>/<model-slug>/.lock             held while an entry of the model is built
    <root>/<model-slug>/<key-digest>/
        key.json          the key's parts, readable
        model.onnx        the exported graph (and model.onnx.data for weights over 1 GiB)
        model.opt.onnx    the graph as ONNX Runtime optimized it for the target
        calibration-*.npy the int8 / uint8 calibration vectors (model.calibration), when
                          computed
        manifest.json     size and CRC-32 of every file above, written last

``tei-ort build`` leaves an entry complete: a later ``serve`` only reads it, so the cache
may be mounted read-only. An entry is built in a temporary sibling directory and renamed
into place, so a reader never sees half an entry. An entry that does not match its
manifest (a killed build, a truncated or damaged file) is never loaded: it is rebuilt
(only the optimized graph when that alone is damaged), or, in a read-only cache, refused
with a message that says what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from tei_ort.errors import EngineCacheError
from tei_ort.model.cache_guard import (
    BUILDING_PREFIX,
    STALE_PREFIX,
    build_lock,
    clean_debris,
    make_readable,
    tidy,
)
from tei_ort.model.calibration import CALIBRATION_PREFIX
from tei_ort.model.manifest import EntryCheck, check_entry, write_manifest

logger = logging.getLogger(__name__)

ENGINE_FILE = "model.onnx"
OPTIMIZED_FILE = "model.opt.onnx"
KEY_FILE = "key.json"
_DIGEST_MEMO = "weights-digests.json"

#: ``build(tmp_dir)`` writes model.onnx (and any external data or plan) into tmp_dir
Build = Callable[[Path], None]
#: ``optimize(model_path, out_dir)`` writes out_dir/model.opt.onnx, or nothing when the
#: target cannot be optimized on this machine (its provider is missing)
Optimize = Callable[[Path, Path], None]


@dataclass(frozen=True)
class CacheKey:
    model_id: str
    weights_digest: str  # sha256 over config.json and the checkpoint files
    exporter_version: str
    target: str  # e.g. "onnx-cpu", "onnx-cuda", "trt-sm90"
    dtype: str
    head: str
    variant: str
    runtime: str  # e.g. "onnxruntime-1.32.0"
    extra: str = ""  # anything else a target needs (TensorRT profiles, ...)

    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:24]


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    built: bool  # built or repaired by this call
    optimized: bool  # model.opt.onnx is there and matches the manifest


def model_slug(model_id: str) -> str:
    """A directory name for a model id or path."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "--", model_id.strip("/")).strip("-.")
    return slug[-80:] or "model"


def default_cache_root(hub_cache: str | Path | None = None) -> Path:
    """Beside the Hugging Face models: ``<hub cache>/tei-ort-engines``."""
    if hub_cache is None:
        from huggingface_hub import constants

        hub_cache = constants.HF_HUB_CACHE
    return Path(hub_cache) / "tei-ort-engines"


def _unwritable(refused: OSError) -> str:
    """What stopped the build, as the system said it: a read-only file system and a
    directory this user may not write are fixed in different places."""
    where = f" on {refused.filename}" if refused.filename else ""
    uid = os.getuid() if hasattr(os, "getuid") else None
    who = f" (this process runs as uid {uid})" if uid is not None else ""
    return f"it cannot be written: {refused.strerror or refused}{where}{who}"


def _only_optimized(check: EntryCheck) -> bool:
    """Whether the damage is confined to the optimized graph (rebuilt from model.onnx)."""
    return bool(check.problems) and all(n.startswith(OPTIMIZED_FILE) for n in check.problems)


def _only_calibration(check: EntryCheck) -> bool:
    """Whether the damage is confined to calibration vectors (dropped, computed again)."""
    return bool(check.problems) and all(n.startswith(CALIBRATION_PREFIX) for n in check.problems)


class EngineCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def entry_dir(self, key: CacheKey) -> Path:
        return self.root / model_slug(key.model_id) / key.digest()

    def check(self, key: CacheKey) -> EntryCheck:
        return check_entry(self.entry_dir(key), (KEY_FILE, ENGINE_FILE))

    def lookup(self, key: CacheKey) -> Path | None:
        """The entry for ``key`` if it is complete and undamaged."""
        return self.entry_dir(key) if self.check(key).complete else None

    def get_or_build(
        self, key: CacheKey, build: Build, optimize: Optimize | None = None
    ) -> CacheEntry:
        """The entry for ``key``: checked against its manifest, built or repaired if needed.

        ``build`` must write ``model.onnx`` into the directory it is given; ``optimize``
        (when the target has an optimized graph) writes ``model.opt.onnx`` from it.
        """
        entry = self.entry_dir(key)
        check = self.check(key)
        if check.complete:
            tidy(entry.parent, self.root)
            return CacheEntry(entry, False, OPTIMIZED_FILE in check.recorded)
        with build_lock(entry.parent) as refused:
            if refused is not None:
                return self._read_only(entry, check, refused)
            check = self.check(key)  # another process may have built it while we waited
            if check.complete:
                return CacheEntry(entry, False, OPTIMIZED_FILE in check.recorded)
            clean_debris(entry.parent, self.root)
            if _only_calibration(check):
                logger.warning("dropping damaged calibration from %s: %s", entry, check.describe())
                for name in check.problems:
                    (entry / name).unlink(missing_ok=True)
                write_manifest(entry)
                return CacheEntry(entry, False, OPTIMIZED_FILE in check.recorded)
            if entry.is_dir():
                logger.warning("rebuilding the engine cache entry %s: %s", entry, check.describe())
            if optimize is not None and _only_optimized(check):
                self._repair(entry, optimize)
            else:
                self._build(entry, key, build, optimize)
        return CacheEntry(entry, True, (entry / OPTIMIZED_FILE).is_file())

    def _read_only(self, entry: Path, check: EntryCheck, refused: OSError) -> CacheEntry:
        why = _unwritable(refused)
        if _only_calibration(check):
            # the graphs are intact; model.calibration refuses the damaged vectors itself
            logger.warning(
                "the calibration in %s is damaged (%s) and %s: calibrating in memory at each start",
                entry,
                check.describe(),
                why,
            )
            return CacheEntry(entry, False, OPTIMIZED_FILE in check.recorded)
        if _only_optimized(check):
            # model.onnx is intact: ONNX Runtime optimizes it again in memory
            logger.warning(
                "the optimized graph in %s is damaged (%s) and %s: "
                "optimizing model.onnx in memory at each start",
                entry,
                check.describe(),
                why,
            )
            return CacheEntry(entry, False, False)
        if not entry.is_dir():
            raise EngineCacheError(
                f"no engine for this model in the engine cache {self.root}, and {why}: "
                "make it writable for this user (or mount a writable one), or run "
                "`tei-ort build` with the same options on a writable cache first"
            )
        raise EngineCacheError(
            f"the engine cache entry {entry} is damaged or unfinished ({check.describe()}) "
            f"and {why}: rebuild it with `tei-ort build` on a writable cache"
        )

    def _build(self, entry: Path, key: CacheKey, build: Build, optimize: Optimize | None) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=BUILDING_PREFIX, dir=entry.parent))
        try:
            build(tmp)
            if not (tmp / ENGINE_FILE).is_file():
                raise RuntimeError(f"the engine build wrote no {ENGINE_FILE}")
            (tmp / KEY_FILE).write_text(json.dumps(asdict(key), indent=2, sort_keys=True))
            if optimize is not None:
                optimize(tmp / ENGINE_FILE, tmp)
            make_readable(tmp)
            write_manifest(tmp)
            stale = None
            if entry.exists():  # damaged: moved aside, then removed
                stale = entry.with_name(f"{STALE_PREFIX}{entry.name}-{os.getpid()}")
                os.rename(entry, stale)
            try:
                os.rename(tmp, entry)
            except OSError:
                # without a working lock another process may have finished first
                if not self.check(key).complete:
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
            if stale is not None:
                shutil.rmtree(stale, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _repair(self, entry: Path, optimize: Optimize) -> None:
        """Optimize the intact model.onnx again; swap the new files in, then the manifest."""
        tmp = Path(tempfile.mkdtemp(prefix=BUILDING_PREFIX, dir=entry.parent))
        try:
            optimize(entry / ENGINE_FILE, tmp)
            make_readable(tmp)
            for old in entry.glob(OPTIMIZED_FILE + "*"):
                old.unlink()
            for new in tmp.iterdir():
                os.replace(new, entry / new.name)
            write_manifest(entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def weights_digest(files: Iterable[Path], memo_dir: Path | None = None) -> str:
    """sha256 over the given files' bytes (in order), remembered per (path, size, mtime).

    Hashing a multi-GB checkpoint takes seconds, so a start with a cached engine looks the
    digest up in ``memo_dir`` instead; any change to a file's size or mtime rehashes it.
    """
    memo_path = memo_dir / _DIGEST_MEMO if memo_dir is not None else None
    memo: dict[str, str] = {}
    if memo_path is not None and memo_path.is_file():
        try:
            loaded = json.loads(memo_path.read_text())
        except (OSError, ValueError):
            loaded = None
        # anything but a string -> string map (a damaged or foreign file) is no memo
        if isinstance(loaded, dict) and all(isinstance(v, str) for v in loaded.values()):
            memo = loaded
    total = hashlib.sha256()
    changed = False
    for path in files:
        stat = path.stat()
        memo_key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        digest = memo.get(memo_key)
        if digest is None:
            digest = _file_sha256(path)
            memo[memo_key] = digest
            changed = True
        total.update(digest.encode())
    if changed and memo_path is not None:
        _save_memo(memo_path, memo)
    return total.hexdigest()


def _save_memo(memo_path: Path, memo: dict[str, str]) -> None:
    """Remember the digests; a read-only cache only costs the next start a rehash."""
    tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(memo, indent=0, sort_keys=True))
        tmp.chmod(0o644)
        os.replace(tmp, memo_path)
    except OSError as exc:
        logger.info("could not save the weights digests in %s: %s", memo_path, exc)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
