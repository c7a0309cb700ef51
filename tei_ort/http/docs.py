"""/docs: Swagger UI over our OpenAPI document, served from the installed package.

TEI builds Swagger UI into its binary, so its /docs works without internet; air-gapped
machines are where it runs. The UI's files here come from the ``swagger-ui-bundle`` wheel
(Swagger UI's own distribution files, Apache-2.0), and nothing on the page loads from
another host: the validator badge, which would call out, is off.

Paths as TEI (utoipa-swagger-ui) lays them out: ``/docs`` redirects (303) to ``/docs/``,
which is the page; ``/docs/<file>`` are the UI's files and the initializer that points
it at ``/api-doc/openapi.json``; any other file is a 404.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from swagger_ui_bundle import swagger_ui_path

#: where the API document is served (TEI's path)
OPENAPI_URL = "/api-doc/openapi.json"

#: the UI's files we serve, by name; the package ships more (source maps, ES modules)
ASSETS = frozenset(
    {"swagger-ui.css", "swagger-ui-bundle.js", "favicon-16x16.png", "favicon-32x32.png"}
)

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Text Embeddings Inference API (tei-ort)</title>
  <link rel="stylesheet" href="./swagger-ui.css">
  <link rel="icon" type="image/png" href="./favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="./favicon-16x16.png" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <noscript>The API document: <a href="{openapi}">openapi.json</a>.</noscript>
  <script src="./swagger-ui-bundle.js"></script>
  <script src="./swagger-initializer.js"></script>
</body>
</html>
""".replace("{openapi}", OPENAPI_URL)

INITIALIZER = f"""window.onload = function () {{
  window.ui = SwaggerUIBundle({{
    url: "{OPENAPI_URL}",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null
  }});
}};
"""


def asset_dir() -> Path:
    """The installed Swagger UI files (a directory inside the wheel's package)."""
    return Path(str(swagger_ui_path))


async def _redirect(request: Request) -> Response:
    return RedirectResponse("/docs/", status_code=303)


async def _page(request: Request) -> Response:
    return HTMLResponse(PAGE)


async def _asset(request: Request) -> Response:
    name = request.path_params["file"]
    if name == "swagger-initializer.js":
        return Response(INITIALIZER, media_type="application/javascript")
    if name == "index.html":
        return HTMLResponse(PAGE)
    if name not in ASSETS:
        return Response(status_code=404)
    return FileResponse(asset_dir() / name)


def docs_routes() -> list[BaseRoute]:
    return [
        Route("/docs", _redirect, methods=["GET"]),
        Route("/docs/", _page, methods=["GET"]),
        Route("/docs/{file}", _asset, methods=["GET"]),
    ]
