"""The issue's "Done when": one verified person across two sessions; a claim with the same email does not attach."""

from __future__ import annotations

from endusers.models import EndUser, EndUserMessage, EndUserSession, Identity, Memory
from endusers.services import identity_claim, identity_resolve
from runtime.models import Session


def test_verified_person_across_two_sessions_and_a_claim_that_does_not_attach(
    chat, api_key, organization, offline_llm, run_extraction_inline
):
    # Session 1: the customer's server calls with a verified external id.
    first = chat(api_key, {"message": "내 이름은 민수야", "external_id": "cust-42"})
    assert first.status_code == 200, first.content
    session_1 = first.json()["session_id"]
    remembered = chat(api_key, {"message": "/기억 환불은 구매 후 7일 이내 가능하다고 안내받음", "external_id": "cust-42",
                                "session_id": session_1})
    assert remembered.status_code == 200 and "기억했어요" in remembered.json()["message"]

    # They also leave their email in the chat (captured as their own, unverified).
    contact = chat(api_key, {"message": "제 메일은 MinSu@Example.com 이에요", "external_id": "cust-42",
                             "session_id": session_1})
    assert contact.status_code == 200
    person = Identity.objects.get(kind="external_id", value="cust-42").end_user
    email = Identity.objects.get(kind="email", value="minsu@example.com")
    assert email.end_user_id == person.pk and not email.verified  # captured from the chat: a claim

    # Session 2: a new conversation, same verified identity.
    second = chat(api_key, {"message": "환불 규정 알려줘", "external_id": "cust-42", "new_session": True})
    assert second.status_code == 200, second.content
    body = second.json()
    assert body["session_id"] != session_1
    assert "민수님" in body["message"]  # the name captured from the first session
    assert "환불은 구매 후 7일 이내 가능하다고 안내받음" in body["message"]  # the memory from the first session

    person = EndUser.objects.get(pk=person.pk)
    assert set(Session.objects.filter(end_user=person).values_list("pk", flat=True)) == {
        __import__("uuid").UUID(session_1), __import__("uuid").UUID(body["session_id"])
    }
    assert EndUserSession.objects.filter(end_user=person).count() == 2
    assert EndUserMessage.objects.filter(end_user=person).count() == 4

    # A widget visitor *claims* the same email: stored on the visitor's own end user, never attached.
    visitor = identity_resolve(organization=organization, kind="visitor", value="v-random-123", verified=False)
    assert identity_claim(end_user=visitor, kind="email", value=" MinSu@Example.com ") is None
    visitor.refresh_from_db()
    assert visitor.pk != person.pk and visitor.merged_into_id is None
    assert visitor.profile["claims"] == {"email": "minsu@example.com"}
    assert Identity.objects.get(kind="email", value="minsu@example.com").end_user_id == person.pk
    assert not Memory.objects.filter(end_user=visitor).exists()
    assert not Session.objects.filter(end_user=visitor).exists()
