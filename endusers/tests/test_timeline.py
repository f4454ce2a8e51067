"""The pipeline keeps A_end_user_sessions / A_end_user_messages on every turn, for every channel."""

from __future__ import annotations

import pytest

from endusers.models import EndUser, EndUserMessage, EndUserSession
from endusers.services import identity_resolve, timeline_record
from runtime.models import Channel
from runtime.services import turn_run, turn_start


@pytest.mark.parametrize("channel,kind", [
    (Channel.WEB_WIDGET, "visitor"), (Channel.KAKAO, "kakao"), (Channel.MCHAT, "mchat"),
    (Channel.ASSISTANT, "external_id"), (Channel.API, "external_id"),
])
def test_every_channel_writes_the_timeline(organization, agent, offline_llm, django_capture_on_commit_callbacks,
                                           channel, kind):
    person = identity_resolve(organization=organization, kind=kind, value=f"{channel}-user", verified=kind != "visitor")
    with django_capture_on_commit_callbacks(execute=True):
        first = turn_run(organization=organization, agent=agent, channel=channel, text="안녕하세요", end_user=person)
    with django_capture_on_commit_callbacks(execute=True):
        from runtime.models import Session

        session = Session.objects.get(pk=first.session_id)
        turn_run(organization=organization, agent=agent, channel=channel, text="두 번째", session=session)
    entry = EndUserSession.objects.get(end_user=person)
    assert entry.channel == channel and entry.message_count == 2 and str(entry.session_id) == first.session_id
    rows = list(EndUserMessage.objects.filter(end_user=person).select_related("turn").order_by("created_at"))
    assert [r.turn.user_text for r in rows] == ["안녕하세요", "두 번째"]  # the text lives in the turn, not here
    assert entry.last_seen_at >= entry.first_seen_at


def test_timeline_record_is_idempotent_and_skips_unknown_people(organization, agent):
    turn, _ = turn_start(organization=organization, agent=agent, channel="api", text="익명")
    assert timeline_record(turn=turn) is None
    person = EndUser.objects.create(organization=organization)
    turn, _ = turn_start(organization=organization, agent=agent, channel="api", text="hi", end_user=person)
    timeline_record(turn=turn)
    timeline_record(turn=turn)
    assert EndUserMessage.objects.filter(turn=turn).count() == 1
    assert EndUserSession.objects.get(end_user=person).message_count == 1


def test_a_broken_index_never_breaks_the_answer(organization, agent, offline_llm, monkeypatch,
                                                 django_capture_on_commit_callbacks):
    from endusers import services

    def broken(**kwargs):
        raise RuntimeError("index down")

    monkeypatch.setattr(services, "timeline_record", broken)
    person = EndUser.objects.create(organization=organization)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = turn_run(organization=organization, agent=agent, channel="api", text="안녕", end_user=person)
    assert outcome.ok
