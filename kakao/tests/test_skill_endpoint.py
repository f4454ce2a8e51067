"""POST /kakao/skill: the acknowledgement, and every bad input the issue names (a clear error, nothing stored)."""

from __future__ import annotations

import json

import pytest

from kakao.models import CallbackTask, KakaoEvent, KakaoUser
from kakao.tests.conftest import SECRET, assert_error, fixture_json, post_skill
from runtime.models import Session, Turn

pytestmark = pytest.mark.django_db


def nothing_stored():
    assert Turn.objects.count() == 0 and CallbackTask.objects.count() == 0 and KakaoUser.objects.count() == 0


# --- the acknowledgement ----------------------------------------------------------------------

def test_callback_request_is_acknowledged_and_stored_with_its_task(client, kakao_bot, skill_body, enqueued,
                                                                   django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_skill(client, skill_body())
    assert response.status_code == 200
    assert response.json() == fixture_json("skill_response_use_callback.json")
    turn = Turn.objects.get()
    assert turn.user_text == "환불 규정 알려줘" and turn.status == Turn.Status.PENDING  # no LLM call inline
    assert turn.session.channel == "kakao" and turn.session.metadata["kakao_bot_id"] == kakao_bot.bot_id
    task = CallbackTask.objects.get()
    assert task.turn == turn and task.status == CallbackTask.Status.PENDING and task.mode == "callback"
    assert task.callback_url == skill_body()["userRequest"]["callbackUrl"]
    assert round((task.deadline - task.received_at).total_seconds()) == 55
    assert enqueued == [str(task.pk)]  # queued on commit
    user = KakaoUser.objects.get()
    assert user.user_key == skill_body()["userRequest"]["user"]["id"] and user.session_id == turn.session_id
    assert user.end_user.identities.get().kind == "kakao"
    assert KakaoEvent.objects.filter(kind="conversation_start").count() == 1


def test_nothing_is_queued_before_commit(client, kakao_bot, skill_body, enqueued):
    # Inside the test transaction the commit never happens: the job must not have been queued.
    assert post_skill(client, skill_body()).status_code == 200
    assert enqueued == []


def test_same_callback_token_twice_is_processed_once(client, kakao_bot, skill_body, enqueued,
                                                     django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = post_skill(client, skill_body())
        second = post_skill(client, skill_body())
    assert first.json() == second.json() and second.json()["useCallback"] is True
    assert Turn.objects.count() == 1 and CallbackTask.objects.count() == 1
    assert len(enqueued) == 1


def test_next_message_continues_the_session_and_a_timed_out_one_starts_a_new_one(client, kakao_bot, skill_body):
    post_skill(client, skill_body())
    post_skill(client, skill_body(callback_url=skill_body()["userRequest"]["callbackUrl"] + "x"))
    assert Session.objects.count() == 1 and list(Turn.objects.values_list("seq", flat=True)) == [1, 2]
    Session.objects.update(last_activity_at=Session.objects.get().last_activity_at.replace(year=2020))
    post_skill(client, skill_body(callback_url=skill_body()["userRequest"]["callbackUrl"] + "y"))
    assert Session.objects.count() == 2
    assert KakaoEvent.objects.filter(kind="conversation_start").count() == 2


def test_second_utterance_while_the_first_is_pending_gets_its_own_task_in_order(client, kakao_bot, skill_body, enqueued,
                                                                                django_capture_on_commit_callbacks):
    """Policy: every utterance is acknowledged with its own callback; the pipeline answers them in order."""
    url = skill_body()["userRequest"]["callbackUrl"]
    with django_capture_on_commit_callbacks(execute=True):
        post_skill(client, skill_body())
        second = post_skill(client, skill_body(utterance="배송은 얼마나 걸려?", callback_url=url + "2"))
    assert second.json()["useCallback"] is True
    first_task, second_task = CallbackTask.objects.order_by("received_at")
    assert first_task.turn.seq == 1 and second_task.turn.seq == 2
    assert first_task.turn.session_id == second_task.turn.session_id
    assert enqueued == [str(first_task.pk), str(second_task.pk)]


def test_trailing_bang_bot_id_is_accepted(client, kakao_bot, skill_body):
    body = skill_body(bot={"id": kakao_bot.bot_id + "!", "name": "상담봇"})
    assert post_skill(client, body).status_code == 200


def test_unknown_fields_and_odd_client_extra_are_ignored(client, kakao_bot, skill_body):
    body = skill_body(surprise={"nested": [1, 2]})
    body["action"]["clientExtra"] = "null"
    body["action"]["params"] = {"sys_date": "{\"value\": \"2026-11-20\"}", "n": 3}
    body["userRequest"]["lang"] = None
    assert post_skill(client, body).status_code == 200


# --- bad input: a clear error, nothing stored --------------------------------------------------

def test_wrong_method(client, kakao_bot):
    response = client.get("/kakao/skill", headers={"X-Mejai-Skill-Secret": SECRET})
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"


def test_missing_secret(client, kakao_bot, skill_body):
    assert_error(post_skill(client, skill_body(), secret=None), 401, "unauthenticated")
    nothing_stored()


def test_wrong_secret(client, kakao_bot, skill_body):
    assert_error(post_skill(client, skill_body(), secret=SECRET + "x"), 403, "forbidden")
    assert_error(post_skill(client, skill_body(), secret=""), 403, "forbidden")
    nothing_stored()


def test_inactive_bot_is_refused(client, kakao_bot, skill_body):
    kakao_bot.is_active = False
    kakao_bot.save()
    assert_error(post_skill(client, skill_body()), 403, "forbidden")
    nothing_stored()


def test_other_bot_id(client, kakao_bot, skill_body):
    assert_error(post_skill(client, skill_body(bot={"id": "ffffffffffffffffffffffff"})), 403, "forbidden")
    assert_error(post_skill(client, skill_body(bot=None)), 400, "invalid")
    nothing_stored()


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_wrong_content_type(client, kakao_bot, skill_body, content_type):
    assert_error(post_skill(client, skill_body(), content_type=content_type), 415, "unsupported_media_type")
    nothing_stored()


def test_empty_body(client, kakao_bot):
    assert_error(post_skill(client, None, raw=b""), 400, "empty_body")
    assert_error(post_skill(client, None, raw=b"   \n"), 400, "empty_body")
    nothing_stored()


def test_oversized_body(client, kakao_bot, skill_body, settings):
    body = skill_body(padding="x" * 70_000)
    assert_error(post_skill(client, body), 413, "payload_too_large")
    nothing_stored()


def test_non_utf8_body(client, kakao_bot, skill_body):
    raw = json.dumps(skill_body(), ensure_ascii=False).encode("cp949")
    assert_error(post_skill(client, None, raw=raw), 400, "invalid_encoding")
    nothing_stored()


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"42", b"null", b"true"])
def test_non_object_json(client, kakao_bot, raw):
    assert_error(post_skill(client, None, raw=raw), 400, "invalid")
    nothing_stored()


def test_malformed_json(client, kakao_bot):
    assert_error(post_skill(client, None, raw=b'{"userRequest": '), 400, "malformed_json")
    nothing_stored()


def test_user_request_missing(client, kakao_bot, skill_body):
    body = skill_body()
    del body["userRequest"]
    assert assert_error(post_skill(client, body), 400, "invalid")["field"] == "userRequest"
    body = skill_body(userRequest="hello")
    assert assert_error(post_skill(client, body), 400, "invalid")["field"] == "userRequest"
    nothing_stored()


@pytest.mark.parametrize("user_id", [None, "", "   ", 12345, "x" * 71, "abc\x00def"])
def test_user_id_missing_or_bad(client, kakao_bot, skill_body, user_id):
    body = skill_body()
    if user_id is None:
        del body["userRequest"]["user"]["id"]
    else:
        body["userRequest"]["user"]["id"] = user_id
    assert assert_error(post_skill(client, body), 400, "invalid")["field"] == "userRequest.user.id"
    nothing_stored()


def test_user_id_of_70_characters_is_fine(client, kakao_bot, skill_body):
    assert post_skill(client, skill_body(user_id="u" * 70)).status_code == 200


def test_utterance_missing(client, kakao_bot, skill_body):
    assert assert_error(post_skill(client, skill_body(utterance=None)), 400, "invalid")["field"] == "userRequest.utterance"
    nothing_stored()


@pytest.mark.parametrize("utterance", ["", "   ", "\n\t ", "\u200b\u200b", "\x00\x01", "\u200b \ufeff"])
def test_utterance_empty_whitespace_or_only_invisible(client, kakao_bot, skill_body, utterance):
    error = assert_error(post_skill(client, skill_body(utterance=utterance)), 400, "empty_message")
    assert error["field"] == "userRequest.utterance"
    nothing_stored()


def test_utterance_not_a_string(client, kakao_bot, skill_body):
    assert_error(post_skill(client, skill_body(utterance=["hi"])), 400, "invalid")
    nothing_stored()


def test_utterance_over_the_limit(client, kakao_bot, skill_body):
    error = assert_error(post_skill(client, skill_body(utterance="가" * 1001)), 400, "message_too_long")
    assert error["limit"] == 1000
    nothing_stored()


def test_utterance_control_and_zero_width_characters_are_removed_not_stored(client, kakao_bot, skill_body):
    """Same rule as every channel (runtime.text): hidden characters are dropped, the visible text is kept."""
    assert post_skill(client, skill_body(utterance="환불\x00 규정\u200b 알려\x07줘\u202e")).status_code == 200
    assert Turn.objects.get().user_text == "환불 규정 알려줘"
