"""Operator APIs, health and the status page: organization-scoped, audited, one error shape."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from endusers.models import EndUser, Identity
from mchat.models import ChannelMapping, MappingAudit, MattermostBot, OutboxPost, UserMapping, WorkerStatus
from runtime.models import Agent, Membership

pytestmark = pytest.mark.django_db

CHANNEL = "c" * 26
USER = "u" * 26


@pytest.fixture
def bots(organization, agent, other_organization):
    other_agent = Agent.objects.create(organization=other_organization, name="other")
    mine = MattermostBot.objects.create(organization=organization, agent=agent, name="ours",
                                        server_url="https://mchat.acme.test", token="secret-acme")
    theirs = MattermostBot.objects.create(organization=other_organization, agent=other_agent, name="theirs",
                                          server_url="https://mchat.globex.test", token="secret-globex")
    return mine, theirs


def auth(key):
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def test_status_per_bot_scoped_and_without_secrets(client, api_key, other_api_key, bots):
    mine, theirs = bots
    WorkerStatus.objects.create(bot=mine, state="websocket", auth_ok=True, heartbeat_at=timezone.now(), last_seq=42,
                                reconnects=3, last_event_at=timezone.now() - timedelta(seconds=5))
    OutboxPost.objects.create(bot=mine, channel_id=CHANNEL, pending_post_id="p1", text="x")
    body = client.get("/api/mchat/status", **auth(api_key)).json()
    assert [b["name"] for b in body["bots"]] == ["ours"]
    bot = body["bots"][0]
    assert bot["state"] == "websocket" and bot["last_seq"] == 42 and bot["reconnects"] == 3
    assert bot["outbox_depth"] == 1 and bot["outbox_oldest_age_seconds"] is not None and bot["auth_ok"] is True
    assert "secret" not in str(body)
    other = client.get("/api/mchat/status", **auth(other_api_key)).json()
    assert [b["name"] for b in other["bots"]] == ["theirs"] and other["bots"][0]["state"] == "down"
    assert client.get("/api/mchat/status").status_code == 401


def test_health_is_503_until_every_active_bot_is_connected(client, bots):
    mine, theirs = bots
    assert client.get("/mchat/health").status_code == 503
    for bot in bots:
        WorkerStatus.objects.create(bot=bot, state="websocket", auth_ok=True, heartbeat_at=timezone.now())
    assert client.get("/mchat/health").status_code == 200
    WorkerStatus.objects.filter(bot=theirs).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    response = client.get("/mchat/health")
    assert response.status_code == 503 and "secret" not in response.content.decode()
    WorkerStatus.objects.filter(bot=theirs).update(heartbeat_at=timezone.now(), state="unhealthy", auth_ok=False)
    assert client.get("/mchat/health").status_code == 503


def test_channel_mappings_list_and_save_scoped_and_audited(client, api_key, other_api_key, bots):
    mine, theirs = bots
    ChannelMapping.objects.create(bot=theirs, mchat_channel_id="d" * 26, name="their-channel")
    created = client.post("/api/mchat/mappings/channels", {"bot_id": mine.pk, "mchat_channel_id": CHANNEL,
                                                            "auto_reply": True, "name": "town"},
                          content_type="application/json", **auth(api_key))
    assert created.status_code == 200 and created.json()["auto_reply"] is True
    listed = client.get("/api/mchat/mappings/channels", **auth(api_key)).json()
    assert [m["name"] for m in listed["results"]] == ["town"]
    # Org B cannot read or change org A's bot.
    assert client.get(f"/api/mchat/mappings/channels?bot_id={mine.pk}", **auth(other_api_key)).status_code == 404
    denied = client.post("/api/mchat/mappings/channels", {"bot_id": mine.pk, "mchat_channel_id": CHANNEL,
                                                           "auto_reply": False},
                         content_type="application/json", **auth(other_api_key))
    assert denied.status_code == 404 and denied.json()["error"]["code"] == "not_found"
    assert ChannelMapping.objects.get(bot=mine).auto_reply is True
    audit = MappingAudit.objects.get(bot=mine)
    assert audit.action == "channel_create" and audit.actor.startswith("api_key:")
    assert not MappingAudit.objects.filter(organization=theirs.organization).exists()
    bad = client.post("/api/mchat/mappings/channels", {"bot_id": mine.pk, "mchat_channel_id": "../x"},
                      content_type="application/json", **auth(api_key))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid"
    garbage = client.post("/api/mchat/mappings/channels", "[1,2]", content_type="application/json", **auth(api_key))
    assert garbage.status_code == 400


def test_user_mappings_and_manual_link_scoped_and_audited(client, api_key, other_api_key, bots, organization):
    mine, theirs = bots
    first = EndUser.objects.create(organization=organization)
    target = EndUser.objects.create(organization=organization, display_name="민수")
    foreign = EndUser.objects.create(organization=theirs.organization)
    UserMapping.objects.create(bot=mine, mchat_user_id=USER, username="minsu", end_user=first)
    UserMapping.objects.create(bot=theirs, mchat_user_id="v" * 26, username="x", end_user=foreign)
    listed = client.get("/api/mchat/mappings/users", **auth(api_key)).json()
    assert [m["username"] for m in listed["results"]] == ["minsu"] and "email" not in listed["results"][0]
    linked = client.post("/api/mchat/mappings/users/link", {"bot_id": mine.pk, "mchat_user_id": USER,
                                                             "end_user_id": target.pk},
                         content_type="application/json", **auth(api_key))
    assert linked.status_code == 200 and linked.json()["linked_by"] == "manual"
    assert UserMapping.objects.get(bot=mine).end_user_id == target.pk
    assert Identity.objects.get(kind="mchat", value=f"mchat.acme.test:{USER}").end_user_id == target.pk
    assert MappingAudit.objects.filter(bot=mine, action="user_link").count() == 1
    # Another organization's end user, or another organization's bot: not found, nothing changed.
    assert client.post("/api/mchat/mappings/users/link", {"bot_id": mine.pk, "mchat_user_id": USER,
                                                          "end_user_id": foreign.pk},
                       content_type="application/json", **auth(api_key)).status_code == 404
    assert client.post("/api/mchat/mappings/users/link", {"bot_id": mine.pk, "mchat_user_id": USER,
                                                          "end_user_id": target.pk},
                       content_type="application/json", **auth(other_api_key)).status_code == 404
    assert UserMapping.objects.get(bot=mine).end_user_id == target.pk


def test_status_page_in_the_admin_is_scoped(client, organization, bots):
    mine, theirs = bots
    user = get_user_model().objects.create_user(username="alice", password="pw-12345", is_staff=True)
    from django.contrib.auth.models import Permission

    user.user_permissions.set(Permission.objects.filter(content_type__app_label="mchat"))
    Membership.objects.create(user=user, organization=organization)
    client.force_login(user)
    page = client.get("/admin/mchat/mattermostbot/status/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Mattermost 연동 현황" in html and "ours" in html and "theirs" not in html and "secret" not in html
