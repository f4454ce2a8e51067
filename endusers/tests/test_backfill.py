"""backfill_end_users: end users, identities and timeline rows from existing sessions; idempotent."""

from __future__ import annotations

from django.core.management import call_command

from endusers.backfill import end_users_backfill
from endusers.models import EndUser, EndUserMessage, EndUserSession, Identity
from runtime.models import Session, Turn
from runtime.services import session_create


def _session(organization, agent, channel, metadata, texts):
    session = session_create(organization=organization, agent=agent, channel=channel, metadata=metadata)
    for seq, text in enumerate(texts, 1):
        Turn.objects.create(session=session, seq=seq, user_text=text, status="completed")
    return session


def test_backfill_builds_end_users_and_timeline_and_is_idempotent(organization, agent, capsys):
    api_1 = _session(organization, agent, "api", {"external_id": "c-1"}, ["a", "b"])
    api_2 = _session(organization, agent, "api", {"external_id": "c-1"}, ["c"])
    widget = _session(organization, agent, "web_widget", {"visitor_id": "v-1"}, ["d"])
    unsigned = _session(organization, agent, "web_widget", {"external_id": "spoofed", "verified": False}, ["e"])
    _session(organization, agent, "api", {}, ["anonymous"])

    call_command("backfill_end_users", "--no-progress", "--batch-size", "2")
    assert "sessions indexed: 3" in capsys.readouterr().out
    person = Identity.objects.get(kind="external_id", value="c-1").end_user
    assert set(Session.objects.filter(end_user=person)) == {api_1, api_2}
    assert Turn.objects.filter(author=person).count() == 3
    assert EndUserMessage.objects.filter(end_user=person).count() == 3
    assert EndUserSession.objects.get(session=api_1).message_count == 2
    assert Identity.objects.get(kind="visitor", value="v-1", verified=False).end_user.conversation_sessions.get() == widget
    assert not Identity.objects.filter(value="spoofed").exists()
    assert Session.objects.get(pk=unsigned.pk).end_user_id is None  # an unsigned user id identifies nobody

    counts = (EndUser.objects.count(), Identity.objects.count(), EndUserMessage.objects.count())
    again = end_users_backfill(full=True)
    assert again.messages == 0 and again.end_users_linked == 0 and again.anonymous == 2
    assert (EndUser.objects.count(), Identity.objects.count(), EndUserMessage.objects.count()) == counts


def test_backfill_resumes_and_picks_up_new_turns(organization, agent):
    first = _session(organization, agent, "kakao", {"kakao_user_key": "bot-1"}, ["a"])
    assert end_users_backfill().sessions == 1
    Turn.objects.create(session=first, seq=2, user_text="b", status="completed")  # stored while the app was off
    second = _session(organization, agent, "mchat", {"mchat_user_id": "mm-1"}, ["c"])
    stats = end_users_backfill()  # only the session not done yet
    assert stats.sessions == 1 and EndUserSession.objects.get(session=second).message_count == 1
    assert EndUserSession.objects.get(session=first).message_count == 1
    end_users_backfill(full=True)
    assert EndUserSession.objects.get(session=first).message_count == 2
    assert Identity.objects.get(kind="kakao").verified and Identity.objects.get(kind="mchat").verified


def test_demo_setup_is_idempotent(organization, agent):
    from endusers.demo import demo_setup
    from endusers.models import Memory

    lines = demo_setup(organization=organization, agent=agent)
    demo_setup(organization=organization, agent=agent)
    person = Identity.objects.get(kind="external_id", value="demo-customer-1").end_user
    assert person.profile["name"] == "민수" and "demo-customer-1" in lines[0]
    assert Memory.objects.filter(end_user=person, kind="fact", deleted_at__isnull=True).count() == 1
    assert Memory.objects.filter(organization=organization, end_user__isnull=True).count() == 1
