"""Multi-turn by design: what `external_id` without `session_id` does (issue 11, 7; docs/runtime.md)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from runtime.models import Agent, Session, Turn


@pytest.fixture
def chat(client, api_key, offline_llm):
    def send(**body):
        response = client.post("/api/runtime/chat", data=json.dumps(body), content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {api_key}")
        assert response.status_code == 200, response.content
        return response.json()

    return send


def test_external_id_without_session_id_continues_the_open_session(chat):
    first = chat(message="주문 A-1 배송 문의", external_id="cust-1")
    second = chat(message="언제 와요?", external_id="cust-1")
    assert second["session_id"] == first["session_id"]
    assert list(Turn.objects.filter(session_id=first["session_id"]).values_list("seq", flat=True)) == [1, 2]
    # The follow-up shown in the README: passing session_id explicitly is the same conversation.
    assert chat(message="고마워요", session_id=first["session_id"])["session_id"] == first["session_id"]


def test_new_session_flag_starts_a_new_conversation(chat):
    first = chat(message="안녕", external_id="cust-1")
    fresh = chat(message="새 문의", external_id="cust-1", new_session=True)
    assert fresh["session_id"] != first["session_id"]
    assert chat(message="이어서", external_id="cust-1")["session_id"] == fresh["session_id"]  # the latest open one


def test_an_idle_session_is_not_continued(chat, settings):
    settings.RUNTIME_API_SESSION_IDLE_MINUTES = 30
    first = chat(message="안녕", external_id="cust-1")
    Session.objects.filter(pk=first["session_id"]).update(last_activity_at=timezone.now() - timedelta(minutes=31))
    assert chat(message="다시 왔어요", external_id="cust-1")["session_id"] != first["session_id"]


def test_zero_minutes_always_starts_a_new_session(chat, settings):
    settings.RUNTIME_API_SESSION_IDLE_MINUTES = 0
    assert chat(message="a", external_id="cust-1")["session_id"] != chat(message="b", external_id="cust-1")["session_id"]


def test_other_people_agents_closed_sessions_and_anonymous_calls_are_never_continued(chat, organization):
    first = chat(message="안녕", external_id="cust-1")
    assert chat(message="안녕", external_id="cust-2")["session_id"] != first["session_id"]
    assert chat(message="익명", )["session_id"] != chat(message="익명 2")["session_id"]
    Agent.objects.create(organization=organization, name="sales")
    assert chat(message="견적", external_id="cust-1", agent="sales")["session_id"] != first["session_id"]
    Session.objects.filter(pk=first["session_id"]).update(status=Session.Status.CLOSED)
    assert chat(message="또 문의", external_id="cust-1")["session_id"] != first["session_id"]


def test_new_session_must_be_a_boolean(client, api_key):
    response = client.post("/api/runtime/chat", data=json.dumps({"message": "x", "new_session": "maybe"}),
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert response.status_code == 400 and response.json()["error"]["field"] == "new_session"
