"""Issue 10 (8): one tenant's bot configuration can never capture another tenant's Kakao requests."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from kakao.models import CallbackTask, KakaoBot
from kakao.tests.conftest import BOT_ID, SECRET, SECRET_HEADER, assert_error, post_skill
from runtime.models import Agent, Turn


@pytest.fixture
def hijacker(other_organization):
    """Org B's bot, saved past validation with the Host header as its 'secret' (as an old row could be)."""
    agent = Agent.objects.create(organization=other_organization, name="theirs")
    bot = KakaoBot(organization=other_organization, agent=agent, name="납치봇", bot_id="b" * 24,
                   secret_header_name="Host", secret_header_value="testserver")
    bot.save()
    return bot


@pytest.fixture
def same_header_bot(other_organization):
    agent = Agent.objects.create(organization=other_organization, name="theirs2")
    return KakaoBot.objects.create(organization=other_organization, agent=agent, name="같은헤더", bot_id="c" * 24,
                                   secret_header_name=SECRET_HEADER, secret_header_value="other-secret")


def test_a_bot_with_a_standard_header_captures_nothing(client, kakao_bot, hijacker, skill_body):
    # Every request carries Host: testserver. Org A's request still reaches org A's bot, and only it.
    response = post_skill(client, skill_body())
    assert response.status_code == 200, response.content
    task = CallbackTask.objects.get()
    assert task.bot_id == kakao_bot.pk and task.organization_id == kakao_bot.organization_id
    # A request naming the hijacker's bot id is refused: its standard-header "secret" is never honoured.
    assert_error(post_skill(client, skill_body(bot={"id": hijacker.bot_id}), secret=None), 403, "forbidden")
    assert not Turn.objects.filter(session__organization=hijacker.organization).exists()


def test_bot_is_selected_by_bot_id_before_its_secret(client, kakao_bot, same_header_bot, skill_body):
    # Two bots use the same header name: each request is checked against its own bot's secret only.
    assert_error(post_skill(client, skill_body(bot={"id": same_header_bot.bot_id})), 403, "forbidden")
    response = post_skill(client, skill_body(bot={"id": same_header_bot.bot_id}), secret="other-secret")
    assert response.status_code == 200
    assert CallbackTask.objects.get().bot_id == same_header_bot.pk
    assert_error(post_skill(client, skill_body(), secret="other-secret"), 403, "forbidden")
    # The fixture's callback token now belongs to the other bot: replaying it for this bot is refused, not a 500.
    assert_error(post_skill(client, skill_body(), secret=SECRET), 409, "callback_token_reused")
    fresh = "https://bot-api.kakao.com/v1/bots/" + BOT_ID + "/callback/fresh-token-1"
    assert post_skill(client, skill_body(callback_url=fresh), secret=SECRET).status_code == 200
    assert CallbackTask.objects.filter(bot=kakao_bot).count() == 1


@pytest.mark.parametrize("name", ["Host", "host", "Content-Type", "User-Agent", "X-Forwarded-For", "Cookie",
                                  "Origin", "Sec-Fetch-Site", "Proxy-Foo", "Bad Header", ""])
def test_standard_or_invalid_header_names_are_refused(kakao_bot, name):
    kakao_bot.secret_header_name = name
    with pytest.raises(ValidationError) as err:
        kakao_bot.full_clean()
    assert "secret_header_name" in err.value.message_dict


def test_custom_header_names_are_accepted(kakao_bot):
    for name in (SECRET_HEADER, "X-Kakao-Skill-Key", "Authorization"):
        kakao_bot.secret_header_name = name
        kakao_bot.full_clean()


def test_admin_refuses_a_standard_header(admin_client, kakao_bot):
    response = admin_client.post(f"/admin/kakao/kakaobot/{kakao_bot.pk}/change/", {
        "organization": kakao_bot.organization_id, "agent": kakao_bot.agent_id, "name": kakao_bot.name,
        "bot_id": BOT_ID, "is_active": "on", "secret_header_name": "Host", "secret_header_value": "x",
        "allowed_callback_hosts": '["bot-api.kakao.com"]', "waiting_text": "w", "welcome_text": "w",
        "session_timeout_minutes": 30})
    assert response.status_code == 200 and "표준 헤더" in response.content.decode()
    kakao_bot.refresh_from_db()
    assert kakao_bot.secret_header_name == SECRET_HEADER
