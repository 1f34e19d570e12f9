"""``/schema`` needs no internet: every script, stylesheet and icon it names is served here."""

from __future__ import annotations

import re

from litestar import Litestar
from litestar.testing import AsyncTestClient


async def test_the_docs_page_names_only_assets_the_service_serves(
    client: AsyncTestClient[Litestar],
) -> None:
    page = await client.get("/schema", headers={"X-API-Key": ""})
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    urls = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    assert len(urls) >= 4, urls  # the script, the preset, the stylesheet, the icon
    for url in urls:
        assert url.startswith("/schema/assets/"), f"{url} is not served by the service"
        asset = await client.get(url, headers={"X-API-Key": ""})
        assert asset.status_code == 200 and len(asset.content) > 100, url
    assert "fonts.googleapis" not in page.text and "cdn" not in page.text.lower()
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "http" not in policy
    document = await client.get("/schema/openapi.json", headers={"X-API-Key": ""})
    assert (
        document.status_code == 200 and "/api/calls/{call_id}/negotiate" in document.json()["paths"]
    )
