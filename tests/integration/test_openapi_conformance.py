"""The OpenAPI document states what the server accepts: a seeded, bounded schemathesis pass
(positive and negative data, every check) against fake-engine servers on 127.0.0.1.

Each server is tested on the operations its model kind serves (an embedding model's
/predict is a 424 by design). Expected statuses follow the error classes, so that moving
a class to another status moves the document and this test with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import orjson
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from starlette.applications import Starlette

from tei_ort.errors import BodyError, EmptyError, PayloadTooLargeError, ValidationError
from tei_ort.http.app import create_app
from tei_ort.model.tokenization import Tokenizer
from tests.support.app import MINILM_DIR, fake_model, settings
from tests.support.live import ieee_floats, live_server

#: examples per operation and generation phase: bounded, so that make test stays short
EXAMPLES = 12
SEED = 15

#: operations that are not an embedding model's (answered 424 by design)
NOT_EMBEDDING = ("/predict", "/rerank", "/v1/rerank", "/v2/rerank", "/embed_sparse")
#: the operations a re-ranker serves (the others are an embedding model's)
RERANKER = ("/predict", "/rerank", "/v1/rerank", "/v2/rerank", "/", "/invocations", "/vertex")
#: the operations a SPLADE model serves differently (POST / is its /embed_sparse)
SPLADE = ("/embed_sparse", "/", "/invocations", "/vertex")


def _statuses(*errors: type[Exception]) -> list[str]:
    return sorted({str(error.status_code) for error in errors})  # type: ignore[attr-defined]


def _config(*, pairs: bool) -> SchemathesisConfig:
    """``pairs``: the server's inputs are (query, text) pairs, refused (400, as in TEI) when
    both texts are empty, which a schema of each text alone cannot say."""
    refused = _statuses(ValidationError, PayloadTooLargeError, BodyError, EmptyError)
    checks: dict[str, Any] = {
        # a refusal is a 4xx of the error classes (or a framework 404/405/415)
        "negative_data_rejection": {"expected-statuses": [*refused, "404", "405", "415"]},
    }
    if pairs:
        checks["positive_data_acceptance"] = {"expected-statuses": ["2xx", *_statuses(EmptyError)]}
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": EXAMPLES, "deterministic": True, "mode": "all"},
            "checks": checks,
        }
    )


def _document(app: Starlette) -> dict[str, Any]:
    """The document the app serves (built from its model and flags, no engine needed)."""
    document: dict[str, Any] = orjson.loads(app.state.api.openapi_bytes)
    return document


# built at import: schemathesis makes one test per operation when the module is collected
_TOKENIZER = Tokenizer.from_dir(MINILM_DIR)
EMBEDDING_APP = create_app(
    settings(), fake_model(_TOKENIZER, "embedding", prompts={"query": "query: "})
)
RERANKER_APP = create_app(settings(), fake_model(_TOKENIZER, "reranker"))
SPLADE_APP = create_app(settings(), fake_model(_TOKENIZER, "splade"))


def _without_chunks(document: dict[str, Any]) -> dict[str, Any]:
    """/embed's late-chunking fields left out: whether a span fits its input is a rule on
    the text that no schema can state (test_http_late.py covers them)."""
    properties = document["components"]["schemas"]["EmbedRequest"]["properties"]
    properties.pop("chunks")
    properties.pop("late")
    return document


embedding_schema = schemathesis.openapi.from_dict(
    _without_chunks(_document(EMBEDDING_APP)), config=_config(pairs=False)
).exclude(path=list(NOT_EMBEDDING))
reranker_schema = schemathesis.openapi.from_dict(
    _document(RERANKER_APP), config=_config(pairs=True)
).include(path=list(RERANKER))


splade_schema = schemathesis.openapi.from_dict(
    _document(SPLADE_APP), config=_config(pairs=False)
).include(path=list(SPLADE))


@pytest.fixture(scope="module")
def splade_server() -> Iterator[str]:
    with live_server(SPLADE_APP) as url:
        yield url


@pytest.fixture(scope="module")
def embedding_server() -> Iterator[str]:
    with live_server(EMBEDDING_APP) as url:
        yield url


@pytest.fixture(scope="module")
def reranker_server() -> Iterator[str]:
    with live_server(RERANKER_APP) as url:
        yield url


@pytest.fixture(autouse=True)
def _subnormal_floats() -> Iterator[None]:
    with ieee_floats():
        yield


_SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)


@embedding_schema.parametrize()
@_SETTINGS
def test_embedding_server_conforms(case: Any, embedding_server: str) -> None:
    case.call_and_validate(base_url=embedding_server)


@reranker_schema.parametrize()
@_SETTINGS
def test_reranker_server_conforms(case: Any, reranker_server: str) -> None:
    case.call_and_validate(base_url=reranker_server)


@splade_schema.parametrize()
@_SETTINGS
def test_splade_server_conforms(case: Any, splade_server: str) -> None:
    case.call_and_validate(base_url=splade_server)
