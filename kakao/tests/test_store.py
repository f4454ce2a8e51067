"""The acknowledgement's one round trip (kakao.store): statements per acknowledgement, what the one
statement stores, when it steps aside for the ORM path, the timeline moved to the delivery job, and
the bots cache invalidated across processes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from kakao import services, store
from kakao.fakes.callback_receiver import new_token
from kakao.models import CallbackTask, KakaoEvent, KakaoUser
from kakao.tests.conftest import BOT_ID, post_skill
from runtime.models import Session, Turn
from runtime.services import idempotency_key_make

pytestmark = pytest.mark.django_db


def _callback_url(token: str | None = None) -> str:
    return f"https://bot-api.kakao.com/v1/bots/{BOT_ID}/callback/{token or new_token()}"


@pytest.fixture
def returning_user(client, kakao_bot, skill_body, enqueued):
    """A Kakao user with a conversation (first contact took the ORM path); the bots cache is warm."""
    response = post_skill(client, skill_body(utterance="안녕하세요", callback_url=_callback_url()))
    assert response.json()["useCallback"] is True
    return KakaoUser.objects.get(bot=kakao_bot)


@pytest.mark.postgres  # the one-statement path is PostgreSQL's (SQLite keeps the ORM path); CI fails without it
@pytest.mark.django_db(transaction=True)
def test_a_returning_users_acknowledgement_is_one_statement(client, kakao_bot, skill_body, enqueued, returning_user):
    """The query-count test: one SQL statement per acknowledgement on PostgreSQL, nothing else on the request."""
    token = new_token()
    with CaptureQueriesContext(connection) as queries:
        response = post_skill(client, skill_body(utterance="환불 규정 알려줘", callback_url=_callback_url(token)))
    assert response.status_code == 200 and response.json()["useCallback"] is True
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) == 1, statements
    # What the acknowledgement promises is stored, in the user's conversation, in order.
    task = CallbackTask.objects.select_related("turn").get(pk=enqueued[-1])
    assert task.status == CallbackTask.Status.PENDING and task.kakao_user_id == returning_user.pk
    assert task.turn.session_id == returning_user.session_id and task.turn.seq == 2
    assert task.turn.user_text == "환불 규정 알려줘" and task.turn.status == Turn.Status.PENDING
    assert task.turn.author_id == returning_user.end_user_id
    assert (task.deadline - task.received_at) == timedelta(seconds=55)
    assert Session.objects.get(pk=returning_user.session_id).last_seq == 2
    # The key runtime.services.turn_start gives a session's message: a retry finds this turn either way.
    assert task.turn.idempotency_key == idempotency_key_make(
        organization_id=kakao_bot.organization_id, channel="kakao",
        scope=f"bot:{kakao_bot.pk}|session:{returning_user.session_id}", client_message_id=task.token_hash)


def test_a_repeated_token_after_the_one_statement_path_is_acknowledged_once(client, kakao_bot, skill_body, enqueued,
                                                                            returning_user,
                                                                            django_capture_on_commit_callbacks):
    url = _callback_url()
    with django_capture_on_commit_callbacks(execute=True):
        first = post_skill(client, skill_body(utterance="주문 취소할래요", callback_url=url))
        again = post_skill(client, skill_body(utterance="주문 취소할래요", callback_url=url))
    assert first.json() == again.json() and first.json()["useCallback"] is True
    assert CallbackTask.objects.filter(kakao_user=returning_user).count() == 2  # the first contact's and this one
    assert len(enqueued) == 1  # the first contact's was not run (its test transaction never committed)
    assert Turn.objects.filter(session_id=returning_user.session_id).count() == 2


def test_a_token_of_another_user_is_refused_after_the_one_statement_path(client, kakao_bot, skill_body, enqueued,
                                                                         returning_user):
    url = _callback_url()
    post_skill(client, skill_body(utterance="첫 질문", callback_url=url))
    other = post_skill(client, skill_body(utterance="첫 질문", callback_url=url, user_id="another-user"))
    assert other.status_code == 409 and other.json()["error"]["code"] == "callback_token_reused"


def test_an_idle_conversation_starts_a_new_one(client, kakao_bot, skill_body, enqueued, returning_user):
    Session.objects.filter(pk=returning_user.session_id).update(last_activity_at=timezone.now() - timedelta(hours=2))
    post_skill(client, skill_body(utterance="다시 왔어요", callback_url=_callback_url()))
    user = KakaoUser.objects.get(pk=returning_user.pk)
    assert user.session_id != returning_user.session_id
    assert KakaoEvent.objects.filter(kind=KakaoEvent.Kind.CONVERSATION_START).count() == 2


def test_the_name_change_mode_still_takes_the_next_message_as_the_name(client, kakao_bot, skill_body, enqueued,
                                                                       returning_user):
    post_skill(client, skill_body(utterance="이름 바꿔", callback_url=_callback_url()))
    post_skill(client, skill_body(utterance="홍길동", callback_url=_callback_url()))
    last = Turn.objects.filter(session_id=returning_user.session_id).order_by("-seq").first()
    assert last.user_text == "/이름 홍길동"


def test_a_merged_end_user_is_followed(client, kakao_bot, skill_body, enqueued, returning_user, organization):
    from endusers.models import EndUser

    survivor = EndUser.objects.create(organization=organization)
    EndUser.objects.filter(pk=returning_user.end_user_id).update(merged_into=survivor)
    post_skill(client, skill_body(utterance="안녕", callback_url=_callback_url()))
    assert KakaoUser.objects.get(pk=returning_user.pk).end_user_id != returning_user.end_user_id


@pytest.mark.parametrize("text", ["/이름", "이름 바꿔", "내 이름은 민수야", "my name is Alex",
                                  "/답변 내 이름은 민수야"])  # the same order of checks as name_flow_apply
def test_name_flow_texts_step_aside(text):
    assert services.name_flow_involved(text)


@pytest.mark.parametrize("text", ["환불 규정 알려줘", "/답변", "이름이 뭐야?", "배송 언제 와요"])
def test_plain_texts_take_the_one_statement_path(text):
    assert not services.name_flow_involved(text)


def test_without_postgresql_the_statement_steps_aside(kakao_bot, returning_user):
    if store.supported():
        pytest.skip("PostgreSQL: the statement runs (the test below)")
    assert store.acknowledgement_store(bot=kakao_bot, skill=None, text="x", callback=None, now=timezone.now()) is None


@pytest.mark.postgres
def test_the_statement_writes_nothing_when_it_steps_aside(kakao_bot, returning_user):
    """A guard that fails (here: the session is closed) leaves every table as it was."""
    from kakao.parsing import skill_request_parse
    from kakao.security import callback_url_check
    from kakao.tests.conftest import fixture_json

    Session.objects.filter(pk=returning_user.session_id).update(status=Session.Status.CLOSED)
    body = fixture_json("skill_request_callback.json")
    body["userRequest"]["callbackUrl"] = _callback_url()
    skill = skill_request_parse(body)
    callback = callback_url_check(skill.callback_url, allowed_hosts=kakao_bot.allowed_callback_hosts)
    before = (Turn.objects.count(), CallbackTask.objects.count(), Session.objects.get(pk=returning_user.session_id).last_seq)
    assert store.acknowledgement_store(bot=kakao_bot, skill=skill, text="안녕", callback=callback,
                                       now=timezone.now()) is None
    after = (Turn.objects.count(), CallbackTask.objects.count(), Session.objects.get(pk=returning_user.session_id).last_seq)
    assert before == after


@pytest.mark.django_db(transaction=True)
def test_the_timeline_is_written_by_the_delivery_job(client, kakao_bot, skill_body, monkeypatch, returning_user,
                                                     kakao_receiver, fake_llm):
    """Not on the request: the job announces the stored turn (runtime's turn_stored) before answering."""
    from endusers.models import EndUserMessage
    from kakao.fakes.callback_receiver import new_token as token_new

    # The first contact's turn was never answered here (its job was only recorded): out of the way.
    Turn.objects.filter(session_id=returning_user.session_id).update(status=Turn.Status.STORED)
    announced: list[tuple[str, bool]] = []
    monkeypatch.setattr(services, "callback_enqueue",
                        lambda *, task_id, announce=False: announced.append((str(task_id), announce)))
    token = token_new()
    url = kakao_receiver.callback_url(bot_id=BOT_ID, token=token)
    response = post_skill(client, skill_body(utterance="환불 규정 알려줘", callback_url=url))
    assert response.json()["useCallback"] is True
    task_id, announce = announced[-1]
    task = CallbackTask.objects.get(pk=task_id)
    if store.supported():
        assert announce is True
        assert not EndUserMessage.objects.filter(turn_id=task.turn_id).exists()
    assert services.callback_deliver(task_id=task_id, announce=announce) == "completed"
    assert EndUserMessage.objects.filter(turn_id=task.turn_id).count() == 1


# --- the bots cache ------------------------------------------------------------------------------

def test_a_bot_changed_in_another_process_is_seen_within_the_stamp_interval(kakao_bot, monkeypatch):
    from django.core.cache import cache

    monkeypatch.setattr(services, "BOTS_STAMP_SECONDS", 0.0)
    assert [b.pk for b in services.bots_active()] == [kakao_bot.pk]
    # Another process deactivates the bot: its row changes and it writes a new stamp (no signal here).
    type(kakao_bot).objects.filter(pk=kakao_bot.pk).update(is_active=False)
    assert [b.pk for b in services.bots_active()] == [kakao_bot.pk]  # same stamp: the cached list
    cache.set(services.BOTS_STAMP_KEY, "changed-elsewhere", None)
    assert services.bots_active() == []


def test_saving_a_bot_writes_a_new_stamp_once_it_commits(kakao_bot, django_capture_on_commit_callbacks):
    """Not before: another process seeing the stamp early could reload the old row and keep it."""
    from django.core.cache import cache

    before = cache.get(services.BOTS_STAMP_KEY)
    with django_capture_on_commit_callbacks(execute=True):
        kakao_bot.waiting_text = "잠시만요"
        kakao_bot.save()
        assert cache.get(services.BOTS_STAMP_KEY) == before  # still inside the transaction
    assert cache.get(services.BOTS_STAMP_KEY) not in (None, before)


def test_the_cached_bots_cost_no_statement(kakao_bot, django_assert_num_queries):
    services.bots_active()
    with django_assert_num_queries(0):
        for _ in range(3):
            assert services.bots_active()
