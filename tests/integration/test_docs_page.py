"""/docs as a person sees it: headless Chromium with no way out but 127.0.0.1.

The page must render every operation of our OpenAPI document from the files the server
itself serves (TEI builds Swagger UI into its binary; air-gapped users are its audience).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from tei_ort.http.app import create_app
from tei_ort.http.openapi import openapi_document
from tests.support.app import settings
from tests.support.browser import live_server, offline_run, screenshot


def test_docs_render_every_operation_offline(make_model: Any, tmp_path: Path) -> None:
    app = create_app(settings(api_key="secret"), make_model())
    with live_server(app) as url:
        redirect = httpx.get(f"{url}/docs", follow_redirects=False)
        assert redirect.status_code == 303 and redirect.headers["location"] == "/docs/"
        dom = offline_run(f"{url}/docs", "--dump-dom")
        picture = tmp_path / "docs.png"
        screenshot(f"{url}/docs/", picture)
    rendered = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    expected = set(openapi_document()["paths"])
    assert rendered == expected, (expected - rendered, rendered - expected)
    # every operation, one block per method (GET and POST on /)
    blocks = re.findall(r'class="opblock opblock-(get|post)"', dom)
    operations = sum(len(item) for item in openapi_document()["paths"].values())
    assert len(blocks) == operations
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert picture.stat().st_size > 20_000  # a rendered page, not a blank one


def test_docs_files_are_served_and_nothing_else(make_model: Any) -> None:
    app = create_app(settings(api_key="secret"), make_model())
    with live_server(app) as url:
        page = httpx.get(f"{url}/docs/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "http" not in page.text.replace('lang="en"', "")  # no other host named
        for name in re.findall(r'(?:src|href)="\./([^"]+)"', page.text):
            asset = httpx.get(f"{url}/docs/{name}")
            assert asset.status_code == 200 and asset.content, name
        initializer = httpx.get(f"{url}/docs/swagger-initializer.js").text
        assert '"/api-doc/openapi.json"' in initializer and "validatorUrl: null" in initializer
        assert httpx.get(f"{url}/docs/swagger-ui.js.map").status_code == 404
        assert httpx.get(f"{url}/docs/%2e%2e%2fpyproject.toml").status_code == 404


def test_every_request_body_may_name_the_model() -> None:
    """The body parser takes `model` on every route (ignored with one model): so does the
    document, whose bodies allow no other unlisted field."""
    schemas = openapi_document()["components"]["schemas"]
    bodies = [s for n, s in schemas.items() if n.endswith("Request") and "properties" in s]
    # TEI's 10, /embed_sparse's apart from /embed_all's (which takes the late-interaction
    # fields), Cohere's embed v2 and v1
    assert len(bodies) == 13
    for schema in bodies:
        assert schema["additionalProperties"] is False
        assert "ignored" in schema["properties"]["model"]["description"]
    similarity = schemas["SimilarityRequest"]["properties"]["parameters"]
    assert "model" in similarity["properties"]
