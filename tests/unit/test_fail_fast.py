"""An architecture or head tei-ort cannot build is refused during inspection, before any
weight is hashed or exported."""

from __future__ import annotations

from pathlib import Path

import pytest

from tei_ort.errors import UnsupportedModelError
from tei_ort.model import build
from tei_ort.model.hub import ResolvedModel
from tei_ort.model.inspect import inspect_model
from tei_ort.model.options import ModelOptions
from tests.support.model_dirs import make_model


def _never(*args: object, **kwargs: object) -> str:
    raise AssertionError("the weights were hashed")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model_type": "t5", "architectures": ["T5EncoderModel"]}, "model_type 't5'"),
        (
            {"model_type": "nomic_bert", "architectures": ["NomicBertForSequenceClassification"]},
            "classifier head is not available for nomic_bert",
        ),
    ],
)
def test_refused_before_the_weights_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, object], message: str
) -> None:
    labels = {"id2label": {"0": "a", "1": "b"}}
    root = make_model(tmp_path / "model", overrides | labels, pooling="mean_tokens")
    with pytest.raises(UnsupportedModelError, match=message):
        inspect_model(ResolvedModel(str(root), root, None))
    monkeypatch.setattr(build, "weights_digest", _never)
    with pytest.raises(UnsupportedModelError, match=message):
        build.prepare_engine(ModelOptions(model_id=str(root), engine_cache=str(tmp_path / "c")))
