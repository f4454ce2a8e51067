# ruff: noqa: F811  (fixtures imported from support_api)
"""Issue 10 (Low): a widget token stops working when it expires, when the widget is deactivated and when
its public key rotates — on the HTTP APIs and on an open WebSocket alike."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from widgets.models import ChatWidget
from widgets.tests.support_api import ORIGIN, PAGE, assert_error, chat, init_ok, widget  # noqa: F401


def test_key_rotation_cuts_off_tokens_at_once(client, widget, offline_llm):
    from widgets.services import widget_public_key_rotate

    started = init_ok(client, widget)
    assert chat(client, started["widget_token"], "안녕하세요").status_code == 200
    widget_public_key_rotate(widget=ChatWidget.objects.get(pk=widget.pk))
    assert_error(chat(client, started["widget_token"], "아직 되나요?"), 404, "widget_not_found")
    fresh = init_ok(client, ChatWidget.objects.get(pk=widget.pk))
    assert chat(client, fresh["widget_token"], "새 키로요").status_code == 200


def test_deactivation_cuts_off_tokens(client, widget, offline_llm):
    started = init_ok(client, widget)
    ChatWidget.objects.filter(pk=widget.pk).update(is_active=False)
    assert_error(chat(client, started["widget_token"], "안녕하세요"), 404, "widget_not_found")


# --- the WebSocket ---------------------------------------------------------------------------------

def _init(widget):
    from widgets import services

    check = services.OriginCheck(origin=ORIGIN, page_url=PAGE, preview=False)
    return services.widget_init(widget=widget, check=check, visitor={"id": "visitor-ws-revoke-1"}).as_dict()


async def _joined(token: str) -> WebsocketCommunicator:
    from mejai.asgi import application

    ws = WebsocketCommunicator(application, "/api/widget/ws", headers=[(b"host", b"testserver"),
                                                                      (b"origin", b"http://testserver")])
    assert (await ws.connect())[0]
    await ws.send_json_to({"type": "join", "token": token})
    assert (await ws.receive_json_from(timeout=5))["type"] == "joined"
    return ws


async def _closed_with(ws: WebsocketCommunicator, code: str, close_code: int) -> None:
    frame = await ws.receive_json_from(timeout=10)
    assert frame["type"] == "error" and frame["code"] == code, frame
    closing = await ws.receive_output(timeout=10)
    assert closing == {"type": "websocket.close", "code": close_code}


@pytest.mark.django_db(transaction=True)
async def test_socket_is_closed_when_its_token_expires(widget, monkeypatch):
    from widgets import conf

    monkeypatch.setattr(conf, "token_ttl_seconds", lambda: 1)
    started = await sync_to_async(_init)(widget)
    ws = await _joined(started["widget_token"])
    await _closed_with(ws, "token_expired", 4401)


@pytest.mark.django_db(transaction=True)
async def test_socket_is_closed_when_the_widget_is_deactivated(widget):
    started = await sync_to_async(_init)(widget)
    ws = await _joined(started["widget_token"])

    def deactivate():
        fresh = ChatWidget.objects.get(pk=widget.pk)
        fresh.is_active = False
        fresh.save()

    await sync_to_async(deactivate)()
    await _closed_with(ws, "widget_not_found", 4404)


@pytest.mark.django_db(transaction=True)
async def test_socket_is_closed_when_the_key_rotates(widget):
    from widgets.services import widget_public_key_rotate

    started = await sync_to_async(_init)(widget)
    ws = await _joined(started["widget_token"])
    await sync_to_async(lambda: widget_public_key_rotate(widget=ChatWidget.objects.get(pk=widget.pk)))()
    await _closed_with(ws, "widget_not_found", 4404)


@pytest.mark.django_db(transaction=True)
async def test_other_saves_leave_the_socket_open(widget):
    started = await sync_to_async(_init)(widget)
    ws = await _joined(started["widget_token"])

    def rename():
        fresh = ChatWidget.objects.get(pk=widget.pk)
        fresh.name = "새 이름"
        fresh.save()

    await sync_to_async(rename)()
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from(timeout=5) == {"type": "pong"}
    await ws.disconnect()
