"""The OpenAPI docs at ``/schema`` with no internet: Swagger UI served by the service itself.

Swagger UI's files come from the ``swagger-ui-bundle-v2`` package (the Swagger UI release,
unchanged, as a Python package), served under ``/schema/assets``; Litestar's
:class:`~litestar.openapi.plugins.SwaggerRenderPlugin` renders the page with those URLs instead
of a CDN's. The page loads no font: Swagger UI's stylesheet names only installed ones.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import OpenAPIRenderPlugin, SwaggerRenderPlugin
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

SCHEMA_PATH = "/schema"
ASSETS_PATH = f"{SCHEMA_PATH}/assets"


def render_plugins() -> list[OpenAPIRenderPlugin]:
    """Swagger UI at ``/schema`` (``/schema/openapi.json`` is added by Litestar)."""
    return [
        SwaggerRenderPlugin(
            path="/",
            js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            css_url=f"{ASSETS_PATH}/swagger-ui.css",
            standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
        )
    ]


def assets_router() -> Router:
    """Swagger UI's scripts, stylesheet and icons, cached for a day."""
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[Path(str(swagger_ui_path))],
        name="schema-assets",
        cache_control=CacheControlHeader(max_age=24 * 3600, public=True),
        include_in_schema=False,
    )
