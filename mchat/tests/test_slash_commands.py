"""Custom slash commands at POST /mchat/commands, served over real HTTP (the ASGI app on loopback)."""

from __future__ import annotations

import httpx
import pytest

from mchat.slash import WORKING_TEXT, response_url_allowed
from mchat.tests.conftest import wait_until
from runtime.models import Turn

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "slash-token-1234567890"


@pytest.fixture
def slash(mm, mchat_bot, live_server_asgi):
    mchat_bot.slash_command_tokens = [TOKEN]
    mchat_bot.save()

    def post(command: str, text: str = "", *, token: str = TOKEN, channel=None, user=None, trigger="") -> httpx.Response:
        form = {"token": token, "team_id": mm.world["team"]["id"], "channel_id": (channel or mm.world["town"])["id"],
                "user_id": (user or mm.world["minsu"])["id"], "user_name": "minsu", "command": command, "text": text,
                "response_url": f"{mm.url}/hooks/commands/{trigger or 'r1'}", "trigger_id": trigger}
        return httpx.post(f"{live_server_asgi.url}/mchat/commands", data=form, timeout=30)

    return post


def test_memory_in_a_public_channel_is_ephemeral(mm, slash, fake_llm):
    remembered = slash("/remember", "커피는 라떼를 좋아함", trigger="t1")
    assert remembered.status_code == 200 and remembered.json()["response_type"] == "ephemeral"
    listing = slash("/memory", trigger="t2")
    body = listing.json()
    assert body["response_type"] == "ephemeral" and "라떼" in body["text"]
    assert mm.posts_by(mm.world["bot"]) == []  # nothing in the channel
    korean = slash("/메모리", trigger="t3").json()
    assert korean["response_type"] == "ephemeral" and "라떼" in korean["text"]


def test_wrong_or_missing_token_is_rejected(mm, slash, fake_llm):
    wrong = slash("/memory", token="nope")
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
    missing = slash("/memory", token="")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthenticated"
    assert Turn.objects.count() == 0


def test_a_slow_job_is_acknowledged_then_delivered_through_response_url(mm, slash, fake_llm, settings):
    settings.MCHAT_SLASH_SYNC_SECONDS = 0.3
    fake_llm.config.ttft = 2.0
    response = slash("/ai", "오래 걸리는 질문", trigger="slow")
    assert response.status_code == 200 and response.json() == {"response_type": "ephemeral", "text": WORKING_TEXT}
    hooks = wait_until(lambda: mm.hook_posts, timeout=30)
    assert hooks[0]["path"] == "/hooks/commands/slow"
    assert hooks[0]["body"]["response_type"] == "ephemeral" and "오래 걸리는 질문" in hooks[0]["body"]["text"]
    assert Turn.objects.get(client_message_id="slow").status == "completed"


def test_bad_bodies(mm, slash, live_server_asgi):
    url = f"{live_server_asgi.url}/mchat/commands"
    assert httpx.post(url, json={"token": TOKEN}).status_code == 415
    assert httpx.get(url).status_code == 405
    assert httpx.post(url, data={"token": TOKEN, "text": "x" * 40000}).status_code == 413
    no_user = httpx.post(url, data={"token": TOKEN, "command": "/memory"})
    assert no_user.status_code == 400 and no_user.json()["error"]["code"] == "invalid"


def test_response_url_only_back_to_the_bot_server(mchat_bot, mm):
    assert response_url_allowed(bot=mchat_bot, url=f"{mm.url}/hooks/x")
    assert not response_url_allowed(bot=mchat_bot, url="http://169.254.169.254/latest/meta-data")
    assert not response_url_allowed(bot=mchat_bot, url="file:///etc/passwd")
