"""Typed embeddings through the in-process app (fake engine): /embed's ``embedding_type``,
/v1/embeddings' extension, Cohere's /v2/embed and /v1/embed, /info, and their errors."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from tei_ort.errors import ConfigurationError
from tei_ort.http.app import create_app
from tei_ort.model.calibration import calibration_texts
from tei_ort.serving.embedding_types import Ranges, quantize, ranges_of
from tei_ort.serving.pooling import l2_normalize
from tests.support.app import reference_embedding, serve, settings

pytestmark = pytest.mark.anyio

TEXTS = ["The food was delicious", "and the waiter was nice", "héllo wörld"]
PROMPTS = {"query": "query: ", "passage": "passage: "}


def _calibration(model: Any, dimensions: int | None = None, normalize: bool = True) -> Ranges:
    """The ranges computed independently: the set's texts one by one, cut, normalized."""
    raw = np.stack([reference_embedding(model, t, normalize=False) for t in calibration_texts()])
    cut = raw[:, :dimensions] if dimensions is not None else raw
    return ranges_of(l2_normalize(cut) if normalize else cut)


async def test_int8_uint8_use_the_calibrated_ranges_of_the_request_shape(make_model: Any) -> None:
    model = make_model(prompts=PROMPTS)
    async with serve(create_app(settings(), model)) as client:
        info = (await client.get("/info")).json()
        full = _calibration(model)
        quant = info["quantization"]
        assert quant["set"] == "calibration-v1" and quant["texts"] == len(calibration_texts())
        assert quant["normalized_ranges"]["min"] == full.lo.tolist()
        assert quant["normalized_ranges"]["max"] == full.hi.tolist()
        assert info["embedding_types"] == ["float", "int8", "uint8", "binary", "ubinary"]
        assert info["input_types"] == {"search_query": "query", "search_document": "passage"}

        floats = np.asarray(
            (await client.post("/embed", json={"inputs": TEXTS})).json(), np.float32
        )
        for kind, unsigned in (("int8", False), ("uint8", True)):
            got = await client.post("/embed", json={"inputs": TEXTS, "embedding_type": kind})
            assert got.status_code == 200, got.text
            assert got.json() == quantize(floats, full, unsigned=unsigned).tolist()
        # Matryoshka: cut to 16, normalized again, over ranges calibrated the same way (not
        # a slice of the full ranges, which would clip the renormalized values)
        cut = _calibration(model, 16)
        assert not np.array_equal(cut.hi, full.hi[:16])
        short = np.asarray(
            (await client.post("/embed", json={"inputs": TEXTS, "dimensions": 16})).json(),
            np.float32,
        )
        body = {"inputs": TEXTS, "dimensions": 16, "embedding_type": "int8"}
        assert (await client.post("/embed", json=body)).json() == quantize(
            short, cut, unsigned=False
        ).tolist()
        # without normalization: the ranges of the raw vectors
        raw = np.asarray(
            (await client.post("/embed", json={"inputs": TEXTS, "normalize": False})).json(),
            np.float32,
        )
        body = {"inputs": TEXTS, "normalize": False, "embedding_type": "uint8"}
        assert (await client.post("/embed", json=body)).json() == quantize(
            raw, _calibration(model, normalize=False), unsigned=True
        ).tolist()


async def test_a_vector_does_not_depend_on_its_batch(make_model: Any) -> None:
    async with serve(create_app(settings(), make_model())) as client:
        together = await client.post("/embed", json={"inputs": TEXTS, "embedding_type": "int8"})
        for index, text in enumerate(TEXTS):
            alone = await client.post("/embed", json={"inputs": text, "embedding_type": "int8"})
            assert alone.json()[0] == together.json()[index]


async def test_binary_base64_and_openai_extension(make_model: Any) -> None:
    model = make_model()
    async with serve(create_app(settings(), model)) as client:
        floats = np.stack([reference_embedding(model, t) for t in TEXTS])  # (3, 32)
        ubinary = await client.post("/embed", json={"inputs": TEXTS, "embedding_type": "ubinary"})
        assert ubinary.json() == np.packbits(floats > 0, axis=-1).tolist()
        binary = await client.post("/embed", json={"inputs": TEXTS, "embedding_type": "binary"})
        assert binary.json() == (np.packbits(floats > 0, axis=-1).astype(int) - 128).tolist()
        b64 = await client.post(
            "/embed",
            json={"inputs": TEXTS, "embedding_type": "binary", "encoding_format": "base64"},
        )
        assert [list(np.frombuffer(base64.b64decode(s), np.int8)) for s in b64.json()] == (
            binary.json()
        )
        body = {"input": TEXTS, "embedding_type": "ubinary", "encoding_format": "base64"}
        openai = (await client.post("/v1/embeddings", json=body)).json()
        decoded = [
            list(np.frombuffer(base64.b64decode(d["embedding"]), np.uint8)) for d in openai["data"]
        ]
        assert decoded == ubinary.json()
        plain = await client.post(
            "/v1/embeddings", json={"input": TEXTS[0], "embedding_type": "int8"}
        )
        assert all(isinstance(v, int) for v in plain.json()["data"][0]["embedding"])


async def test_cohere_v2_and_v1_shapes_prompts_and_truncation(make_model: Any) -> None:
    model = make_model(prompts=PROMPTS, max_input_length=8)
    async with serve(create_app(settings(served_model_name="mini"), model)) as client:
        body = {
            "model": "mini",
            "texts": TEXTS[:2],
            "input_type": "search_query",
            "embedding_types": ["int8", "float", "base64", "ubinary"],
        }
        answer = await client.post("/v2/embed", json=body)
        assert answer.status_code == 200, answer.text
        data = answer.json()
        assert list(data["embeddings"]) == ["int8", "float", "base64", "ubinary"]
        assert data["texts"] == TEXTS[:2] and data["response_type"] == "embeddings_by_type"
        assert data["meta"]["api_version"] == {"version": "2"}
        assert data["meta"]["billed_units"]["input_tokens"] > 0
        as_query = (
            await client.post("/embed", json={"inputs": TEXTS[:2], "prompt_name": "query"})
        ).json()
        np.testing.assert_allclose(data["embeddings"]["float"], as_query, rtol=1e-6)
        decoded = np.frombuffer(base64.b64decode(data["embeddings"]["base64"][0]), "<f4")
        assert decoded.tolist() == np.asarray(data["embeddings"]["float"][0], np.float32).tolist()
        # search_document maps to the `passage` prompt; classification has none: as is
        for input_type, prompt_name in (("search_document", "passage"), ("classification", None)):
            cohere = await client.post(
                "/v2/embed", json={"model": "mini", "texts": TEXTS[:1], "input_type": input_type}
            )
            embed = {"inputs": TEXTS[:1], "prompt_name": prompt_name}
            expected = (await client.post("/embed", json=embed)).json()
            np.testing.assert_allclose(cohere.json()["embeddings"]["float"], expected, rtol=1e-6)
        # output_dimension is Matryoshka's dimensions
        cut = await client.post(
            "/v2/embed", json={"model": "mini", "texts": ["a"], "output_dimension": 16}
        )
        assert len(cut.json()["embeddings"]["float"][0]) == 16
        # truncate: END keeps the start, START keeps the end, NONE refuses (Cohere's error)
        long_text = "one two three four five six seven eight nine ten eleven twelve"
        for truncate, direction in (("END", "right"), ("START", "left")):
            cohere = await client.post(
                "/v2/embed", json={"model": "m", "texts": [long_text], "truncate": truncate}
            )
            embed = {"inputs": long_text, "truncate": True, "truncation_direction": direction}
            expected = (await client.post("/embed", json=embed)).json()
            np.testing.assert_allclose(cohere.json()["embeddings"]["float"], expected, rtol=1e-6)
        refused = await client.post(
            "/v2/embed", json={"model": "m", "texts": [long_text], "truncate": "NONE"}
        )
        assert refused.status_code == 422 and set(refused.json()) == {"id", "message"}
        # v1: without embedding_types, the floats form
        v1 = (await client.post("/v1/embed", json={"texts": TEXTS[:1]})).json()
        assert v1["response_type"] == "embeddings_floats"
        assert np.asarray(v1["embeddings"]).shape == (1, 32)
        v1_typed = (
            await client.post("/v1/embed", json={"texts": TEXTS[:1], "embedding_types": ["uint8"]})
        ).json()
        assert v1_typed["response_type"] == "embeddings_by_type"
        assert list(v1_typed["embeddings"]) == ["uint8"]


@pytest.mark.parametrize(
    ("path", "body", "shape", "needle"),
    [
        ("/embed", {"inputs": "a", "embedding_type": "int4"}, "tei", "embedding_type"),
        ("/embed", {"inputs": "a", "embedding_type": "binary", "dimensions": 12}, "tei", "12 dim"),
        ("/embed", {"inputs": "a", "encoding_format": "hex"}, "tei", "encoding_format"),
        ("/v1/embeddings", {"input": "a", "embedding_type": "x"}, "openai", "embedding_type"),
        ("/v2/embed", {"model": "m", "texts": ["a"], "truncate": "MIDDLE"}, "cohere", "truncate"),
        (
            "/v2/embed",
            {"model": "m", "texts": ["a"], "embedding_types": ["int4"]},
            "cohere",
            "int4",
        ),
        (
            "/v2/embed",
            {"model": "m", "texts": ["a"], "embedding_types": ["binary"], "output_dimension": 12},
            "cohere",
            "multiple of 8",
        ),
        ("/v2/embed", {"model": "m", "texts": "a"}, "cohere", "texts"),
        ("/v2/embed", {"model": "m", "texts": ["a"], "max_tokens": 4}, "cohere", "max_tokens"),
        ("/v2/embed", {"model": "m", "texts": ["a"], "images": ["data:"]}, "cohere", "images"),
        ("/v1/embed", {"texts": ["a"], "truncate": "middle"}, "cohere", "truncate"),
    ],
)
async def test_bad_values_are_422_in_the_route_s_format(
    make_model: Any, path: str, body: dict[str, Any], shape: str, needle: str
) -> None:
    async with serve(create_app(settings(), make_model())) as client:
        answer = await client.post(path, json=body)
        assert answer.status_code == 422, answer.text
        data = answer.json()
        if shape == "tei":
            assert set(data) == {"error", "error_type"} and data["error_type"] == "Validation"
            message = data["error"]
        elif shape == "openai":
            assert set(data) == {"message", "code", "type"} and data["code"] == 422
            message = data["message"]
        else:
            assert set(data) == {"id", "message"}
            message = data["message"]
        assert needle in message
        assert (await client.post("/embed", json={"inputs": "still serving"})).status_code == 200


async def test_input_type_prompt_overrides_the_mapping(make_model: Any) -> None:
    config = settings(input_type_prompt=("search_document=query",))
    async with serve(create_app(config, make_model(prompts=PROMPTS))) as client:
        info = (await client.get("/info")).json()
        assert info["input_types"]["search_document"] == "query"
        body = {"model": "m", "texts": TEXTS[:1], "input_type": "search_document"}
        cohere = (await client.post("/v2/embed", json=body)).json()
        embed = {"inputs": TEXTS[:1], "prompt_name": "query"}
        expected = (await client.post("/embed", json=embed)).json()
        np.testing.assert_allclose(cohere["embeddings"]["float"], expected, rtol=1e-6)
    with pytest.raises(ConfigurationError, match="no prompt `nope`"):
        create_app(settings(input_type_prompt=("search_query=nope",)), make_model(prompts=PROMPTS))


async def test_a_failed_calibration_refuses_only_int8_and_uint8(
    make_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tei_ort.serving.calibration as calibration

    def fail(*_: Any) -> Any:
        raise RuntimeError("no calibration today")

    monkeypatch.setattr(calibration, "calibration_vectors", fail)
    async with serve(create_app(settings(), make_model())) as client:
        assert (await client.get("/info")).json()["quantization"] is None
        for kind in ("float", "binary", "ubinary"):
            body = {"inputs": TEXTS, "embedding_type": kind}
            assert (await client.post("/embed", json=body)).status_code == 200
        for kind in ("int8", "uint8"):
            refused = await client.post("/embed", json={"inputs": TEXTS, "embedding_type": kind})
            assert refused.status_code == 503 and "calibrated ranges" in refused.json()["error"]
