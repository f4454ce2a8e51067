"""Past capacity the skill endpoint still answers every request with a valid skill response: the busy
apology when it cannot take the message, never silence, a hang or a 5xx (issue 15)."""

from __future__ import annotations

import threading

import pytest
from django.db import OperationalError, connections
from django.test import Client
from psycopg_pool import PoolTimeout

from kakao import services, views
from kakao.fakes.callback_receiver import new_token
from kakao.models import CallbackTask
from kakao.responses import skill_response_problems
from kakao.tests.conftest import BOT_ID, post_skill, texts
from runtime.models import Turn

pytestmark = pytest.mark.django_db


def _url(token: str | None = None) -> str:
    return f"https://bot-api.kakao.com/v1/bots/{BOT_ID}/callback/{token or new_token()}"


def assert_busy_apology(response) -> None:
    assert response.status_code == 200, response.content
    body = response.json()
    assert skill_response_problems(body) == [], body
    assert "useCallback" not in body
    assert texts(body) == [services.BUSY_TEXT]
    assert "잠시 후 다시" in texts(body)[0]


def test_the_busy_apology_is_a_valid_korean_first_skill_response():
    body = views.busy_response()
    assert skill_response_problems(body) == []
    text = texts(body)[0]
    assert text.startswith("죄송해요") and "(" in text  # Korean first, English after


def test_with_the_in_flight_limit_at_zero_every_request_gets_the_apology(client, kakao_bot, skill_body, settings,
                                                                         enqueued):
    settings.KAKAO_SKILL_MAX_IN_FLIGHT = 0
    response = post_skill(client, skill_body(callback_url=_url()))
    assert_busy_apology(response)
    assert not Turn.objects.exists() and not CallbackTask.objects.exists() and enqueued == []
    assert views.admission.in_flight == 0


def test_with_no_database_slot_free_the_request_gets_the_apology_and_nothing_is_half_stored(
        client, kakao_bot, skill_body, settings, enqueued):
    settings.KAKAO_SKILL_DB_SLOTS = 1
    settings.KAKAO_SKILL_QUEUE_SECONDS = 0
    slots = views.admission.semaphore()
    assert slots.acquire(timeout=1)  # another request holds the only slot
    try:
        response = post_skill(client, skill_body(callback_url=_url()))
    finally:
        slots.release()
    assert_busy_apology(response)
    assert not Turn.objects.exists() and enqueued == []
    # The slot is free again: the next request is taken.
    assert post_skill(client, skill_body(callback_url=_url())).json()["useCallback"] is True


@pytest.mark.parametrize("error", [
    PoolTimeout("couldn't get a connection after 3.00 sec"),
    OperationalError("couldn't get a connection after 3.00 sec"),
    OperationalError("connection to server at \"127.0.0.1\", port 5432 failed: Connection refused"),
])
def test_a_saturated_pool_or_an_unreachable_database_gets_the_apology(client, kakao_bot, skill_body, monkeypatch,
                                                                        error, enqueued):
    def saturated(**kwargs):
        raise error

    monkeypatch.setattr(services, "skill_receive", saturated)
    assert_busy_apology(post_skill(client, skill_body(callback_url=_url())))
    assert enqueued == [] and views.admission.in_flight == 0


def test_bad_input_is_still_refused_with_its_error_below_capacity(client, kakao_bot, skill_body):
    response = post_skill(client, skill_body(callback_url=_url()), secret="wrong")
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


@pytest.mark.django_db(transaction=True)
def test_every_request_of_a_concurrent_flood_gets_a_valid_skill_response(kakao_bot, skill_body, settings, enqueued):
    """40 requests at once against 2 in flight and 1 database slot: each gets the acknowledgement or the
    apology; every acknowledgement has its stored task, no apology has one (nothing acknowledged unstored)."""
    settings.KAKAO_SKILL_MAX_IN_FLIGHT = 2
    settings.KAKAO_SKILL_DB_SLOTS = 1
    settings.KAKAO_SKILL_QUEUE_SECONDS = 0.05
    users = [f"flood-user-{i}" for i in range(5)]
    for user in users:  # returning users
        assert post_skill(Client(), skill_body(callback_url=_url(), user_id=user)).json()["useCallback"] is True

    count = 40
    start = threading.Barrier(count)
    results: list[tuple[str, int, dict]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        token = new_token()
        try:
            start.wait(timeout=30)
            response = post_skill(Client(), skill_body(utterance=f"질문 {i}", callback_url=_url(token),
                                                        user_id=users[i % len(users)]))
            with lock:
                results.append((token, response.status_code, response.json()))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == count
    acknowledged = 0
    for token, status, body in results:
        assert status == 200 and skill_response_problems(body) == [], body
        stored = CallbackTask.objects.filter(callback_url=_url(token)).exists()
        if body.get("useCallback"):
            acknowledged += 1
            assert stored, body
        else:
            assert texts(body) == [services.BUSY_TEXT] and not stored
    assert acknowledged >= 1
    assert views.admission.in_flight == 0
