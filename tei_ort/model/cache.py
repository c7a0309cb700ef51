"""The engine cache: built graphs keyed by everything that changes them.

Layout::

    <root>/<model-slug>/<key-digest>/
        key.json          the key's parts, readable
        model.onnx        the exported graph
        model.opt.onnx    the graph as ONNX Runtime optimized it (written on first load)

An entry is built in a temporary sibling directory and renamed into place, so a reader
never sees half an entry. Builders of the same key take a file lock first
(``<root>/.locks/<slug>--<digest>.lock``): one process builds, the others wait and then
reuse its entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from tei_ort.model.file_lock import file_lock

ENGINE_FILE = "model.onnx"
OPTIMIZED_FILE = "model.opt.onnx"
KEY_FILE = "key.json"
_DIGEST_MEMO = "weights-digests.json"


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


class EngineCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def entry_dir(self, key: CacheKey) -> Path:
        return self.root / model_slug(key.model_id) / key.digest()

    def lookup(self, key: CacheKey) -> Path | None:
        entry = self.entry_dir(key)
        return entry if (entry / ENGINE_FILE).is_file() and (entry / KEY_FILE).is_file() else None

    def get_or_build(self, key: CacheKey, build: Callable[[Path], None]) -> tuple[Path, bool]:
        """The entry for ``key``, built with ``build(tmp_dir)`` on a miss.

        ``build`` must write ``model.onnx`` (and any external data) into the directory it
        is given. Returns the entry directory and whether it was built now.
        """
        found = self.lookup(key)
        if found is not None:
            return found, False
        entry = self.entry_dir(key)
        with file_lock(self.root / ".locks" / f"{entry.parent.name}--{entry.name}.lock"):
            found = self.lookup(key)  # built by the holder we waited for
            if found is not None:
                return found, False
            return self._build(key, entry, build), True

    def _build(self, key: CacheKey, entry: Path, build: Callable[[Path], None]) -> Path:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=entry.parent))
        try:
            build(tmp)
            if not (tmp / ENGINE_FILE).is_file():
                raise RuntimeError(f"the engine build wrote no {ENGINE_FILE}")
            (tmp / KEY_FILE).write_text(json.dumps(asdict(key), indent=2, sort_keys=True))
            try:
                os.rename(tmp, entry)
            except OSError:
                # another process finished the same key first; its entry is as good
                if self.lookup(key) is None:
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return entry


def weights_digest(files: Iterable[Path], memo_dir: Path | None = None) -> str:
    """sha256 over the given files' bytes (in order), remembered per (path, size, mtime).

    Hashing a multi-GB checkpoint takes seconds, so a start with a cached engine looks the
    digest up in ``memo_dir`` instead; any change to a file's size or mtime rehashes it.
    """
    memo_path = memo_dir / _DIGEST_MEMO if memo_dir is not None else None
    memo: dict[str, str] = {}
    if memo_path is not None and memo_path.is_file():
        try:
            memo = json.loads(memo_path.read_text())
        except ValueError:
            memo = {}
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
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, indent=0, sort_keys=True))
        os.replace(tmp, memo_path)
    return total.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
