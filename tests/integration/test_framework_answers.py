"""What TEI's framework (axum) answers before a route runs: 415 for a body not declared JSON,
404 / 405 with empty bodies, and the API key guarding only the routes it guards."""

from __future__ import annotations

from typing import Any

import pytest

from tei_ort.http.app import create_app
from tei_ort.http.framework import JSON_CONTENT_TYPE_REQUIRED, is_json_content_type
from tests.support.app import serve, settings

pytestmark = pytest.mark.anyio

BODY = b'{"inputs": "x"}'
KEY = {"authorization": "Bearer secret"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/vnd.api+json", True),
        ("application/problem+json;q=1", True),
        (None, False),
        ("", False),
        ("text/plain", False),
        ("application/x-www-form-urlencoded", False),
        ("text/json", False),
        ("application/jsonx", False),
        ("application/json garbage", False),
        ("application/", False),
        ("multipart/form-data; boundary=x", False),
    ],
)
def test_json_content_types_are_axums(value: str | None, expected: bool) -> None:
    assert is_json_content_type(value) is expected


async def test_a_body_not_declared_json_is_415(make_model: Any) -> None:
    async with serve(create_app(settings(), make_model())) as client:
        for path in ("/embed", "/v1/embeddings", "/tokenize", "/vertex", "/"):
            for headers in ({}, {"content-type": "text/plain"}, {"content-type": "text/json"}):
                response = await client.post(path, content=BODY, headers=headers)
                assert response.status_code == 415, (path, headers)
                assert response.text == JSON_CONTENT_TYPE_REQUIRED
                assert response.headers["content-type"].startswith("text/plain")
        for kind in ("application/json; charset=utf-8", "application/vnd.api+json"):
            response = await client.post("/embed", content=BODY, headers={"content-type": kind})
            assert response.status_code == 200, kind
        # refused before the body is read: 415 beats 413, and nothing is counted
        big = b"x" * 3_000_000
        response = await client.post("/embed", content=big, headers={"content-type": "text/plain"})
        assert response.status_code == 415
        # only the two JSON requests were counted
        assert 'te_request_count{method="single"} 2\n' in (await client.get("/metrics")).text


async def test_a_simple_cross_origin_post_cannot_pass_a_restrictive_cors_list(
    make_model: Any,
) -> None:
    """A text/plain POST needs no preflight: without the 415 it would run the model."""
    model = make_model()
    app = create_app(settings(cors_allow_origin=("http://allowed.example",)), model)
    async with serve(app) as client:
        runs = len(model.engine.calls)  # the start-up probe ran
        response = await client.post(
            "/embed",
            content=BODY,
            headers={"origin": "http://evil.example", "content-type": "text/plain"},
        )
        assert response.status_code == 415
        assert "access-control-allow-origin" not in response.headers
        assert len(model.engine.calls) == runs


async def test_unknown_path_and_wrong_method_have_empty_bodies(make_model: Any) -> None:
    async with serve(create_app(settings(), make_model())) as client:
        for response in (await client.post("/nope", json={}), await client.get("/nope")):
            assert response.status_code == 404 and response.content == b""
        wrong = await client.get("/embed")
        assert wrong.status_code == 405 and wrong.content == b""
        assert wrong.headers["allow"] == "POST"
        health = await client.post("/health", json={})
        assert health.status_code == 405 and health.headers["allow"] == "GET,HEAD"
        root = await client.put("/", json={})
        assert root.status_code == 405 and root.headers["allow"] == "POST,GET,HEAD"


async def test_the_api_key_guards_only_guarded_routes(make_model: Any) -> None:
    async with serve(create_app(settings(api_key="secret"), make_model())) as client:
        # unknown paths are 404 with or without the key (TEI: not 401)
        assert (await client.post("/nope", json={})).status_code == 404
        assert (await client.get("/v3/anything")).status_code == 404
        assert (await client.post("/nope", json={}, headers=KEY)).status_code == 404
        # a guarded path: any method needs the key; with it, a wrong method is 405
        unauthorized = 401
        assert (await client.get("/embed")).status_code == unauthorized
        assert (await client.get("/embed", headers=KEY)).status_code == 405
        assert (await client.get("/info")).status_code == unauthorized
        assert (await client.get("/info", headers=KEY)).status_code == 200
        # / is public for GET/HEAD (health) and 405 for other methods; POST needs the key
        assert (await client.put("/", json={})).status_code == 405
        assert (await client.get("/")).status_code == 200
        assert (await client.post("/", json={"inputs": "x"})).status_code == unauthorized
        # the key is checked before the content type (401 beats 415), as in TEI
        plain = {"content-type": "text/plain"}
        assert (await client.post("/embed", content=BODY, headers=plain)).status_code == 401
        with_key = {**plain, **KEY}
        assert (await client.post("/embed", content=BODY, headers=with_key)).status_code == 415
