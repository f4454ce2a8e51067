# ruff: noqa: F811  (fixtures imported from support_api)
"""Issue 10 (Low): open streams are capped per visitor (and per address and widget), SSE and WebSocket alike."""

from __future__ import annotations

import time

import httpx
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from widgets.streams import stream_open_count
from widgets.tests.support_api import ORIGIN, PAGE, widget  # noqa: F401


def _init(widget, visitor_id="visitor-streams-1"):
    from widgets import services

    check = services.OriginCheck(origin=ORIGIN, page_url=PAGE, preview=False)
    return services.widget_init(widget=widget, check=check, visitor={"id": visitor_id}).as_dict()


def _wait_for(predicate, what: str):
    deadline = time.monotonic() + 10
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_sse_streams_per_visitor_are_capped(live_server_asgi, widget, settings):
    settings.WIDGET_STREAMS_PER_VISITOR = 2
    settings.WIDGET_RATE_STREAM_VISITOR = 0
    started = _init(widget)
    other = _init(widget, visitor_id="visitor-streams-2")
    key = f"visitor:{widget.pk}:visitor:visitor-streams-1"

    def open_stream(client, token):
        stream = client.stream("GET", "/api/widget/stream", headers={"Authorization": f"Bearer {token}",
                                                                     "Origin": ORIGIN})
        response = stream.__enter__()
        if response.status_code == 200:
            chunks = response.iter_bytes()  # kept: dropping the iterator would close the stream
            next(chunks)  # subscribed: the stream is really open
            readers.append(chunks)
        return stream, response

    readers = []
    with httpx.Client(base_url=live_server_asgi.url, timeout=10) as client:
        streams = []
        for _ in range(2):
            stream, response = open_stream(client, started["widget_token"])
            assert response.status_code == 200
            streams.append(stream)
        assert stream_open_count(key) == 2
        third = client.get("/api/widget/stream", headers={"Authorization": f"Bearer {started['widget_token']}",
                                                          "Origin": ORIGIN})
        assert third.status_code == 429 and third.json()["error"]["code"] == "too_many_streams"
        # Another visitor of the same widget is not affected.
        stream, response = open_stream(client, other["widget_token"])
        assert response.status_code == 200
        stream.__exit__(None, None, None)
        # Closing a stream gives its slot back.
        streams.pop().__exit__(None, None, None)
        _wait_for(lambda: stream_open_count(key) == 1, "the closed stream's slot")
        stream, response = open_stream(client, started["widget_token"])
        assert response.status_code == 200
        stream.__exit__(None, None, None)
        for s in streams:
            s.__exit__(None, None, None)
    _wait_for(lambda: stream_open_count(key) == 0, "every slot back")


@pytest.mark.django_db(transaction=True)
async def test_websocket_joins_per_visitor_are_capped(widget, settings):
    from mejai.asgi import application

    settings.WIDGET_STREAMS_PER_VISITOR = 2
    settings.WIDGET_RATE_STREAM_VISITOR = 0
    started = await sync_to_async(_init)(widget)

    async def join():
        ws = WebsocketCommunicator(application, "/api/widget/ws", headers=[(b"host", b"testserver")])
        assert (await ws.connect())[0]
        await ws.send_json_to({"type": "join", "token": started["widget_token"]})
        return ws, await ws.receive_json_from(timeout=5)

    first, second = await join(), await join()
    assert first[1]["type"] == "joined" and second[1]["type"] == "joined"
    third, frame = await join()
    assert frame["type"] == "error" and frame["code"] == "too_many_streams"
    await first[0].disconnect()
    again, frame = await join()
    assert frame["type"] == "joined"
    for ws in (second[0], third, again):
        await ws.disconnect()
    assert stream_open_count(f"visitor:{widget.pk}:visitor:visitor-streams-1") == 0
