"""Admin (organization-scoped, write-only token, audited mapping changes) and the environment bootstrap."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from endusers.models import EndUser
from mchat import services
from mchat.models import ChannelMapping, MappingAudit, MattermostBot, UserMapping
from runtime.models import Agent, Membership

pytestmark = pytest.mark.django_db

SECRET = "xoxo-very-secret-bot-token"


def staff(username, organization):
    user = get_user_model().objects.create_user(username=username, password="pw-12345", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="mchat"))
    Membership.objects.create(user=user, organization=organization)
    return user


@pytest.fixture
def bots(organization, agent, other_organization):
    other_agent = Agent.objects.create(organization=other_organization, name="support")
    mine = MattermostBot.objects.create(organization=organization, agent=agent, name="ours",
                                        server_url="https://mchat.acme.test", token=SECRET)
    theirs = MattermostBot.objects.create(organization=other_organization, agent=other_agent, name="theirs",
                                          server_url="https://mchat.globex.test", token="globex-token")
    return mine, theirs


def test_admin_lists_only_own_organization_and_never_shows_the_token(client, organization, bots):
    mine, theirs = bots
    client.force_login(staff("alice", organization))
    listing = client.get("/admin/mchat/mattermostbot/")
    assert listing.status_code == 200
    assert "ours" in listing.content.decode() and "theirs" not in listing.content.decode()
    page = client.get(f"/admin/mchat/mattermostbot/{mine.pk}/change/")
    assert page.status_code == 200 and SECRET not in page.content.decode()
    assert client.get(f"/admin/mchat/mattermostbot/{theirs.pk}/change/").status_code in (302, 404)


def test_admin_keeps_the_token_when_left_empty_and_replaces_it_when_given(client, organization, agent, bots):
    mine, _ = bots
    client.force_login(staff("alice", organization))
    form = {"organization": organization.pk, "agent": agent.pk, "name": "ours", "server_url": mine.server_url,
            "token": "", "is_active": "on", "mode": "auto", "polling_interval_seconds": "2", "verify_tls": "on",
            "ca_bundle_path": "", "mention_name": "ai", "allowed_team_ids": "[]", "allowed_channel_ids": "[]",
            "slash_tokens": ""}
    response = client.post(f"/admin/mchat/mattermostbot/{mine.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    mine.refresh_from_db()
    assert mine.token == SECRET and mine.mention_name == "ai"
    client.post(f"/admin/mchat/mattermostbot/{mine.pk}/change/", {**form, "token": "new-token", "slash_tokens": "a, b"})
    mine.refresh_from_db()
    assert mine.token == "new-token" and mine.slash_command_tokens == ["a", "b"]


def test_admin_mapping_changes_are_audited_and_scoped(client, organization, bots):
    mine, theirs = bots
    end_user = EndUser.objects.create(organization=organization)
    other_user = EndUser.objects.create(organization=organization)
    mapping = UserMapping.objects.create(bot=mine, mchat_user_id="u" * 26, username="minsu", end_user=end_user)
    their_mapping = UserMapping.objects.create(bot=theirs, mchat_user_id="v" * 26, username="x",
                                               end_user=EndUser.objects.create(organization=theirs.organization))
    channel = ChannelMapping.objects.create(bot=mine, mchat_channel_id="c" * 26, name="town")
    client.force_login(staff("alice", organization))
    assert client.get(f"/admin/mchat/usermapping/{their_mapping.pk}/change/").status_code in (302, 404)
    response = client.post(f"/admin/mchat/usermapping/{mapping.pk}/change/", {"end_user": other_user.pk})
    assert response.status_code == 302
    mapping.refresh_from_db()
    assert mapping.end_user_id == other_user.pk and mapping.linked_by == "manual"
    client.post(f"/admin/mchat/channelmapping/{channel.pk}/change/", {"auto_reply": "on"})
    channel.refresh_from_db()
    assert channel.auto_reply is True
    actions = list(MappingAudit.objects.filter(organization=organization).values_list("action", "actor"))
    assert ("user_link", "admin:alice") in actions and ("channel_update", "admin:alice") in actions


def test_bootstrap_from_environment(monkeypatch, organization, agent):
    monkeypatch.setenv("MCHAT_URL", "http://127.0.0.1:8065/")
    monkeypatch.setenv("MCHAT_BOT_TOKEN", "env-token")
    monkeypatch.setenv("MCHAT_VERIFY_SSL", "0")
    monkeypatch.setenv("MCHAT_ORGANIZATION", organization.slug)
    bot = services.bot_bootstrap_from_env()
    assert bot.server_url == "http://127.0.0.1:8065" and bot.token == "env-token" and bot.verify_tls is False
    assert bot.agent == agent
    monkeypatch.setenv("MCHAT_BOT_TOKEN", "rotated")
    again = services.bot_bootstrap_from_env()
    assert again.pk == bot.pk and again.token == "rotated"
    assert MattermostBot.objects.count() == 1
    assert "rotated" not in repr(again) and "rotated" not in str(again)


def test_bootstrap_errors_are_clear(monkeypatch, organization, agent):
    from mejai.errors import ApiError

    monkeypatch.delenv("MCHAT_URL", raising=False)
    assert services.bot_bootstrap_from_env() is None
    monkeypatch.setenv("MCHAT_URL", "http://127.0.0.1:8065")
    monkeypatch.delenv("MCHAT_BOT_TOKEN", raising=False)
    with pytest.raises(ApiError, match="MCHAT_BOT_TOKEN"):
        services.bot_bootstrap_from_env()
    monkeypatch.setenv("MCHAT_BOT_TOKEN", "t")
    monkeypatch.setenv("MCHAT_ORGANIZATION", "nope")
    with pytest.raises(ApiError, match="MCHAT_ORGANIZATION"):
        services.bot_bootstrap_from_env()


def test_worker_check_says_whether_a_bot_is_configured(monkeypatch, organization, agent, capsys):
    from django.core.management import call_command

    monkeypatch.delenv("MCHAT_URL", raising=False)
    with pytest.raises(SystemExit) as exited:
        call_command("mchat_worker", "--check")
    assert exited.value.code == 3 and "no Mattermost bot configured" in capsys.readouterr().out
    MattermostBot.objects.create(organization=organization, agent=agent, name="ours", server_url="https://m.test",
                                 token=SECRET)
    call_command("mchat_worker", "--check")
    out = capsys.readouterr().out
    assert "ours → https://m.test" in out and SECRET not in out
