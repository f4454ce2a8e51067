"""Helpers shared by the widget API tests (fixtures are imported by the test modules)."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync

ORIGIN = "https://shop.example.com"
PAGE = ORIGIN + "/products/1"


@pytest.fixture
def widget(organization, agent):
    from widgets.models import ChatWidget

    return ChatWidget.objects.create(
        organization=organization, agent=agent, name="Shop",
        allowed_domains=["shop.example.com", "*.example.org", "localhost:*"],
        theme={"color": "#ff5500", "greeting": "안녕하세요!"},
    )


@pytest.fixture
def other_widget(organization, agent):
    from widgets.models import ChatWidget

    return ChatWidget.objects.create(organization=organization, agent=agent, name="Blog",
                                     allowed_domains=["blog.example.com"])


def post_json(client, url, body, *, token=None, origin=ORIGIN, **extra):
    headers = {}
    if token:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    if origin:
        headers["HTTP_ORIGIN"] = origin
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **headers, **extra)


def init(client, widget, *, origin=ORIGIN, page_url=PAGE, visitor=None, **body):
    payload = {"public_key": widget.public_key, "page_url": page_url, "visitor": visitor if visitor is not None else {"id": "visitor-aaaa-1"}}
    payload.update(body)
    return post_json(client, "/api/widget/init", payload, origin=origin)


def init_ok(client, widget, **kw) -> dict:
    response = init(client, widget, **kw)
    assert response.status_code == 200, response.content
    return response.json()


def chat(client, token, message, **body):
    extra = {k: body.pop(k) for k in list(body) if k.startswith("HTTP_") or k == "QUERY_STRING"}
    return post_json(client, "/api/widget/chat", {"message": message, **body}, token=token, **extra)


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]


async def _collect(chunks) -> list[bytes]:
    return [chunk async for chunk in chunks]


def sse_parse(raw: str) -> list[tuple[str | None, str, dict]]:
    events = []
    for block in raw.split("\n\n"):
        event_id = name = data = None
        for line in block.splitlines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if name:
            events.append((event_id, name, data))
    return events


def sse_events(response) -> list[tuple[str | None, str, dict]]:
    return sse_parse(b"".join(async_to_sync(_collect)(response.streaming_content)).decode())
