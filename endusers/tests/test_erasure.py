"""Erasure removes every text of the person, also turns stored before the contact existed (issue 11, 10)."""

from __future__ import annotations

import json

import pytest

from endusers.models import EndUserSession
from runtime.models import Session, Turn


@pytest.fixture
def call(client, api_key, django_capture_on_commit_callbacks):
    def send(method, url, body=None):
        with django_capture_on_commit_callbacks(execute=True):
            if method == "post":
                return client.post(url, data=json.dumps(body or {}), content_type="application/json",
                                   HTTP_AUTHORIZATION=f"Bearer {api_key}")
            return client.get(url, HTTP_AUTHORIZATION=f"Bearer {api_key}")

    return send


def test_erasure_of_a_visitor_who_became_a_contact_mid_session(call, organization, offline_llm):
    first = call("post", "/api/runtime/chat", {"message": "배송 주소는 서울시 마포구 비밀로 12예요"}).json()
    sid = first["session_id"]
    assert Session.objects.get(pk=sid).end_user_id is None  # an anonymous caller: no contact yet
    remembered = call("post", "/api/runtime/chat", {"message": "/기억 나는 땅콩 알레르기가 있어", "session_id": sid}).json()
    assert "땅콩" in remembered["message"]
    contact_id = Session.objects.get(pk=sid).end_user_id
    assert contact_id

    # The contact lists the session and both turns at once, before any further message.
    detail = call("get", f"/api/contacts/{contact_id}").json()
    assert [s["session_id"] for s in detail["sessions"]] == [sid]
    assert detail["counts"]["messages"] == 2
    assert {t["user_text"] for t in detail["recent_turns"]} >= {"배송 주소는 서울시 마포구 비밀로 12예요"}
    assert EndUserSession.objects.get(session_id=sid).message_count == 2

    erased = call("post", f"/api/contacts/{contact_id}/erase")
    assert erased.status_code == 200, erased.content
    assert erased.json()["counts"]["messages"] == 2

    turns = call("get", f"/api/runtime/sessions/{sid}/turns").json()["results"]
    assert len(turns) == 2
    dumped = json.dumps(turns, ensure_ascii=False)
    for secret in ("비밀로", "땅콩", "마포구"):
        assert secret not in dumped
    assert all(t["user_text"] == "" and t["reply_text"] == "" and t["payload"] == {} for t in turns)
    assert not Turn.objects.filter(reply_text__contains="땅콩").exists()


def test_erasure_reaches_the_turn_that_created_a_memory_in_another_session(organization, agent, offline_llm,
                                                                          django_capture_on_commit_callbacks):
    """A memory moved by a merge keeps its source turn; erasing the person clears that turn's quote too."""
    from endusers.services import end_user_erase, identity_resolve, memory_add
    from runtime.services import turn_run

    person = identity_resolve(organization=organization, kind="external_id", value="p-1", verified=True)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = turn_run(organization=organization, agent=agent, channel="api", text="저장해 주세요")
    stray = Turn.objects.get(pk=outcome.turn_id)
    Turn.objects.filter(pk=stray.pk).update(reply_text="기억했어요: 혈액형 B")
    memory_add(end_user=person, text="혈액형 B", turn=stray)
    end_user_erase(end_user=person, actor="test")
    stray.refresh_from_db()
    assert stray.reply_text == "" and stray.user_text == ""
