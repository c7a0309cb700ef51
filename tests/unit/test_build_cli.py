"""``tei-ort build``: exports into the cache once, prints where, and fails clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tei_ort.cli.commands import main
from tei_ort.model.cache import ENGINE_FILE, KEY_FILE
from tei_ort.model.hub import default_model_path
from tei_ort.model.loading import ModelOptions, load_model


def test_build_then_serve_path_reuses_the_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["build", "--model-id", str(default_model_path()), "--engine-cache", str(tmp_path)]
    assert main(args) == 0
    out, err = capsys.readouterr()
    entry = Path(out.strip())
    assert (entry / ENGINE_FILE).is_file() and (entry / KEY_FILE).is_file()
    assert "exporting" in err and "done" in err

    assert main(args) == 0
    out, err = capsys.readouterr()
    assert Path(out.strip()) == entry
    assert "already in the cache" in err and "exporting" not in err

    loaded = load_model(
        ModelOptions(model_id=str(default_model_path()), engine_cache=str(tmp_path))
    )
    assert not loaded.built and loaded.entry_dir == entry


def test_build_reads_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODEL_ID", str(default_model_path()))
    monkeypatch.setenv("ENGINE_CACHE", str(tmp_path))
    assert main(["build"]) == 0
    assert Path(capsys.readouterr().out.strip()).parent.parent == tmp_path


def test_build_errors_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    missing.mkdir()
    assert main(["build", "--model-id", str(missing), "--engine-cache", str(tmp_path)]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "config.json" in last


def test_bad_flag_values_exit_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--execution-provider", "quantum"])
    assert exit_info.value.code == 2
    assert "invalid execution provider" in capsys.readouterr().err
