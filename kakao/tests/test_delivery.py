"""Callback delivery against the fake Kakao receiver: exactly once, retries only where they may help,
never after the deadline, and the held answer when the model is too slow."""

from __future__ import annotations

import threading
import time

import pytest

from kakao import services
from kakao.fakes import callback_receiver as fake
from kakao.fakes.callback_receiver import closed_port_url, new_token
from kakao.models import CallbackTask, KakaoEvent
from kakao.tests.conftest import BOT_ID, post_skill, texts
from runtime.models import Turn

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receive(client, kakao_bot, skill_body, kakao_receiver, enqueued):
    """POST a skill request whose callbackUrl points at the fake receiver; returns (task, token)."""

    def make(utterance: str = "환불 규정 알려줘", *, token: str | None = None, url: str | None = None,
             plan: tuple[str, ...] = ()) -> tuple[CallbackTask, str]:
        token = token or new_token()
        if plan:
            kakao_receiver.plan(token, *plan)
        url = url or kakao_receiver.callback_url(bot_id=BOT_ID, token=token)
        response = post_skill(client, skill_body(utterance=utterance, callback_url=url))
        assert response.status_code == 200 and response.json()["useCallback"] is True, response.content
        return CallbackTask.objects.get(pk=enqueued[-1]), token

    return make


def deliver(task: CallbackTask) -> str:
    return services.callback_deliver(task_id=task.pk)


def turn_finished(turn_id, timeout: float = 15) -> Turn:
    """The held answer keeps being generated after the job returns: wait for it to be stored."""
    deadline = time.monotonic() + timeout
    while True:
        turn = Turn.objects.get(pk=turn_id)
        if turn.is_finished or time.monotonic() > deadline:
            return turn
        time.sleep(0.05)


def test_answer_is_posted_once_in_kakao_format_after_the_settle_time(receive, kakao_receiver, fake_llm):
    task, token = receive()
    assert deliver(task) == "completed"
    got = kakao_receiver.for_token(token)
    assert len(got) == 1
    body = got[0].body
    assert body["version"] == "2.0" and "useCallback" not in body
    assert texts(body) == ["가짜 모델의 답변입니다: 환불 규정 알려줘"]
    assert got[0].raw_path == f"/v1/bots/{BOT_ID}/callback/{token}"  # verbatim
    assert got[0].headers["Content-Type"].startswith("application/json")
    task.refresh_from_db()
    assert got[0].at >= task.not_before.timestamp() - 0.01  # waited for the settle time
    assert got[0].at <= task.deadline.timestamp()
    assert task.status == "completed" and task.attempts == 1 and task.kakao_status == "SUCCESS"
    assert task.kakao_task_id and task.posted_at and task.post_started_at is None and task.response_kind == "answer"
    assert task.turn.status == Turn.Status.COMPLETED and task.turn.tokens_out
    assert KakaoEvent.objects.filter(kind="callback_delivered", task=task).count() == 1


def test_quick_replies_of_the_runtime_become_kakao_quick_replies(receive, kakao_receiver, fake_llm):
    fake_llm.config.tool_calls = [{"name": "suggest_quick_replies", "arguments": {"replies": ["환불 신청", "배송 조회"]}}]
    task, token = receive()
    deliver(task)
    body = kakao_receiver.for_token(token)[0].body
    assert body["template"]["quickReplies"] == [
        {"label": "환불 신청", "action": "message", "messageText": "환불 신청"},
        {"label": "배송 조회", "action": "message", "messageText": "배송 조회"},
    ]


def test_running_the_same_task_again_posts_nothing(receive, kakao_receiver, offline_llm):
    task, token = receive()
    assert deliver(task) == "completed"
    assert deliver(task) == "skipped"
    assert len(kakao_receiver.for_token(token)) == 1


def test_concurrent_runs_of_one_task_post_once(receive, kakao_receiver, offline_llm):
    task, token = receive()
    results = []
    threads = [threading.Thread(target=lambda: results.append(deliver(task))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["completed", "skipped", "skipped", "skipped"]
    assert len(kakao_receiver.for_token(token)) == 1


@pytest.mark.parametrize("behaviour", [fake.FAIL_TOKEN, fake.FAIL_TESTING, fake.FAIL_NOT_ENABLED, fake.FAIL_INVALID_JSON])
def test_known_fail_messages_are_final(receive, kakao_receiver, offline_llm, behaviour):
    task, token = receive(plan=(behaviour, fake.SUCCESS))
    assert deliver(task) == "failed"
    assert len(kakao_receiver.for_token(token)) == 1  # never retried
    task.refresh_from_db()
    assert task.kakao_status == "FAIL" and task.error_code == "kakao_fail" and task.attempts == 1
    assert task.kakao_message == fake.FAIL_MESSAGES[behaviour]
    assert KakaoEvent.objects.filter(kind="callback_failed", task=task).exists()


@pytest.mark.parametrize("first", [fake.ERROR, fake.HTTP_500, fake.HTTP_502, fake.HTTP_429])
def test_retryable_answers_are_retried(receive, kakao_receiver, offline_llm, first):
    task, token = receive(plan=(first, fake.SUCCESS))
    assert deliver(task) == "completed"
    assert [r.behaviour for r in kakao_receiver.for_token(token)] == [first, fake.SUCCESS]
    task.refresh_from_db()
    assert task.attempts == 2 and task.kakao_status == "SUCCESS"


def test_retries_stop_after_three_attempts(receive, kakao_receiver, offline_llm):
    task, token = receive(plan=(fake.ERROR,) * 5)
    assert deliver(task) == "failed"
    assert len(kakao_receiver.for_token(token)) == 3
    task.refresh_from_db()
    assert task.attempts == 3 and task.error_code == "kakao_error" and task.kakao_status == "ERROR"


def test_non_json_answer_is_not_retried(receive, kakao_receiver, offline_llm):
    task, token = receive(plan=(fake.NON_JSON, fake.SUCCESS))
    assert deliver(task) == "failed"
    assert len(kakao_receiver.for_token(token)) == 1
    task.refresh_from_db()
    assert task.error_code == "non_json_response" and task.http_status == 200


def test_redirects_are_not_followed(receive, kakao_receiver, offline_llm):
    task, token = receive(plan=(fake.REDIRECT,))
    assert deliver(task) == "failed"
    assert len(kakao_receiver.received) == 1  # nothing went to the redirect target
    task.refresh_from_db()
    assert task.http_status == 302 and task.error_code == "http_302"


@pytest.mark.parametrize("first", [fake.SLOW, fake.DROP])
def test_no_answer_after_the_request_was_sent_is_an_unknown_outcome_never_posted_again(
        receive, kakao_receiver, offline_llm, settings, first):
    """Issue 11, 16: a receiver that holds the POST past the read timeout (and then answers SUCCESS), or drops
    the connection after reading it, may have delivered the answer: exactly once means no second POST."""
    settings.KAKAO_CALLBACK_READ_TIMEOUT = 0.5
    kakao_receiver.config.slow_seconds = 1.5
    task, token = receive(plan=(first, fake.SUCCESS, fake.SUCCESS))
    assert deliver(task) == "failed"
    assert [r.behaviour for r in kakao_receiver.for_token(token)] == [first]
    task.refresh_from_db()
    assert task.attempts == 1 and task.error_code == "outcome_unknown" and task.post_started_at is None
    assert "not posted again" in task.last_error
    assert KakaoEvent.objects.filter(kind="callback_failed", task=task).exists()


def test_connection_refused_is_retried_then_failed(receive, offline_llm):
    task, _ = receive(url=closed_port_url(bot_id=BOT_ID))
    assert deliver(task) == "failed"
    task.refresh_from_db()
    assert task.attempts == 3 and task.error_code == "connect_error" and task.http_status is None


def test_llm_failure_posts_an_apology(receive, kakao_receiver, fake_llm):
    fake_llm.config.fail_status, fake_llm.config.fail_times = 500, 10
    task, token = receive()
    assert deliver(task) == "completed"
    assert texts(kakao_receiver.for_token(token)[0].body) == [services.APOLOGY_TEXT]
    task.refresh_from_db()
    assert task.response_kind == "apology" and task.turn.status == Turn.Status.FAILED


def test_worker_rechecks_the_callback_url(receive, kakao_receiver, offline_llm):
    task, token = receive()
    CallbackTask.objects.filter(pk=task.pk).update(callback_url="https://evil.example/v1/bots/a/callback/b")
    assert deliver(task) == "failed"
    assert kakao_receiver.received == []
    task.refresh_from_db()
    assert task.error_code == "callback_url_rejected"


class Killed(BaseException):
    """The worker process dying between the POST and recording its outcome."""


def test_worker_killed_after_posting_never_posts_again(receive, kakao_receiver, offline_llm, monkeypatch):
    task, token = receive()

    def crash(*args, **kwargs):
        raise Killed()

    monkeypatch.setattr(services, "_attempt_record", crash)
    with pytest.raises(Killed):
        deliver(task)
    monkeypatch.undo()
    assert len(kakao_receiver.for_token(token)) == 1
    task.refresh_from_db()
    assert task.status == "processing" and task.post_started_at is not None  # the post in flight was recorded first

    # The job comes back (acks_late redelivery) while the post might still be in flight: it waits.
    assert deliver(task) == "skipped"
    task.refresh_from_db()
    assert task.status == "processing"
    # Later, the outcome is unknown: failed, never posted twice.
    CallbackTask.objects.filter(pk=task.pk).update(post_started_at=task.post_started_at.replace(year=2020))
    assert deliver(task) == "skipped"
    task.refresh_from_db()
    assert task.status == "failed" and task.error_code == "outcome_unknown"
    assert len(kakao_receiver.for_token(token)) == 1


def test_sweep_fails_a_post_in_flight_whose_worker_died(receive, kakao_receiver, offline_llm, monkeypatch):
    task, token = receive()
    monkeypatch.setattr(services, "_attempt_record", lambda *a, **k: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        deliver(task)
    monkeypatch.undo()
    CallbackTask.objects.filter(pk=task.pk).update(post_started_at=task.received_at.replace(year=2020))
    assert services.callback_tasks_sweep()["outcome_unknown"] == 1
    task.refresh_from_db()
    assert task.status == "failed"
    assert len(kakao_receiver.for_token(token)) == 1


def test_nothing_is_posted_after_the_deadline(receive, kakao_receiver, offline_llm):
    task, token = receive()
    CallbackTask.objects.filter(pk=task.pk).update(deadline=task.received_at)  # picked up too late
    assert deliver(task) == "held"
    assert kakao_receiver.received == []
    task.refresh_from_db()
    assert task.status == "held" and task.error_code == "deadline_passed"
    assert turn_finished(task.turn_id).status == Turn.Status.COMPLETED  # answered anyway, for the next message


def test_retries_never_run_past_the_deadline(receive, kakao_receiver, offline_llm, settings):
    settings.KAKAO_CALLBACK_DEADLINE_SECONDS = 2.5
    settings.KAKAO_STILL_WORKING_MARGIN_SECONDS = 0.5
    settings.KAKAO_CALLBACK_BACKOFF_SECONDS = 0.6
    settings.KAKAO_CALLBACK_CONNECT_TIMEOUT = 0.5
    settings.KAKAO_CALLBACK_MAX_ATTEMPTS = 10
    task, token = receive(plan=(fake.ERROR,) * 20)
    assert deliver(task) == "failed"
    task.refresh_from_db()
    got = kakao_receiver.for_token(token)
    assert 1 <= len(got) < 10 and all(r.at <= task.deadline.timestamp() for r in got)


def test_llm_slower_than_the_deadline_spends_the_callback_and_holds_the_answer(receive, kakao_receiver, fake_llm, settings):
    settings.KAKAO_CALLBACK_DEADLINE_SECONDS = 4.0
    settings.KAKAO_STILL_WORKING_MARGIN_SECONDS = 2.5
    fake_llm.config.ttft = 3.0
    task, token = receive()
    assert deliver(task) == "held"
    body = kakao_receiver.for_token(token)[0].body
    assert texts(body) == [services.STILL_WORKING_TEXT]
    assert body["template"]["quickReplies"] == [{"label": "답변 보기", "action": "message", "messageText": "/답변"}]
    task.refresh_from_db()
    assert task.status == "held" and task.response_kind == "still_working" and task.kakao_status == "SUCCESS"
    assert turn_finished(task.turn_id).status == Turn.Status.COMPLETED
    assert len(kakao_receiver.received) == 1

    # The next utterance gets the held answer first, then its own.
    fake_llm.config.ttft = 0
    settings.KAKAO_CALLBACK_DEADLINE_SECONDS = 55
    follow, follow_token = receive("/답변")
    assert deliver(follow) == "completed"
    outputs = texts(kakao_receiver.for_token(follow_token)[0].body)
    assert outputs[0] == "가짜 모델의 답변입니다: 환불 규정 알려줘"
    assert outputs[-1] == "더 궁금한 점이 있으면 편하게 말씀해 주세요."
    task.refresh_from_db()
    assert task.status == "completed" and task.held_delivered_by_id == follow.pk
    # Delivered once: a third message does not repeat it.
    third, third_token = receive("고마워")
    deliver(third)
    assert "환불 규정" not in " ".join(texts(kakao_receiver.for_token(third_token)[0].body))


def test_held_answer_is_released_when_the_carrying_callback_fails(receive, kakao_receiver, offline_llm):
    first, _ = receive()
    deliver(first)
    CallbackTask.objects.filter(pk=first.pk).update(status="held")
    follow, follow_token = receive("다음 질문", plan=(fake.FAIL_TOKEN,))
    assert deliver(follow) == "failed"
    first.refresh_from_db()
    assert first.status == "held" and first.held_delivered_by_id is None


def test_second_utterance_while_the_first_is_pending_is_answered_after_it(receive, kakao_receiver, fake_llm):
    """Policy: each utterance has its own callback; the pipeline answers the session's turns in order."""
    fake_llm.config.ttft = 1.0
    first, first_token = receive("환불 규정 알려줘")
    second, second_token = receive("배송은 얼마나 걸려?")
    assert first.turn.session_id == second.turn.session_id
    results = {}
    threads = [threading.Thread(target=lambda t=t: results.setdefault(t.pk, deliver(t))) for t in (second, first)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert set(results.values()) == {"completed"}
    first_turn, second_turn = Turn.objects.get(pk=first.turn_id), Turn.objects.get(pk=second.turn_id)
    assert first_turn.completed_at <= second_turn.started_at  # answered in order
    assert texts(kakao_receiver.for_token(first_token)[0].body) == ["가짜 모델의 답변입니다: 환불 규정 알려줘"]
    assert texts(kakao_receiver.for_token(second_token)[0].body) == ["가짜 모델의 답변입니다: 배송은 얼마나 걸려?"]
    assert len(kakao_receiver.received) == 2
