"""Who may connect to ws/chat/{client_id}, and bad frames: clear bilingual errors, the socket stays open."""

from __future__ import annotations

import datetime

import pytest
from asgiref.sync import sync_to_async

from assistant.models import AssistantClient, ClientTurn
from assistant.tests.support import ChatSocket, access_token, chat_frame, member_make, new_client_id
from runtime.models import Turn

pytestmark = pytest.mark.django_db(transaction=True)


async def test_token_auth_then_ready_lists_projects_and_agents(member, member_token):
    ws = await ChatSocket(new_client_id()).open()
    ready = await ws.auth(member_token)
    assert ready["protocol"] == 1 and ready["seq"] == 0
    assert ready["projects"] == [{"id": "acme", "name": "Acme", "agents": ["support"]}]
    await ws.send({"type": "ping"})
    assert (await ws.recv())["type"] == "pong"
    await ws.close()


async def test_session_user_with_same_origin_is_authenticated_at_connect(member):
    ws = await ChatSocket(new_client_id(), origin="http://testserver", user=member).open()
    assert (await ws.recv())["type"] == "ready"
    await ws.close()


async def test_session_from_a_foreign_origin_is_not_trusted(member):
    ws = await ChatSocket(new_client_id(), origin="https://evil.example", user=member).open()
    await ws.send(chat_frame("안녕"))
    error = await ws.recv()
    assert error["type"] == "error" and error["code"] == "not_authenticated"
    assert "로그인" in error["message"] and "Log in" in error["message"]
    await ws.close()


async def test_chat_before_auth_and_auth_timeout(member, settings):
    settings.ASSISTANT_AUTH_TIMEOUT_SECONDS = 0.5
    ws = await ChatSocket(new_client_id()).open()
    await ws.send(chat_frame("안녕"))
    assert (await ws.recv())["code"] == "not_authenticated"
    timeout = await ws.recv()
    assert timeout["code"] == "auth_timeout"
    assert (await ws.comm.receive_output(5))["type"] == "websocket.close"
    assert await sync_to_async(Turn.objects.count)() == 0


async def test_bad_frames_keep_the_socket_open(member_token):
    ws = await ChatSocket(new_client_id()).open()
    await ws.send("this is not json")
    assert (await ws.recv())["code"] == "invalid_json"
    await ws.send("[1, 2]")
    assert (await ws.recv())["code"] == "invalid_frame"
    await ws.send({"type": "dance"})
    unknown = await ws.recv()
    assert unknown["code"] == "unknown_type" and "알 수 없는" in unknown["message"]
    await ws.auth(member_token)
    await ws.send({"type": "dance"})
    assert (await ws.recv())["code"] == "unknown_type"
    await ws.send({"type": "ping"})
    assert (await ws.recv())["type"] == "pong"
    await ws.close()


async def test_wrong_project_and_agent_store_nothing(member_token, other_member):
    ws = await ChatSocket(new_client_id()).open()
    await ws.auth(member_token)
    await ws.send(chat_frame("안녕", project="globex"))  # exists, but not the user's organization
    error = await ws.recv()
    assert error["code"] == "project_not_found" and error["field"] == "project_id"
    await ws.send(chat_frame("안녕", project="nope"))
    assert (await ws.recv())["code"] == "project_not_found"
    await ws.send(chat_frame("안녕", agent="nobody"))
    error = await ws.recv()
    assert error["code"] == "agent_not_found" and error["message"].startswith("에이전트를 찾을 수 없습니다")
    await ws.send(chat_frame("  "))
    assert (await ws.recv())["code"] == "empty_message"
    await ws.send({"type": "chat", "message": 5, "project_id": "acme", "agent_name": "support"})
    assert (await ws.recv())["code"] == "invalid"
    await ws.send({"type": "ping"})
    assert (await ws.recv())["type"] == "pong"
    assert await sync_to_async(Turn.objects.count)() == 0
    await ws.close()


async def test_inactive_agent_is_not_found(member_token, agent):
    agent.is_active = False
    await sync_to_async(agent.save)()
    ws = await ChatSocket(new_client_id()).open()
    await ws.auth(member_token)
    await ws.send(chat_frame("안녕"))
    assert (await ws.recv())["code"] == "agent_not_found"
    await ws.close()


async def test_another_users_client_id_is_refused(member_token, organization, other_member):
    client_id = new_client_id()
    ws = await ChatSocket(client_id).open()
    await ws.auth(member_token)
    await ws.close()
    # Another user of the same organization, and a user of another organization.
    colleague = await sync_to_async(member_make)(organization, "bob")
    for intruder in (colleague, other_member):
        other = await ChatSocket(client_id).open()
        await other.send({"type": "auth", "token": await sync_to_async(access_token)(intruder)})
        refused = await other.recv()
        assert refused["code"] == "client_forbidden" and "다른 사용자" in refused["message"]
        assert (await other.comm.receive_output(5))["type"] == "websocket.close"
    client = await sync_to_async(AssistantClient.objects.select_related("user").get)(client_id=client_id)
    assert client.user.username == "alice"


async def test_invalid_and_expired_tokens(member, settings):
    from rest_framework_simplejwt.tokens import AccessToken

    # Not a test of the auth timeout: on a loaded machine four auth frames must not race it.
    settings.ASSISTANT_AUTH_TIMEOUT_SECONDS = 120
    ws = await ChatSocket(new_client_id()).open()
    await ws.send({"type": "auth", "token": "garbage"})
    assert (await ws.recv())["code"] == "token_invalid"
    expired = AccessToken.for_user(member)
    expired.set_exp(lifetime=-datetime.timedelta(minutes=1))
    await ws.send({"type": "auth", "token": str(expired)})
    error = await ws.recv()
    assert error["code"] == "token_expired" and "만료" in error["message"]
    await ws.send({"type": "auth", "token": None})
    assert (await ws.recv())["code"] == "token_invalid"
    # Still open, and a good token works.
    await ws.auth(await sync_to_async(access_token)(member))
    assert await sync_to_async(ClientTurn.objects.count)() == 0
    await ws.close()


async def test_malformed_client_id_is_refused():
    ws = await ChatSocket("short").open()
    error = await ws.recv()
    assert error["code"] == "client_id_invalid"
    assert (await ws.comm.receive_output(5))["type"] == "websocket.close"


async def test_user_without_organization_is_refused(organization):
    from django.contrib.auth import get_user_model

    loner = await sync_to_async(get_user_model().objects.create_user)(username="loner", password="x")
    ws = await ChatSocket(new_client_id()).open()
    await ws.send({"type": "auth", "token": await sync_to_async(access_token)(loner)})
    assert (await ws.recv())["code"] == "account_invalid"


async def test_unstorable_text_deep_json_and_huge_seqs_get_error_frames(member_token):
    """NUL or a lone surrogate anywhere in a frame, JSON nested too deep, a last_seq past any stream:
    an error frame each, the socket stays open and nothing is stored (found by a review on PostgreSQL:
    these closed the socket with 1011)."""
    import json

    ws = await ChatSocket(new_client_id()).open()
    await ws.auth(member_token)
    await ws.send({**chat_frame("안녕"), "id": "n\u00002"})
    refused = await ws.recv()
    assert refused["type"] == "error" and refused["code"] == "invalid" and refused["field"] == "id"
    await ws.send({**chat_frame("안녕"), "agent_name": "sup\u0000port"})
    assert (await ws.recv())["field"] == "agent_name"
    await ws.send(json.dumps({"type": "chat", "message": "\ud800"}, ensure_ascii=True))
    assert (await ws.recv())["field"] == "message"
    await ws.send("[" * 5000 + "]" * 5000)
    assert (await ws.recv())["code"] == "json_too_deep"
    await ws.send({"type": "resume", "last_seq": 10**23})
    too_far = await ws.recv()
    assert too_far["code"] == "invalid" and too_far["field"] == "last_seq"
    await ws.send({"type": "ping"})
    assert (await ws.recv())["type"] == "pong"
    assert await sync_to_async(Turn.objects.count)() == 0
    await ws.close()
