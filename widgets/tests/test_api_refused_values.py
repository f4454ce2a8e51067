# ruff: noqa: F811  (fixtures imported from support_api)
"""Widget API values PostgreSQL refuses (issue 9, kind 3): stored cleaned, never a 500."""

from __future__ import annotations

import json

import pytest

from widgets.models import WidgetEvent
from widgets.tests.support_api import init_ok, post_json, widget  # noqa: F401


@pytest.mark.parametrize(
    "raw_payload",
    [
        '{"url": "https://x\\u0000y"}',
        '{"k\\u0000": {"list": ["\\u0000", "\\ud800"]}}',
    ],
    ids=["nul-value", "nul-key-and-surrogate"],
)
def test_event_payload_with_refused_values(client, widget, raw_payload):
    started = init_ok(client, widget)
    body = '{"type": "open", "payload": ' + raw_payload + '}'
    response = post_json(client, "/api/widget/event", body, token=started["widget_token"])
    assert response.status_code == 201, response.content
    stored = WidgetEvent.objects.get(pk=response.json()["id"])
    text = json.dumps(stored.payload)
    assert "\\u0000" not in text and "\\ud800" not in text and "NaN" not in text


def test_event_payload_with_nan_is_a_clear_400(client, widget):
    started = init_ok(client, widget)
    body = '{"type": "open", "payload": {"score": NaN}}'
    response = post_json(client, "/api/widget/event", body, token=started["widget_token"])
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_json"
    assert WidgetEvent.objects.count() == 0


def test_chat_message_with_nul(client, widget, fake_llm):
    started = init_ok(client, widget)
    body = json.dumps({"message": "주문\u0000 확인"})
    response = post_json(client, "/api/widget/chat", body, token=started["widget_token"])
    assert response.status_code == 200, response.content
    assert "\x00" not in response.json()["message"]
