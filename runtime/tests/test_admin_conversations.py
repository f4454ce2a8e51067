"""The conversations list and transcript in admin (issue 11, 2): readable, read-only, scoped to the organization."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from endusers.models import EndUserMessage
from endusers.services import identity_resolve
from runtime.models import Agent, Membership, Session, Turn


def conversation(organization, *, texts, channel="web_widget", end_user=None, agent_name="support"):
    agent, _ = Agent.objects.get_or_create(organization=organization, name=agent_name)
    session = Session.objects.create(organization=organization, agent=agent, channel=channel, end_user=end_user,
                                     last_seq=len(texts))
    for seq, (user_text, reply_text) in enumerate(texts, start=1):
        Turn.objects.create(session=session, seq=seq, user_text=user_text, reply_text=reply_text, status="completed",
                            model="gpt-test", tokens_in=12, tokens_out=34, ttft_ms=210, latency_ms=980)
    return session


@pytest.fixture
def staff(organization):
    def make(org, name="operator"):
        user = User.objects.create_user(name, password="pw", is_staff=True)
        user.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=["runtime", "endusers"],
                                                             codename__startswith="view_"))
        Membership.objects.create(user=user, organization=org)
        return user

    return make


def test_list_shows_channel_customer_previews_and_searches_text(admin_client, organization):
    person = identity_resolve(organization=organization, kind="external_id", value="c-1", verified=True)
    person.display_name = "김민수"
    person.save()
    conversation(organization, end_user=person, texts=[("배송 언제 와요?", "내일 도착해요."), ("고마워요", "천만에요.")])
    conversation(organization, channel="kakao", texts=[("환불 규정 알려줘", "7일 이내 가능해요.")])
    url = reverse("admin:runtime_conversation_changelist")
    page = admin_client.get(url).content.decode()
    for text in ("배송 언제 와요?", "고마워요", "김민수", "환불 규정 알려줘", "카카오", "웹 위젯"):
        assert text in page, text
    found = admin_client.get(url, {"q": "환불"}).content.decode()
    assert "환불 규정" in found and "배송 언제" not in found
    by_reply = admin_client.get(url, {"q": "도착"}).content.decode()
    assert "배송 언제" in by_reply and "환불 규정" not in by_reply
    kakao_only = admin_client.get(url, {"channel__exact": "kakao"}).content.decode()
    assert "환불 규정" in kakao_only and "배송 언제" not in kakao_only


def test_transcript_reads_like_a_chat_and_is_read_only(admin_client, organization):
    person = identity_resolve(organization=organization, kind="email", value="minsu@example.com", verified=True)
    session = conversation(organization, end_user=person, texts=[("배송 언제 와요?", "내일 도착해요.")])
    Turn.objects.create(session=session, seq=2, user_text="또 질문", status="failed", error_code="llm_timeout",
                        error="The language model did not answer in time.")
    page = admin_client.get(reverse("admin:runtime_conversation_change", args=[session.pk])).content.decode()
    assert 'class="mj-bubble mj-user"' in page and 'class="mj-bubble mj-bot"' in page
    for text in ("배송 언제 와요?", "내일 도착해요.", "gpt-test", "12/34", "980 ms", "llm_timeout", "m***@example.com"):
        assert text in page, text
    assert "minsu@example.com" not in page  # identities are masked like every other list
    # The stored (English) error reads Korean first, like every message an operator sees.
    assert "(The language model did not answer in time.)" in page.split("llm_timeout", 2)[-1].split("</div>")[0]
    assert "<select" not in page.split('id="content-main"')[1] and 'name="_save"' not in page and "deletelink" not in page
    assert admin_client.post(reverse("admin:runtime_conversation_change", args=[session.pk]), {}).status_code in (403, 405, 200)
    assert Session.objects.filter(pk=session.pk).exists()
    assert admin_client.get(reverse("admin:runtime_conversation_delete", args=[session.pk])).status_code == 403


def test_end_user_timeline_shows_message_text(admin_client, organization, agent, offline_llm,
                                              django_capture_on_commit_callbacks):
    from runtime.services import turn_run

    person = identity_resolve(organization=organization, kind="external_id", value="c-2", verified=True)
    with django_capture_on_commit_callbacks(execute=True):
        turn_run(organization=organization, agent=agent, channel="api", text="주문 취소하고 싶어요", end_user=person)
    assert EndUserMessage.objects.count() == 1
    page = admin_client.get(reverse("admin:endusers_endusermessage_changelist")).content.decode()
    assert "주문 취소하고 싶어요" in page and "turn 1 of" not in page
    # Korean labels for the person without a name and the channel, not "end user #3" and "api".
    assert f"고객 #{person.pk}" in page and "end user #" not in page
    assert '<td class="field-channel_label">API</td>' in page
    with django_capture_on_commit_callbacks(execute=True):
        turn_run(organization=organization, agent=agent, channel="kakao", text="카카오에서 왔어요", end_user=person)
    page = admin_client.get(reverse("admin:endusers_endusermessage_changelist")).content.decode()
    assert '<td class="field-channel_label">카카오</td>' in page
    entry = EndUserMessage.objects.order_by("pk").first()
    detail = admin_client.get(reverse("admin:endusers_endusermessage_change", args=[entry.pk])).content.decode()
    assert "주문 취소하고 싶어요" in detail and " of " not in detail.split('id="content"')[1].split("</main>")[0]


def test_an_operator_sees_only_their_organizations_conversations(client, organization, other_organization, staff):
    mine = conversation(organization, texts=[("우리 회사 문의", "네")])
    theirs = conversation(other_organization, texts=[("GLOBEX 비밀 문의", "네")])
    client.force_login(staff(organization))
    page = client.get(reverse("admin:runtime_conversation_changelist")).content.decode()
    assert "우리 회사 문의" in page and "GLOBEX" not in page
    assert client.get(reverse("admin:runtime_conversation_change", args=[mine.pk])).status_code == 200
    other = client.get(reverse("admin:runtime_conversation_change", args=[theirs.pk]))
    assert other.status_code in (302, 404) and "GLOBEX" not in other.content.decode()
    searched = client.get(reverse("admin:runtime_conversation_changelist"), {"q": "비밀"}).content.decode()
    assert "GLOBEX 비밀 문의" not in searched and 'id="result_list"' not in searched


@pytest.mark.parametrize("query", [
    {"last_activity_at__year": "99999999999"},  # past the calendar: OverflowError inside Django's ChangeList
    {"last_activity_at__year": "2026", "last_activity_at__month": "99999999999999999999"},
])
def test_a_date_past_the_calendar_is_refused_like_any_bad_filter(admin_client, organization, query):
    conversation(organization, texts=[("문의", "네")])
    response = admin_client.get(reverse("admin:runtime_conversation_changelist"), query)
    # Django's answer to a lookup it cannot use: back to the list with ?e=1, never a 500.
    assert response.status_code == 302 and response["Location"].endswith("?e=1")
