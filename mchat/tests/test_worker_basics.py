"""The real worker process against the fake server: placement, exactly once, loop bait, mention parsing."""

from __future__ import annotations

import pytest

from mchat.models import InboundPost, UserMapping
from mchat.tests.conftest import wait_until, ws_connected
from runtime.models import Turn

pytestmark = pytest.mark.django_db(transaction=True)


def bot_posts(mm, **kwargs):
    return mm.posts_by(mm.world["bot"], **kwargs)


def test_dm_flat_channel_threaded_and_thread_reply_same_root(mm, mchat_bot, fake_llm, start_worker):
    worker = start_worker(mchat_bot)
    wait_until(ws_connected(mm), message=worker.output())
    w = mm.world
    mm.user_post(w["minsu"], w["dm"], "안녕하세요")
    dm_reply = wait_until(lambda: [p for p in bot_posts(mm, channel=w["dm"]) if "안녕하세요" in p["message"]],
                          message=worker.output())
    assert dm_reply[0]["root_id"] == ""  # DM: flat

    root = mm.user_post(w["minsu"], w["town"], "@ai 환불 규정 알려줘")
    reply = wait_until(lambda: [p for p in bot_posts(mm, channel=w["town"]) if "환불 규정" in p["message"]])
    assert reply[0]["root_id"] == root["id"]  # channel: in the thread

    follow = mm.user_post(w["minsu"], w["town"], "@ai 그럼 교환은?", root_id=root["id"])
    second = wait_until(lambda: [p for p in bot_posts(mm, channel=w["town"]) if "교환은" in p["message"]])
    assert second[0]["root_id"] == root["id"]
    turns = Turn.objects.filter(session__channel="mchat").order_by("created_at")
    wait_until(lambda: Turn.objects.filter(session__channel="mchat", status="completed").count() == 3)
    thread_turns = [t for t in turns if t.client_message_id in (root["id"], follow["id"])]
    assert len({t.session_id for t in thread_turns}) == 1  # one thread = one session
    assert thread_turns[0].user_text == "환불 규정 알려줘"  # the mention is not part of the message
    mapping = UserMapping.objects.get(mchat_user_id=w["minsu"]["id"])
    assert mapping.linked_by == "verified_email"
    # Exactly once: one reply per question, whatever else the worker saw.
    assert len([p for p in bot_posts(mm) if "교환은" in p["message"]]) == 1
    # The ledger row is marked after the final edit is posted: wait for that state, not for time.
    wait_until(lambda: InboundPost.objects.filter(post_id=follow["id"], status="answered").exists(),
               message=worker.output())


def test_loop_bait_and_mention_parsing(mm, mchat_bot, fake_llm, start_worker):
    w = mm.world
    other_bot = mm.user_add("otherbot", is_bot=True)
    hook_user = mm.user_add("hookowner")
    for user in (other_bot, hook_user):
        mm.member_add(w["town"], user)
    worker = start_worker(mchat_bot)
    wait_until(ws_connected(mm), message=worker.output())
    baits = [
        mm.user_post(w["bot"], w["town"], "@ai 내가 쓴 글"),
        mm.user_post(other_bot, w["town"], "@ai 다른 봇이 부름"),
        mm.user_post(hook_user, w["town"], "@ai 웹훅", props={"from_webhook": "true", "override_username": "ai"},
                     sender_name="ai"),
        mm.user_post(w["minsu"], w["town"], "@channel 공지"),
        mm.user_post(w["minsu"], w["town"], "@here 누구 있어요"),
        mm.user_post(w["minsu"], w["town"], "@aiden 안녕"),
        mm.user_post(w["minsu"], w["town"], "`@ai` 라고 쓰면 돼요"),
        mm.user_post(w["minsu"], w["town"], "x@ai.com 으로 메일 주세요"),
    ]
    own = baits[0]
    mm.user_edit(own["id"], "@ai 내가 고친 글")
    answered = [
        mm.user_post(w["minsu"], w["town"], "질문이요 @ai."),
        mm.user_post(w["minsu"], w["town"], "(@ai) 도와줘"),
        mm.user_post(w["minsu"], w["dm"], "@ai DM 에서 부름"),
    ]
    for post in answered:
        wait_until(lambda post=post: InboundPost.objects.filter(post_id=post["id"], status="answered").exists(),
                   message=worker.output())
    for post in baits:
        wait_until(lambda post=post: InboundPost.objects.filter(post_id=post["id"], status="ignored").exists())
    reasons = dict(InboundPost.objects.filter(post_id__in=[p["id"] for p in baits]).values_list("post_id", "reason"))
    assert reasons[baits[0]["id"]] == "own_post" and reasons[baits[1]["id"]] == "from_bot"
    assert reasons[baits[2]["id"]] == "from_webhook" and reasons[baits[3]["id"]] == "no_mention"
    replies = [p for p in bot_posts(mm) if p["id"] != own["id"]]
    assert len(replies) == 3, [p["message"] for p in replies]
    assert sum("DM 에서 부름" in p["message"] for p in replies) == 1  # a DM with @ai answered once


def test_commands_inside_posts_and_memory_listing_by_dm(mm, mchat_bot, fake_llm, start_worker):
    from mchat.worker import SENT_BY_DM

    worker = start_worker(mchat_bot)
    wait_until(ws_connected(mm), message=worker.output())
    w = mm.world
    first = mm.user_post(w["minsu"], w["town"], "@ai /remember 라떼를 좋아함")
    second = mm.user_post(w["minsu"], w["dm"], "!remember 주말엔 등산")
    third = mm.user_post(w["minsu"], w["dm"], " /기억 고양이 두 마리")
    for post in (first, second, third):
        wait_until(lambda post=post: InboundPost.objects.filter(post_id=post["id"], status="answered").exists(),
                   message=worker.output())
    assert fake_llm.requests == []  # commands are answered without the model
    texts = [p["message"] for p in bot_posts(mm)]
    assert any("라떼를 좋아함" in t and "#" in t for t in texts) and any("등산" in t for t in texts)
    listing = mm.user_post(w["minsu"], w["town"], "@ai /memory")
    wait_until(lambda: InboundPost.objects.filter(post_id=listing["id"], status="answered").exists(),
               message=worker.output())
    in_thread = [p["message"] for p in bot_posts(mm, root_id=listing["id"])]
    assert in_thread == [SENT_BY_DM]  # the listing itself never appears in the channel
    dm_texts = [p["message"] for p in bot_posts(mm, channel=w["dm"])]
    assert any("라떼" in t and "고양이" in t for t in dm_texts)
