"""/api/docs/ serves Swagger UI from the project's own static files, pinned (issue 10 Low; issue 11.6)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_docs_page_loads_nothing_from_a_cdn(client):
    page = client.get("/api/docs/").content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page) + re.findall(r'"(/static/[^"]+)"', page)
    assert any("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in s for s in sources), sources
    assert "cdn" not in page.lower() and "@latest" not in page
    for source in sources:
        assert not urlsplit(source).netloc, source  # same origin only
        if source.startswith("/static/"):
            assert client.get(source).status_code == 200, source


def test_sidecar_is_pinned():
    pins = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^drf-spectacular-sidecar==\d", pins, re.M)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_docs_render_offline_in_a_browser(live_server_asgi, browser):
    outside: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 800})

    def offline(route):
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            return route.continue_()
        outside.append(route.request.url)
        return route.abort()

    page.route("**/*", offline)  # no network but this server: as on a machine without internet
    page.goto(f"{live_server_asgi.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
    assert "mejai API" in page.text_content(".swagger-ui .info .title")
    page.wait_for_selector(".opblock-tag", timeout=20_000)
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "test-artifacts" / "api-docs-1280.png"))
    page.close()
    assert outside == []
