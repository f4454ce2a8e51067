# ruff: noqa: F811  (fixtures imported from support_api)
"""The widget WebSocket: join, user_message, ping, other tabs, origins and bad frames."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from runtime.models import Turn
from widgets.tests.support_api import ORIGIN, PAGE, widget  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def _init(widget, visitor_id="visitor-aaaa-1"):
    from widgets import services

    check = services.OriginCheck(origin=ORIGIN, page_url=PAGE, preview=False)
    return services.widget_init(widget=widget, check=check, visitor={"id": visitor_id}).as_dict()


async def connect(origin: str | None = "http://testserver"):
    from mejai.asgi import application

    headers = [(b"host", b"testserver")]
    if origin:
        headers.append((b"origin", origin.encode()))
    communicator = WebsocketCommunicator(application, "/api/widget/ws", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def receive_until(communicator, kind: str, timeout=5.0) -> list[dict]:
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        frames.append(frame)
        if frame["type"] == kind:
            return frames


async def test_join_message_ping(widget, fake_llm):
    fake_llm.config.reply = "하나 둘 셋"
    started = await sync_to_async(_init)(widget)
    ws = await connect()
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from() == {"type": "pong"}
    await ws.send_json_to({"type": "join", "token": started["widget_token"]})
    assert await ws.receive_json_from() == {"type": "joined", "session_id": started["session_id"]}
    await ws.send_json_to({"type": "user_message", "message": "세어 줘", "client_message_id": "c-1"})
    frames = await receive_until(ws, "assistant_message")
    deltas = [f for f in frames if f["type"] == "delta"]
    assert "".join(f["text"] for f in deltas) == "하나 둘 셋" and len(deltas) >= 3
    final = frames[-1]
    assert final["message"] == "하나 둘 셋" and final["session_id"] == started["session_id"]
    assert set(final) >= {"quick_replies", "render_plan", "response_schema", "turn_id"}
    turn = await sync_to_async(Turn.objects.get)(pk=final["turn_id"])
    assert turn.client_message_id == "c-1"
    await ws.disconnect()


async def test_other_tab_socket_receives_turns(widget, fake_llm):
    fake_llm.config.reply = "알겠습니다 고객님"
    started = await sync_to_async(_init)(widget)
    tab1, tab2 = await connect(), await connect(ORIGIN)
    for ws in (tab1, tab2):
        await ws.send_json_to({"type": "join", "token": started["widget_token"]})
        assert (await ws.receive_json_from())["type"] == "joined"
    await tab1.send_json_to({"type": "user_message", "message": "문의"})
    own = await receive_until(tab1, "assistant_message")
    other = await receive_until(tab2, "assistant_message")
    assert [f["text"] for f in other if f["type"] == "delta"] == [f["text"] for f in own if f["type"] == "delta"]
    assert other[-1]["turn_id"] == own[-1]["turn_id"]
    # The sender does not get its own turn twice.
    assert await tab1.receive_nothing(timeout=0.3)
    await tab1.disconnect()
    await tab2.disconnect()


async def test_bad_frames_and_tokens(widget, settings):
    started = await sync_to_async(_init)(widget)
    theirs = await sync_to_async(_init)(widget, "visitor-zzzz-9")
    ws = await connect()
    await ws.send_to(text_data="{not json")
    assert (await ws.receive_json_from())["code"] == "malformed_json"
    await ws.send_json_to([1, 2])
    assert (await ws.receive_json_from())["code"] == "invalid"
    await ws.send_json_to({"type": "dance"})
    assert (await ws.receive_json_from())["code"] == "invalid_type"
    await ws.send_json_to({"type": "user_message", "message": "hi"})
    assert (await ws.receive_json_from())["code"] == "not_joined"
    await ws.send_json_to({"type": "join"})
    assert (await ws.receive_json_from())["code"] == "token_missing"
    await ws.send_json_to({"type": "join", "token": started["widget_token"][:-4] + "AAAA"})
    assert (await ws.receive_json_from())["code"] == "token_invalid"
    await ws.send_json_to({"type": "join", "token": started["widget_token"], "session_id": theirs["session_id"]})
    assert (await ws.receive_json_from())["code"] == "session_not_found"
    await ws.send_json_to({"type": "join", "token": started["widget_token"]})
    assert (await ws.receive_json_from())["type"] == "joined"
    await ws.send_json_to({"type": "user_message", "message": "  "})
    assert (await ws.receive_json_from())["code"] == "empty_message"
    settings.WIDGET_MAX_MESSAGE_CHARS = 10
    await ws.send_json_to({"type": "user_message", "message": "x" * 11})
    assert (await ws.receive_json_from())["code"] == "message_too_long"
    await ws.send_json_to({"type": "user_message", "message": 42})
    assert (await ws.receive_json_from())["code"] == "invalid"
    assert await sync_to_async(Turn.objects.count)() == 0
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from() == {"type": "pong"}  # still open after all of that
    await ws.disconnect()


async def test_socket_from_a_foreign_page_is_closed(widget):
    started = await sync_to_async(_init)(widget)
    ws = await connect("https://evil.com")
    await ws.send_json_to({"type": "join", "token": started["widget_token"]})
    assert (await ws.receive_json_from())["code"] == "origin_not_allowed"
    assert (await ws.receive_output())["type"] == "websocket.close"


async def test_rate_limited_socket_message(widget, settings, offline_llm):
    from django.core.cache import cache

    await sync_to_async(cache.clear)()
    settings.WIDGET_RATE_CHAT_VISITOR = 1
    settings.WIDGET_RATE_CHAT_VISITOR_WINDOW = 86400  # no window boundary within the test
    started = await sync_to_async(_init)(widget)
    ws = await connect()
    await ws.send_json_to({"type": "join", "token": started["widget_token"]})
    await ws.receive_json_from()
    await ws.send_json_to({"type": "user_message", "message": "하나"})
    await receive_until(ws, "assistant_message")
    await ws.send_json_to({"type": "user_message", "message": "둘"})
    error = await ws.receive_json_from()
    assert error["type"] == "error" and error["code"] == "rate_limited" and error["retry_after"] >= 1
    await ws.disconnect()


async def test_expired_token_on_an_open_socket(widget, offline_llm):
    import time

    import jwt

    from widgets.tokens import token_backend

    started = await sync_to_async(_init)(widget)
    payload = jwt.decode(started["widget_token"], options={"verify_signature": False})
    # Within the 5 s leeway the join is accepted; the message after the expiry is not.
    stale = jwt.encode({**payload, "exp": int(time.time()) - 1}, token_backend().signing_key, algorithm="HS256")
    ws = await connect()
    await ws.send_json_to({"type": "join", "token": stale})
    assert (await ws.receive_json_from())["type"] == "joined"
    # Past its expiry the socket is told and closed (issue 10): nothing more is delivered on it.
    assert (await ws.receive_json_from())["code"] == "token_expired"
    assert await ws.receive_output() == {"type": "websocket.close", "code": 4401}
    ws = await connect()
    await ws.send_json_to({"type": "join", "token": started["widget_token"]})  # renewed by re-init
    assert (await ws.receive_json_from())["type"] == "joined"
    await ws.send_json_to({"type": "user_message", "message": "안녕"})
    assert (await receive_until(ws, "assistant_message"))[-1]["session_id"] == started["session_id"]
    await ws.disconnect()


async def test_joins_are_rate_limited(widget, settings):
    from django.core.cache import cache

    await sync_to_async(cache.clear)()
    settings.WIDGET_RATE_STREAM_VISITOR = 2
    settings.WIDGET_RATE_STREAM_VISITOR_WINDOW = 86400  # no window boundary within the test
    started = await sync_to_async(_init)(widget)
    ws = await connect()
    for _ in range(2):
        await ws.send_json_to({"type": "join", "token": started["widget_token"]})
        assert (await ws.receive_json_from())["type"] == "joined"
    await ws.send_json_to({"type": "join", "token": started["widget_token"]})
    assert (await ws.receive_json_from())["code"] == "rate_limited"
    await ws.disconnect()


@pytest.mark.redis
async def test_a_joined_socket_stays_open_on_redis_past_the_blocking_pop(widget, offline_llm):
    """Regression: with REDIS_URL, a joined socket closed 1011 about 6 s in (redis-py's 5 s read timeout
    cut channels_redis's 5 s blocking pop). Idle past that, the socket still answers."""
    import asyncio

    started = await sync_to_async(_init)(widget)
    ws = await connect()
    await ws.send_json_to({"type": "join", "token": started["widget_token"]})
    assert (await ws.receive_json_from())["type"] == "joined"
    await asyncio.sleep(7)  # the idle time is the condition under test, not a wait for state
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from(timeout=5) == {"type": "pong"}
    await ws.send_json_to({"type": "user_message", "message": "안녕"})
    frames = await receive_until(ws, "assistant_message", timeout=10)
    assert frames[-1]["message"]
    await ws.disconnect()
