"""Answers given in the skill response itself: no callbackUrl, the builder's tester, a rejected callbackUrl,
an unreachable broker — bounded, never hanging, the message always kept."""

from __future__ import annotations

import pytest
from kombu.exceptions import OperationalError

from kakao import services
from kakao.models import CallbackTask, KakaoEvent
from kakao.tests.conftest import post_skill, texts
from runtime.models import Turn

pytestmark = pytest.mark.django_db(transaction=True)


def test_no_callback_url_answers_synchronously(client, kakao_bot, skill_body, fake_llm, enqueued):
    response = post_skill(client, skill_body("skill_request_no_callback.json", utterance="배송은 얼마나 걸려?"))
    assert response.status_code == 200
    body = response.json()
    assert "useCallback" not in body and body["version"] == "2.0"
    assert texts(body) == ["가짜 모델의 답변입니다: 배송은 얼마나 걸려?"]
    assert Turn.objects.get().status == Turn.Status.COMPLETED
    assert not CallbackTask.objects.exists() and enqueued == []
    assert KakaoEvent.objects.filter(kind="sync_answer").exists()


def test_builder_tester_request_is_answered_synchronously(client, kakao_bot, skill_body, offline_llm, enqueued):
    """The tester's callback tokens always fail "for testing purposes": its callbackUrl is not used."""
    response = post_skill(client, skill_body("skill_request_bot_tester.json"))
    assert response.status_code == 200
    body = response.json()
    assert "useCallback" not in body and texts(body)[0]
    assert not CallbackTask.objects.exists() and enqueued == []
    assert Turn.objects.get().user_text == "테스트 메시지"


@pytest.mark.parametrize("url", [
    "http://bot-api.kakao.com/v1/bots/5ae9b76d7409b11ec845b746/callback/tok",
    "https://evil.example/v1/bots/5ae9b76d7409b11ec845b746/callback/tok",
    "https://10.0.0.8/v1/bots/5ae9b76d7409b11ec845b746/callback/tok",
    "https://bot-api.kakao.com@evil.example/v1/bots/5ae9b76d7409b11ec845b746/callback/tok",
    "https://bot-api.kakao.com.evil.example/v1/bots/5ae9b76d7409b11ec845b746/callback/tok",
    "https://bot-api.kakao.com:8443/v1/bots/5ae9b76d7409b11ec845b746/callback/tok",
    "https://bot-api.kakao.com/v1/bots/5ae9b76d7409b11ec845b746/callback/tok?x=1",
    "https://bot-api.kakao.com/v1/bots/5ae9b76d7409b11ec845b746/callback/tok#frag",
    "https://bot-api.kakao.com/v1/bots/5ae9b76d7409b11ec845b746/callback/" + "t" * 3000,
    12345,
])
def test_rejected_callback_url_gets_a_synchronous_answer_and_a_security_event(client, kakao_bot, skill_body, offline_llm,
                                                                             enqueued, url, caplog):
    response = post_skill(client, skill_body(callback_url=url))
    assert response.status_code == 200
    assert "useCallback" not in response.json()
    assert not CallbackTask.objects.exists() and enqueued == []  # no request is ever made to it
    assert Turn.objects.get().status == Turn.Status.COMPLETED
    event = KakaoEvent.objects.get(kind="callback_url_rejected")
    assert event.detail["reason"]
    assert any(r.name == "kakao.security" for r in caplog.records)


def test_slow_synchronous_answer_is_cut_short_and_held_for_the_next_message(client, kakao_bot, skill_body, fake_llm,
                                                                           settings):
    settings.KAKAO_SYNC_ANSWER_SECONDS = 0.5
    fake_llm.config.ttft = 1.5
    body = skill_body("skill_request_no_callback.json", utterance="환불 규정 알려줘")
    response = post_skill(client, body)
    assert texts(response.json()) == [services.STILL_WORKING_TEXT]
    task = CallbackTask.objects.get()
    assert task.mode == "sync" and task.status == "held"
    # The answer keeps being generated off the request; the next message brings it first.
    fake_llm.config.ttft = 0
    settings.KAKAO_SYNC_ANSWER_SECONDS = 3.5
    nxt = post_skill(client, skill_body("skill_request_no_callback.json", utterance="/답변"))
    outputs = texts(nxt.json())
    assert outputs[0] == "가짜 모델의 답변입니다: 환불 규정 알려줘"
    task.refresh_from_db()
    assert task.status == "completed"
    assert KakaoEvent.objects.filter(kind="held_delivered").exists()


def test_answer_command_without_anything_held(client, kakao_bot, skill_body, offline_llm):
    response = post_skill(client, skill_body("skill_request_no_callback.json", utterance="/답변"))
    assert texts(response.json()) == ["지금 전해 드릴 답변은 없어요. 궁금한 점을 말씀해 주세요."]


def test_broker_unreachable_answers_with_an_apology_and_keeps_the_message(client, kakao_bot, skill_body, monkeypatch):
    def down(*, task_id):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6399. Connection refused.")

    monkeypatch.setattr(services, "callback_enqueue", down)
    response = post_skill(client, skill_body())
    assert response.status_code == 200
    body = response.json()
    assert "useCallback" not in body and texts(body) == [services.BROKER_DOWN_TEXT]
    turn = Turn.objects.get()
    assert turn.user_text == "환불 규정 알려줘" and turn.status == Turn.Status.STORED  # kept
    task = CallbackTask.objects.get()
    assert task.status == "failed" and task.error_code == "broker_unreachable"
    assert KakaoEvent.objects.filter(kind="broker_unreachable").exists()


@pytest.mark.redis
def test_broker_down_is_detected_fast_with_a_real_connection(settings, monkeypatch, live_delivery):
    """A dead broker URL fails within the enqueue connect timeout, not kombu's long retry loop."""
    import time

    settings.CELERY_IN_PROCESS = False
    monkeypatch.setattr(services, "_broker_url", lambda: "redis://127.0.0.1:1/0")
    monkeypatch.setattr(services, "_producer_pool", None)
    started = time.monotonic()
    with pytest.raises(OperationalError):
        services.callback_enqueue(task_id="00000000-0000-0000-0000-000000000000")
    assert services._producer_pool is not None
    monkeypatch.setattr(services, "_producer_pool", None)
    assert time.monotonic() - started < 3  # generous: kombu's default would retry for seconds


def test_welcome_block_greets_by_name_when_known(client, kakao_bot, skill_body, offline_llm):
    body = skill_body("skill_request_no_callback.json")
    first = post_skill(client, body, path="/kakao/welcome")
    assert first.status_code == 200 and "이름을 알려 주시면" in texts(first.json())[0]
    post_skill(client, body)  # "내 이름은 민수야"
    again = post_skill(client, skill_body("skill_request_no_callback.json", utterance=""), path="/kakao/welcome")
    assert texts(again.json())[0].startswith("민수님")


def test_dev_skill_tester_sends_a_real_skill_request(admin_client, kakao_bot, offline_llm, settings):
    settings.KAKAO_DEV_TOOLS = True
    response = admin_client.post("/kakao/dev/tester", {"bot": kakao_bot.pk, "utterance": "내 이름은 민수야"},
                                 content_type="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == 200 and texts(body["response"])[0].startswith("민수님")
    assert admin_client.post("/kakao/dev/tester", {"bot": 999999, "utterance": "x"},
                             content_type="application/json").status_code == 404
    assert admin_client.post("/kakao/dev/tester", "[", content_type="application/json").status_code == 400


def test_kakao_retrying_after_a_broker_outage_gets_the_apology_again(client, kakao_bot, skill_body, monkeypatch):
    def down(*, task_id):
        raise OperationalError("Connection refused.")

    monkeypatch.setattr(services, "callback_enqueue", down)
    post_skill(client, skill_body())
    again = post_skill(client, skill_body())
    assert texts(again.json()) == [services.BROKER_DOWN_TEXT]
    assert Turn.objects.count() == 1 and CallbackTask.objects.count() == 1
