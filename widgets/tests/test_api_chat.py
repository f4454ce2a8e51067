"""POST /api/widget/chat and /api/widget/event: answers, streaming, tokens, ownership, bad input, limits."""

# ruff: noqa: F811  (fixtures imported from support_api)
from __future__ import annotations

import time

import jwt
import pytest

from endusers.models import Identity
from runtime.models import Turn
from widgets.models import WidgetEvent
from widgets.selectors import widget_stats_day
from widgets.tests.support_api import (  # noqa: F401
    ORIGIN,
    assert_error,
    chat,
    init_ok,
    other_widget,
    post_json,
    sse_events,
    widget,
)
from widgets.tokens import token_backend


@pytest.fixture
def started(client, widget):
    return init_ok(client, widget)


def test_chat_json_standard_payload(client, widget, started, fake_llm):
    response = chat(client, started["widget_token"], "환불 규정 알려줘")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["message"] == "가짜 모델의 답변입니다: 환불 규정 알려줘"
    assert set(body) >= {"quick_replies", "render_plan", "response_schema", "session_id", "turn_id", "usage"}
    assert body["session_id"] == started["session_id"]
    turn = Turn.objects.get(pk=body["turn_id"])
    assert turn.session.channel == "web_widget" and turn.status == "completed"
    stats = widget_stats_day(widget=widget)
    assert (stats["loads"], stats["messages"], stats["conversations"]) == (1, 1, 1)
    chat(client, started["widget_token"], "또 질문")
    stats = widget_stats_day(widget=widget)
    assert (stats["messages"], stats["conversations"]) == (2, 1)


def test_chat_sse_stream(client, started, fake_llm):
    fake_llm.config.reply = "하나 둘 셋"
    response = chat(client, started["widget_token"], "세어 줘", HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/event-stream")
    events = sse_events(response)
    names = [name for _, name, _ in events]
    assert names[0] == "start" and names[-1] == "message" and names.count("delta") >= 3
    assert "".join(d["text"] for _, n, d in events if n == "delta") == "하나 둘 셋"
    response = chat(client, started["widget_token"], "한 번 더", **{"QUERY_STRING": "stream=1"})
    assert [n for _, n, _ in sse_events(response)][-1] == "message"


def test_chat_is_idempotent_on_client_message_id(client, started, fake_llm):
    first = chat(client, started["widget_token"], "안녕", client_message_id="m-1").json()
    again = chat(client, started["widget_token"], "안녕", client_message_id="m-1").json()
    assert first["turn_id"] == again["turn_id"] and Turn.objects.count() == 1
    assert len(fake_llm.requests) == 1


def test_script_and_markdown_tricks_are_stored_and_returned_as_text(client, started, fake_llm):
    trick = '<script>alert("x")</script> <img src=x onerror=alert(1)> [클릭](javascript:alert(1)) [a](data:text/html,x)'
    fake_llm.config.reply = trick
    body = chat(client, started["widget_token"], trick).json()
    assert body["message"] == trick  # returned verbatim as text: the panel renders it safely
    turn = Turn.objects.get(pk=body["turn_id"])
    assert turn.user_text == trick and turn.reply_text == trick


# --- tokens ------------------------------------------------------------------------------------

def _forge(raw: str, key: str, **changes) -> str:
    payload = {**jwt.decode(raw, options={"verify_signature": False}), **changes}
    return jwt.encode(payload, key, algorithm="HS256")


@pytest.mark.parametrize("url", ["/api/widget/chat", "/api/widget/event", "/api/widget/stream-ticket"])
def test_missing_expired_tampered_wrongly_signed_token_401(client, started, url, offline_llm):
    raw = started["widget_token"]
    key = token_backend().signing_key
    body = {"message": "hi", "type": "open"}
    cases = {
        "token_missing": None,
        "token_invalid": raw[:-3] + ("AAA" if not raw.endswith("AAA") else "BBB"),
        "token_expired": _forge(raw, key, exp=int(time.time()) - 30),
    }
    for code, token in cases.items():
        assert_error(post_json(client, url, body, token=token), 401, code)
    assert_error(post_json(client, url, body, token=_forge(raw, "another-signing-key-0123456789abcdef")), 401,
                 "token_invalid")
    assert Turn.objects.count() == 0 and WidgetEvent.objects.count() == 0


def test_staff_jwt_is_refused(client, started, django_user_model):
    from rest_framework_simplejwt.tokens import AccessToken

    user = django_user_model.objects.create_user("op", password="x", is_staff=True)
    assert_error(chat(client, str(AccessToken.for_user(user)), "hi"), 401, "token_invalid")


def test_widget_a_token_for_widget_b(client, widget, other_widget, started, offline_llm):
    other = init_ok(client, other_widget, origin="https://blog.example.com", page_url="https://blog.example.com/")
    # Naming widget B with widget A's token:
    response = chat(client, started["widget_token"], "hi", public_key=other_widget.public_key)
    assert_error(response, 403, "token_widget_mismatch")
    # Widget B's session with widget A's token: not found, exactly like a session that does not exist.
    foreign = assert_error(chat(client, started["widget_token"], "hi", session_id=other["session_id"]), 404,
                           "session_not_found")
    missing = assert_error(chat(client, started["widget_token"], "hi",
                                session_id="00000000-0000-0000-0000-000000000000"), 404, "session_not_found")
    assert foreign == missing
    assert Turn.objects.count() == 0


def test_another_visitors_session_404(client, widget, started, offline_llm):
    theirs = init_ok(client, widget, visitor={"id": "visitor-zzzz-9"})
    chat(client, theirs["widget_token"], "내 비밀 주문")
    response = chat(client, started["widget_token"], "보여줘", session_id=theirs["session_id"])
    error = assert_error(response, 404, "session_not_found")
    assert "비밀" not in str(error)
    assert Turn.objects.count() == 1
    response = post_json(client, "/api/widget/event", {"type": "open", "session_id": theirs["session_id"]},
                         token=started["widget_token"])
    assert_error(response, 404, "session_not_found")


def test_deactivated_widget_refuses_its_tokens(client, widget, started):
    widget.is_active = False
    widget.save()
    assert_error(chat(client, started["widget_token"], "hi"), 404, "widget_not_found")


# --- message bad input -----------------------------------------------------------------------

def test_empty_oversized_malformed(client, started, settings):
    token = started["widget_token"]
    assert_error(chat(client, token, "   \n "), 400, "empty_message")
    assert_error(chat(client, token, "\u200b\x00"), 400, "empty_message")
    settings.WIDGET_MAX_MESSAGE_CHARS = 100
    error = assert_error(chat(client, token, "가" * 101), 400, "message_too_long")
    assert error["limit"] == 100
    assert chat(client, token, "가" * 100).status_code != 400
    stored = Turn.objects.count()
    assert_error(post_json(client, "/api/widget/chat", "{oops", token=token), 400, "malformed_json")
    assert_error(post_json(client, "/api/widget/chat", '"text"', token=token), 400, "invalid")
    assert_error(post_json(client, "/api/widget/chat", {"message": 5}, token=token), 400, "invalid")
    assert_error(post_json(client, "/api/widget/chat", {}, token=token), 400, "invalid")
    assert_error(chat(client, token, "hi", session_id="not-a-uuid"), 400, "invalid")
    assert Turn.objects.count() == stored == 1


def test_body_too_large_413(client, started):
    response = chat(client, started["widget_token"], "x" * 300_000)
    assert_error(response, 413, "payload_too_large")


def test_chat_rate_limited_per_visitor(client, widget, started, settings, offline_llm):
    from django.core.cache import cache

    cache.clear()
    settings.WIDGET_RATE_CHAT_VISITOR = 2
    settings.WIDGET_RATE_CHAT_VISITOR_WINDOW = 86400  # no window boundary within the test
    assert chat(client, started["widget_token"], "1").status_code == 200
    assert chat(client, started["widget_token"], "2").status_code == 200
    response = chat(client, started["widget_token"], "3")
    error = assert_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1 and "try again" in error["message"]
    assert Turn.objects.count() == 2
    # Another visitor is not limited by this one.
    other = init_ok(client, widget, visitor={"id": "visitor-zzzz-9"})
    assert chat(client, other["widget_token"], "1").status_code == 200


# --- events ------------------------------------------------------------------------------------

def event(client, token, body):
    return post_json(client, "/api/widget/event", body, token=token)


def test_events_are_stored_and_counted(client, widget, started):
    for kind in ("load", "open", "close", "cta_click", "page_view", "open"):
        response = event(client, started["widget_token"], {"type": kind, "payload": {"url": "https://x"}})
        assert response.status_code == 201, response.content
        assert WidgetEvent.objects.filter(pk=response.json()["id"], event_type=kind).exists()
    stored = WidgetEvent.objects.filter(widget=widget)
    assert stored.count() == 6 and all(str(e.session_id) == started["session_id"] for e in stored)
    assert widget_stats_day(widget=widget)["opens"] == 2


def test_unknown_event_type_and_bad_payload(client, started):
    assert_error(event(client, started["widget_token"], {"type": "hack"}), 400, "invalid_event_type")
    assert_error(event(client, started["widget_token"], {"type": 3}), 400, "invalid")
    assert_error(event(client, started["widget_token"], {"type": "OPEN"}), 400, "invalid_event_type")
    assert_error(event(client, started["widget_token"], {"type": "open", "payload": [1]}), 400, "invalid")
    assert_error(event(client, started["widget_token"], {"type": "open", "payload": {"x": "y" * 10_000}}), 413,
                 "payload_too_large")
    assert_error(event(client, started["widget_token"], {}), 400, "invalid")
    assert WidgetEvent.objects.count() == 0


def test_form_submit_records_claimed_identities(client, widget, started):
    values = {"name": "김민수", "email": "Minsu@Example.com", "phone": "010-1234-5678", "order_id": "A-1"}
    response = event(client, started["widget_token"], {"type": "form_submit", "payload": {"values": values}})
    assert response.status_code == 201, response.content
    stored = WidgetEvent.objects.get(pk=response.json()["id"])
    assert stored.payload["values"]["order_id"] == "A-1"
    from runtime.models import Session

    end_user = Session.objects.get(pk=started["session_id"]).end_user
    kinds = {i.kind: i for i in Identity.objects.filter(end_user=end_user)}
    assert not kinds["email"].verified and not kinds["phone"].verified
    end_user.refresh_from_db()
    assert end_user.display_name == "김민수"
    assert widget_stats_day(widget=widget)["form_submits"] == 1


def test_form_submit_bad_values(client, started):
    bad_email = {"type": "form_submit", "payload": {"values": {"email": "not-an-email"}}}
    assert_error(event(client, started["widget_token"], bad_email), 400, "invalid_email")
    assert_error(event(client, started["widget_token"], {"type": "form_submit", "payload": {"values": "x"}}), 400,
                 "invalid")
    assert_error(event(client, started["widget_token"],
                       {"type": "form_submit", "payload": {"values": {"Bad Key": "x"}}}), 400, "invalid")
    assert WidgetEvent.objects.count() == 0


def test_form_claim_never_links_to_another_person(client, widget, started):
    theirs = init_ok(client, widget, visitor={"id": "visitor-zzzz-9"})
    event(client, theirs["widget_token"], {"type": "form_submit", "payload": {"values": {"email": "owner@example.com"}}})
    event(client, started["widget_token"], {"type": "form_submit", "payload": {"values": {"email": "owner@example.com"}}})
    assert Identity.objects.filter(kind="email").count() == 1


def test_cors_on_token_calls_only_for_the_token_origin(client, started, offline_llm):
    own = chat(client, started["widget_token"], "hi")
    assert own["Access-Control-Allow-Origin"] == ORIGIN and "Origin" in own["Vary"]
    foreign = post_json(client, "/api/widget/chat", {"message": "hi"}, token=started["widget_token"],
                        origin="https://evil.com")
    assert foreign.status_code == 200 and "Access-Control-Allow-Origin" not in foreign


def test_client_address_behind_a_trusted_proxy(settings):
    from widgets.ratelimit import client_ip

    meta = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "1.2.3.4, 5.6.7.8"}
    assert client_ip(meta) == "10.0.0.1"
    settings.WIDGET_TRUST_X_FORWARDED_FOR = True
    assert client_ip(meta) == "5.6.7.8"


def test_init_resumes_a_named_session_only_when_it_is_theirs(client, widget, started, offline_llm):
    chat(client, started["widget_token"], "첫 대화")
    theirs = init_ok(client, widget, visitor={"id": "visitor-zzzz-9"})
    again = init_ok(client, widget, session_id=started["session_id"])
    assert again["session_id"] == started["session_id"]
    hijack = init_ok(client, widget, visitor={"id": "visitor-zzzz-9"}, session_id=started["session_id"])
    assert hijack["session_id"] == theirs["session_id"] and hijack["history"] == []


def test_page_view_and_chat_context_update_the_page(client, widget, started, offline_llm):
    from runtime.models import Session

    event(client, started["widget_token"], {"type": "page_view", "payload": {"url": ORIGIN + "/cart"}})
    session = Session.objects.get(pk=started["session_id"])
    assert session.metadata["page_url"] == ORIGIN + "/cart"
    event(client, started["widget_token"], {"type": "page_view", "payload": {"url": "https://evil.com/x"}})
    chat(client, started["widget_token"], "hi", context={"url": ORIGIN + "/checkout", "title": "결제"})
    session.refresh_from_db()
    assert session.metadata["page_url"] == ORIGIN + "/checkout"
