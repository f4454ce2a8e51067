"""End to end: `manage.py mchat_worker` as its own process against the fake Mattermost server, on PostgreSQL +
Redis with a Celery worker. A mention gets one threaded, streamed answer, stored in mejai's tables, from the
same end user as that person's other channels (their email is verified in Mattermost)."""

from __future__ import annotations

import pytest

from endusers.models import EndUser, EndUserMessage, Identity
from mchat.models import InboundPost, OutboxPost
from mchat.tests.conftest import wait_until, ws_connected
from runtime.models import Session, Turn

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_a_mention_gets_one_threaded_streamed_answer(mm, mchat_bot, organization, fake_llm, celery_worker_process,
                                                     start_worker):
    known = EndUser.objects.create(organization=organization, display_name="")
    Identity.objects.create(organization=organization, end_user=known, kind="email", value="minsu@example.com",
                            verified=True)
    fake_llm.config.ttft = 0.5
    fake_llm.config.tokens_per_second = 20
    fake_llm.config.reply = " ".join(f"환불은 구매 후 7일 이내에 가능합니다({i})." for i in range(6))
    worker = start_worker(mchat_bot)
    wait_until(ws_connected(mm), message=worker.output())

    w = mm.world
    question = mm.user_post(w["minsu"], w["town"], "@ai 내 이름은 김민수야")
    wait_until(lambda: InboundPost.objects.filter(post_id=question["id"], status="answered").exists(), timeout=60,
               message=worker.output())

    replies = mm.posts_by(w["bot"], channel=w["town"])
    assert len(replies) == 1 and replies[0]["root_id"] == question["id"]  # one answer, in the thread
    assert replies[0]["message"] == fake_llm.config.reply
    log = [r for r in mm.post_log if r.post_id == replies[0]["id"]]
    assert log[0].kind == "create" and sum(r.kind == "patch" for r in log) >= 1  # streamed by edits
    assert log[0].message != fake_llm.config.reply  # the first post showed the beginning only
    typing = [t for t in mm.typing_log if t["channel_id"] == w["town"]["id"]]
    assert typing and typing[0]["at"] <= log[0].at  # typing before the first token

    turn = Turn.objects.select_related("session").get(client_message_id=question["id"])
    assert turn.status == "completed" and turn.reply_text == fake_llm.config.reply
    assert turn.session.channel == "mchat" and turn.session.metadata["mchat_root_id"] == question["id"]
    assert turn.session.end_user_id == known.pk  # the same person as in the other channels
    assert Session.objects.filter(channel="mchat").count() == 1
    wait_until(lambda: OutboxPost.objects.filter(inbound__post_id=question["id"], status="sent").count() == 1,
               message=worker.output())
    # The Celery worker ran the after-answer job (rules capture): the name said in Mattermost is on the profile.
    wait_until(lambda: EndUser.objects.get(pk=known.pk).display_name == "김민수", timeout=60)
    wait_until(lambda: EndUserMessage.objects.filter(turn=turn, end_user=known).exists(), timeout=30)
