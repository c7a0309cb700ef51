"""Real client libraries against the in-process app: the openai SDK (float and base64)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import openai
import pytest
from starlette.testclient import TestClient

from tei_ort.http.app import create_app
from tests.support.app import reference_embedding, settings


def test_openai_sdk_float_and_base64(make_model: Any) -> None:
    model = make_model()
    app = create_app(settings(served_model_name="tei-ort-test", api_key="sk-test"), model)
    with TestClient(app, base_url="http://testserver") as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="sk-test", http_client=http)
        texts = ["The food was delicious", "and the waiter was nice"]
        for encoding in ("float", "base64"):
            result = client.embeddings.create(
                model="anything",
                input=texts,
                encoding_format=encoding,  # type: ignore[arg-type]
            )
            assert result.model == "tei-ort-test"
            assert [d.index for d in result.data] == [0, 1]
            for text, item in zip(texts, result.data, strict=True):
                vector = item.embedding
                if encoding == "base64":  # asked for explicitly, the SDK hands the string over
                    assert isinstance(vector, str)
                    vector = np.frombuffer(base64.b64decode(vector), dtype="<f4")
                np.testing.assert_allclose(
                    vector, reference_embedding(model, text), rtol=1e-5, atol=1e-6
                )
            assert result.usage.prompt_tokens == result.usage.total_tokens > 0
        # the SDK's default (no encoding_format) asks for base64 and decodes it itself
        default = client.embeddings.create(model="anything", input="hello")
        np.testing.assert_allclose(
            default.data[0].embedding, reference_embedding(model, "hello"), rtol=1e-5, atol=1e-6
        )
        short = client.embeddings.create(model="x", input="hello", dimensions=8)
        assert len(short.data[0].embedding) == 8
        with pytest.raises(openai.BadRequestError) as bad:
            client.embeddings.create(model="x", input=[])
        assert bad.value.status_code == 400
        wrong_key = openai.OpenAI(base_url="http://testserver/v1", api_key="nope", http_client=http)
        with pytest.raises(openai.AuthenticationError):
            wrong_key.embeddings.create(model="x", input="hello")
