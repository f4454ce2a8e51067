"""End to end: the fixture requests through POST /kakao/skill on the ASGI app, a real Celery worker on Redis
(PostgreSQL shared), the fake LLM and the fake Kakao receiver. The answer arrives exactly once, in Kakao's
format, within the deadline."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from kakao.fakes import callback_receiver as fake
from kakao.models import CallbackTask
from kakao.security import token_hash
from kakao.tests.conftest import BOT_ID, SECRET, SECRET_HEADER, fixture_json, texts
from runtime.models import Turn

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

FIXTURE_TOKEN = fixture_json("skill_request_callback.json")["userRequest"]["callbackUrl"].rsplit("/", 1)[1]


@pytest.fixture
def loopback_env(monkeypatch, settings):
    """The worker process reads the test-only loopback permission from its environment."""
    monkeypatch.setenv("KAKAO_TEST_LOOPBACK_CALLBACKS", "1")
    settings.KAKAO_TEST_LOOPBACK_CALLBACKS = True


@pytest.fixture
def stack(loopback_env, fake_llm, kakao_bot, kakao_receiver, live_delivery, celery_worker_process, live_server_asgi):
    def post(body: dict) -> httpx.Response:
        return httpx.post(f"{live_server_asgi.url}/kakao/skill", content=json.dumps(body, ensure_ascii=False).encode(),
                          headers={"Content-Type": "application/json;charset=UTF-8", SECRET_HEADER: SECRET}, timeout=10)

    return post


def _with_receiver(body: dict, receiver, token: str) -> dict:
    body["userRequest"]["callbackUrl"] = receiver.callback_url(bot_id=BOT_ID, token=token)
    return body


def test_fixture_requests_end_to_end(stack, kakao_receiver, fake_llm, settings):
    settings.KAKAO_CALLBACK_SETTLE_SECONDS = 1.0  # the production settle time, not the tests' short one
    fake_llm.config.ttft = 0.3
    body = _with_receiver(fixture_json("skill_request_callback.json"), kakao_receiver, FIXTURE_TOKEN)
    sent = time.time()
    ack = stack(body)
    assert ack.status_code == 200 and ack.json() == fixture_json("skill_response_use_callback.json")
    assert time.time() - sent < 5  # Kakao's limit (the figure itself is in bench/)

    got = kakao_receiver.wait_for(1, token=FIXTURE_TOKEN, timeout=55)
    assert len(got) == 1, "no callback within the deadline"
    callback = got[0]
    assert callback.raw_path == f"/v1/bots/{BOT_ID}/callback/{FIXTURE_TOKEN}"
    assert callback.body["version"] == "2.0" and "useCallback" not in callback.body
    assert texts(callback.body) == ["가짜 모델의 답변입니다: 환불 규정 알려줘"]
    assert sent + 1.0 <= callback.at <= sent + 55  # after the settle time, before the deadline

    # Kakao retries the same request: acknowledged again, processed once.
    again = stack(_with_receiver(fixture_json("skill_request_callback.json"), kakao_receiver, FIXTURE_TOKEN))
    assert again.json()["useCallback"] is True
    time.sleep(2.5)
    assert len(kakao_receiver.for_token(FIXTURE_TOKEN)) == 1
    task = CallbackTask.objects.get(token_hash__isnull=False)
    assert task.status == "completed" and task.attempts == 1 and task.kakao_status == "SUCCESS"
    assert Turn.objects.filter(session__channel="kakao").count() == 1

    # No callbackUrl, and the builder's tester: synchronous answers, nothing posted.
    sync = stack(fixture_json("skill_request_no_callback.json")).json()
    assert texts(sync)[0].startswith("가짜 모델의 답변입니다")
    tester = stack(fixture_json("skill_request_bot_tester.json")).json()
    assert "useCallback" not in tester and texts(tester)
    assert len(kakao_receiver.received) == 1


def test_worker_retries_kakao_error_and_stops_on_fail(stack, kakao_receiver):
    retried, final = "e2e-retried-token", "e2e-final-token"
    kakao_receiver.plan(retried, fake.ERROR, fake.SUCCESS)
    kakao_receiver.plan(final, fake.FAIL_TOKEN, fake.SUCCESS)
    first = fixture_json("skill_request_callback.json")
    second = fixture_json("skill_request_callback.json")
    second["userRequest"]["user"]["id"] = "another-kakao-user"
    assert stack(_with_receiver(first, kakao_receiver, retried)).json()["useCallback"] is True
    assert stack(_with_receiver(second, kakao_receiver, final)).json()["useCallback"] is True
    assert len(kakao_receiver.wait_for(2, token=retried, timeout=55)) == 2
    assert len(kakao_receiver.wait_for(1, token=final, timeout=55)) == 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and CallbackTask.objects.filter(status__in=["pending", "processing"]).exists():
        time.sleep(0.2)
    ok = CallbackTask.objects.get(token_hash=token_hash(retried))
    assert ok.status == "completed" and ok.attempts == 2 and ok.kakao_status == "SUCCESS"
    failed = CallbackTask.objects.get(token_hash=token_hash(final))
    assert failed.status == "failed" and failed.attempts == 1 and failed.kakao_status == "FAIL"
    time.sleep(1.5)
    assert len(kakao_receiver.for_token(final)) == 1
