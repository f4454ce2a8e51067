"""Faults and bad input, each with the real worker process (`manage.py mchat_worker`) against the fake server."""

from __future__ import annotations

import time

import pytest

from endusers.models import EndUser, Identity
from mchat.models import InboundPost, MattermostBot, OutboxPost, UserMapping, WorkerStatus
from mchat.parsing import fences_balanced
from mchat.replies import ERROR_NOTE
from mchat.tests.conftest import wait_until, ws_connected

pytestmark = pytest.mark.django_db(transaction=True)


def answered(post, status="answered"):
    return lambda: InboundPost.objects.filter(post_id=post["id"], status=status).exists()


def replies(mm, root_id=None, channel=None):
    return mm.posts_by(mm.world["bot"], root_id=root_id, channel=channel)


def final_text(mm, root_id):
    return "\n".join(p["message"] for p in replies(mm, root_id=root_id))


def started(mm, mchat_bot, start_worker, **env):
    worker = start_worker(mchat_bot, **env)
    wait_until(ws_connected(mm), message=worker.output())
    return worker


def test_silent_idle_cut_reconnects_and_loses_no_mention(mm, mchat_bot, fake_llm, start_worker):
    worker = started(mm, mchat_bot, start_worker)
    w = mm.world
    assert mm.ws_silent_cut(user=w["bot"]) == 1
    post = mm.user_post(w["minsu"], w["town"], "@ai 끊긴 뒤의 질문")
    wait_until(answered(post), message=worker.output())
    assert len(replies(mm, root_id=post["id"])) == 1
    # The dead path is noticed (no pong) and replaced; the startup catch-up may have answered first.
    wait_until(lambda: any(e["kind"] in ("resume", "hello") for e in mm.ws_log[2:]), message=worker.output())
    assert len(replies(mm, root_id=post["id"])) == 1


def test_idle_cut_by_the_network_after_a_quiet_period(mm, mchat_bot, fake_llm, start_worker):
    mm.config.idle_cut_after = 1.0  # the path dies after 1 s without traffic…
    worker = started(mm, mchat_bot, start_worker, MCHAT_APP_PING_SECONDS="2.0")  # …and the bot pings every 2 s
    wait_until(lambda: any(e["kind"] == "silent_cut" for e in mm.ws_log), message=worker.output())
    post = mm.user_post(mm.world["minsu"], mm.world["town"], "@ai 조용한 뒤의 질문")
    mm.config.idle_cut_after = None
    wait_until(answered(post), message=worker.output())
    assert len(replies(mm, root_id=post["id"])) == 1


def test_server_restart_with_three_mentions_during_the_outage(mm, mchat_bot, fake_llm, start_worker):
    worker = started(mm, mchat_bot, start_worker)
    w = mm.world
    mm.down()
    posts = [mm.user_post(w["minsu"], w["town"], f"@ai 장애 중 질문 {i}") for i in range(3)]
    time.sleep(0.5)
    mm.up()
    for post in posts:
        wait_until(answered(post), message=worker.output())
    for post in posts:
        assert len(replies(mm, root_id=post["id"])) == 1
    assert any(e["kind"] == "hello" for e in mm.ws_log if e["at"] > mm.ws_log[0]["at"])
    created = sorted((p["create_at"], p["root_id"]) for p in replies(mm, channel=w["town"]))
    assert [root for _, root in created] == [p["id"] for p in posts]  # answered in the order asked


def test_replayed_events_and_a_second_worker_never_answer_twice(mm, mchat_bot, fake_llm, start_worker):
    first = started(mm, mchat_bot, start_worker)
    w = mm.world
    question = mm.user_post(w["minsu"], w["town"], "@ai 한 번만 답해 주세요")
    wait_until(answered(question), message=first.output())
    second = start_worker(mchat_bot)
    wait_until(lambda: "another worker is active" in second.output(), message=second.output())
    mm.config.replay_extra = 100  # the resume replays events the worker already handled
    mm.ws_drop(user=w["bot"])
    wait_until(lambda: any(e["kind"] == "resume" and e["replayed"] for e in mm.ws_log), message=first.output())
    first.stop(kill=True)  # the active worker dies; the standby takes over
    wait_until(lambda: "this worker" in second.output() and "is active" in second.output(), message=second.output())
    wait_until(ws_connected(mm), message=second.output())
    after = mm.user_post(w["minsu"], w["town"], "@ai 두 번째 일꾼이 받는 질문")
    wait_until(answered(after), message=second.output())
    assert len(replies(mm, root_id=question["id"])) == 1
    assert len(replies(mm, root_id=after["id"])) == 1
    assert InboundPost.objects.filter(post_id=question["id"]).count() == 1


def test_thread_chatter_without_a_mention_is_not_answered(mm, mchat_bot, fake_llm, start_worker):
    worker = started(mm, mchat_bot, start_worker)
    w = mm.world
    root = mm.user_post(w["minsu"], w["town"], "@ai 질문 하나")
    wait_until(answered(root), message=worker.output())
    chatter = mm.user_post(w["jisu"], w["town"], "고마워요 다들", root_id=root["id"])
    wait_until(answered(chatter, "ignored"))
    assert InboundPost.objects.get(post_id=chatter["id"]).reason == "no_mention"
    assert len(replies(mm, root_id=root["id"])) == 1


def test_forty_thousand_characters_with_code_blocks(mm, mchat_bot, fake_llm, start_worker):
    blocks = []
    for i in range(12):
        blocks.append(f"설명 {i}: " + "이 함수는 입력을 검사합니다. " * 120)
        blocks.append("```python\n" + "\n".join(f"def f_{i}_{j}(x):\n    return x + {j}" for j in range(45)) + "\n```")
    answer = "\n\n".join(blocks)
    assert len(answer) > 40000
    fake_llm.config.reply = answer
    worker = started(mm, mchat_bot, start_worker)
    post = mm.user_post(mm.world["minsu"], mm.world["town"], "@ai 긴 답을 주세요")
    wait_until(answered(post), timeout=60, message=worker.output())
    parts = replies(mm, root_id=post["id"])
    assert len(parts) >= 3 and all(len(p["message"]) <= 16383 for p in parts)
    assert all(fences_balanced(p["message"]) for p in parts)
    shown = "\n".join(p["message"] for p in parts)
    for i in range(12):
        assert f"설명 {i}: " in shown and "return x + 44" in shown and f"def f_{i}_44(x):" in shown


def test_every_fifth_edit_rate_limited(mm, mchat_bot, fake_llm, start_worker):
    fake_llm.config.reply = " ".join(f"단어{i}" for i in range(120))
    fake_llm.config.tokens_per_second = 40
    mm.fault_add("PUT", r"/api/v4/posts/[^/]+/patch", status=429, body="limit exceeded",
                 headers={"Retry-After": "2"}, every=5, times=0)
    worker = started(mm, mchat_bot, start_worker, MCHAT_EDIT_MIN_CHARS="5", MCHAT_EDIT_INTERVAL_SECONDS="0.1")
    post = mm.user_post(mm.world["minsu"], mm.world["town"], "@ai 천천히")
    wait_until(answered(post), timeout=60, message=worker.output())
    assert final_text(mm, post["id"]) == fake_llm.config.reply
    assert mm.requests_matching("PUT", r"/api/v4/posts/[^/]+/patch")
    assert any(r.status == 429 for r in mm.requests_matching("PUT", r"/api/v4/posts/[^/]+/patch"))


def test_edit_time_limit_continues_in_a_new_post(mm, mchat_bot, fake_llm, start_worker):
    words = [f"낱말{i}" for i in range(90)]
    fake_llm.config.reply = " ".join(words)
    fake_llm.config.tokens_per_second = 30  # 3 s of streaming…
    mm.config.edit_time_limit = 1.0  # …and edits refused 1 s after a post was created
    worker = started(mm, mchat_bot, start_worker, MCHAT_EDIT_MIN_CHARS="5")
    post = mm.user_post(mm.world["minsu"], mm.world["town"], "@ai 길게")
    wait_until(answered(post), timeout=60, message=worker.output())
    parts = replies(mm, root_id=post["id"])
    assert len(parts) >= 2
    shown = " ".join(p["message"] for p in parts).split()
    assert shown == words  # nothing lost, nothing doubled


def test_a_create_whose_response_is_lost_makes_one_post(mm, mchat_bot, fake_llm, start_worker):
    mm.fault_add("POST", "/api/v4/posts", action="lose_response", times=1)
    worker = started(mm, mchat_bot, start_worker)
    post = mm.user_post(mm.world["minsu"], mm.world["town"], "@ai 응답이 사라져도")
    wait_until(answered(post), message=worker.output())
    assert len(replies(mm, root_id=post["id"])) == 1
    assert final_text(mm, post["id"]).endswith("응답이 사라져도")


def test_outage_then_recovery_delivers_queued_replies_once_in_order(mm, mchat_bot, fake_llm, start_worker):
    fake_llm.config.ttft = 1.5
    worker = started(mm, mchat_bot, start_worker, MCHAT_LOOK_BEFORE_REPOST_SECONDS="1")
    w = mm.world
    posts = [mm.user_post(w["minsu"], w["town"], f"@ai 순서 {i}") for i in range(3)]
    for post in posts:
        wait_until(lambda post=post: InboundPost.objects.filter(post_id=post["id"], status="processing").exists(),
                   message=worker.output())
    mm.down()
    wait_until(lambda: OutboxPost.objects.filter(status="pending").count() == 3, timeout=30, message=worker.output())
    time.sleep(2.0)  # longer than the look-before-repost window: the outbox looks for its posts first
    mm.up()
    for post in posts:
        wait_until(lambda post=post: len(replies(mm, root_id=post["id"])) == 1, timeout=30, message=worker.output())
    created = sorted((p["create_at"], p["root_id"]) for p in replies(mm, channel=w["town"]))
    assert [root for _, root in created] == [p["id"] for p in posts]  # in order
    # The post exists before its row is marked sent: wait for the bookkeeping, not for time.
    wait_until(lambda: OutboxPost.objects.filter(status="sent").count() == 3, message=worker.output())
    time.sleep(1.0)
    assert len(replies(mm, channel=w["town"])) == 3  # once


def test_401_on_users_me_marks_unhealthy_without_a_loop(mm, mchat_bot, fake_llm, start_worker):
    mm.token_revoke("fake-bot-token")
    worker = start_worker(mchat_bot)
    wait_until(lambda: WorkerStatus.objects.filter(bot=mchat_bot, state="unhealthy", auth_ok=False).exists(),
               message=worker.output())
    time.sleep(2.0)  # 6 recheck intervals of the test settings
    assert len(mm.requests_matching("GET", "/api/v4/users/me")) == 1
    # A new token in the admin brings the bot back.
    mm.token_add("fresh-token", mm.world["bot"]["id"])
    MattermostBot.objects.filter(pk=mchat_bot.pk).update(token="fresh-token")
    wait_until(ws_connected(mm), message=worker.output())
    assert WorkerStatus.objects.get(bot=mchat_bot).auth_ok is True


def test_401_on_the_upgrade_marks_unhealthy_without_a_loop(mm, mchat_bot, fake_llm, start_worker):
    mm.fault_add("GET", "/api/v4/websocket", status=401, times=0)
    worker = start_worker(mchat_bot)
    wait_until(lambda: WorkerStatus.objects.filter(bot=mchat_bot, state="unhealthy").exists(), message=worker.output())
    time.sleep(2.0)
    assert len(mm.requests_matching("GET", "/api/v4/websocket")) == 1


def test_model_error_mid_stream_keeps_the_partial_text(mm, mchat_bot, fake_llm, start_worker):
    fake_llm.config.reply = "첫째 문장입니다. 둘째 문장입니다. 셋째 문장은 끊깁니다 여기서"
    fake_llm.config.cut_after_tokens = 4
    worker = started(mm, mchat_bot, start_worker)
    post = mm.user_post(mm.world["minsu"], mm.world["town"], "@ai 끊기는 답")
    wait_until(lambda: InboundPost.objects.filter(post_id=post["id"], status__in=["answered", "failed"]).exists(),
               message=worker.output())
    text = final_text(mm, post["id"])
    assert text.startswith("첫째 문장입니다. 둘째") and text.endswith(ERROR_NOTE.strip())


def test_first_mention_mid_thread_takes_the_thread_as_context(mm, mchat_bot, fake_llm, start_worker):
    worker = started(mm, mchat_bot, start_worker)
    w = mm.world
    root = mm.user_post(w["minsu"], w["town"], "글 1: 배포 일정 논의")
    for i in range(2, 11):
        mm.user_post(w["jisu"] if i % 2 else w["minsu"], w["town"], f"글 {i}: 의견", root_id=root["id"])
    ask = mm.user_post(w["minsu"], w["town"], "@ai 지금까지 요약해줘", root_id=root["id"])
    wait_until(answered(ask), message=worker.output())
    prompt = fake_llm.requests[-1]["messages"][-1]["content"]
    for i in range(1, 11):
        assert f"글 {i}:" in prompt
    assert prompt.index("글 1:") < prompt.index("글 10:") < prompt.index("지금까지 요약해줘")
    assert len(replies(mm, root_id=root["id"])) == 1


def test_unverified_or_hidden_email_never_links_to_an_existing_end_user(mm, mchat_bot, fake_llm, start_worker,
                                                                        organization):
    existing = EndUser.objects.create(organization=organization, display_name="진짜 지수")
    Identity.objects.create(organization=organization, end_user=existing, kind="email", value="jisu@example.com",
                            verified=True)
    hidden = mm.user_add("hidden", email="minsu@example.com", email_verified=True)
    mm.member_add(mm.world["town"], hidden)
    worker = started(mm, mchat_bot, start_worker)
    first = mm.user_post(mm.world["jisu"], mm.world["town"], "@ai 저 지수예요")  # email unverified
    wait_until(answered(first), message=worker.output())
    jisu = UserMapping.objects.get(mchat_user_id=mm.world["jisu"]["id"])
    assert jisu.end_user_id != existing.pk and jisu.linked_by == "created"
    mm.config.hide_emails = True
    second = mm.user_post(hidden, mm.world["town"], "@ai 이메일이 가려진 사람")
    wait_until(answered(second), message=worker.output())
    assert UserMapping.objects.get(mchat_user_id=hidden["id"]).linked_by == "created"
    assert Identity.objects.get(kind="email", value="jisu@example.com").end_user_id == existing.pk


def test_malformed_frames_bad_posts_and_unknown_events_are_ignored(mm, mchat_bot, fake_llm, start_worker):
    worker = started(mm, mchat_bot, start_worker)
    bot = mm.world["bot"]
    mm.send_raw("this is not json", user=bot)
    mm.send_raw("[1, 2, 3]", user=bot)
    mm.send_event("posted", {"post": "{not valid json", "channel_type": "O"}, user=bot)
    mm.send_event("posted", {"post": 42}, user=bot)
    mm.send_event("a_future_event", {"x": 1}, user=bot)
    post = mm.user_post(mm.world["minsu"], mm.world["town"], "@ai 그래도 답해 주세요")
    wait_until(answered(post), message=worker.output())
    log = worker.output()
    assert "not JSON" in log and "not valid JSON" in log and "unknown event" in log
    assert worker.proc.poll() is None


def test_stop_from_the_requester_stops_the_answer(mm, mchat_bot, fake_llm, start_worker):
    from mchat.replies import STOP_NOTE
    from runtime.models import Turn

    fake_llm.config.reply = " ".join(f"말{i}" for i in range(400))
    fake_llm.config.tokens_per_second = 20
    worker = started(mm, mchat_bot, start_worker, MCHAT_EDIT_MIN_CHARS="3")
    w = mm.world
    ask = mm.user_post(w["minsu"], w["town"], "@ai 아주 길게 말해줘")
    wait_until(lambda: replies(mm, root_id=ask["id"]), message=worker.output())
    other = mm.user_post(w["jisu"], w["town"], "@ai stop", root_id=ask["id"])  # not the requester
    wait_until(lambda: InboundPost.objects.filter(post_id=other["id"], reason="stop_not_requester").exists(),
               message=worker.output())
    stop = mm.user_post(w["minsu"], w["town"], "@ai 그만", root_id=ask["id"])
    wait_until(answered(ask), timeout=30, message=worker.output())
    assert InboundPost.objects.get(post_id=stop["id"]).reason == "stop"
    text = final_text(mm, ask["id"])
    assert text.endswith(STOP_NOTE.strip()) and "말399" not in text
    turn = Turn.objects.get(client_message_id=ask["id"])
    assert turn.status == "interrupted" and turn.error_code == "stopped" and turn.reply_text


def test_broadcast_mentions_in_model_output_are_neutralised_and_5xx_is_retried(mm, mchat_bot, fake_llm,
                                                                               start_worker):
    fake_llm.config.reply = "@channel 여러분, @here 와 @all 에게 알립니다"
    mm.fault_add("POST", "/api/v4/posts", status=503, times=1)
    worker = started(mm, mchat_bot, start_worker)
    post = mm.user_post(mm.world["minsu"], mm.world["town"], "@ai 공지해줘")
    wait_until(answered(post), message=worker.output())
    parts = replies(mm, root_id=post["id"])
    assert len(parts) == 1  # the 503 was retried with the same pending_post_id: one post
    text = parts[0]["message"]
    assert "@channel" not in text and "@here" not in text and "@all" not in text
    assert text.replace("\u200b", "") == fake_llm.config.reply
