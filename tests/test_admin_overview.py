"""The overview on the admin index (issue 11, 3): figures from the stored turns, per organization and channel."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from kakao.models import CallbackTask
from mejai.overview import _percentile, overview_build
from runtime.models import Agent, Membership, Organization, Session, Turn
from widgets.models import ChatWidget


def seed(organization, *, channel="web_widget", turns=(), preview=False, days_ago=0):
    agent, _ = Agent.objects.get_or_create(organization=organization, name="support")
    session = Session.objects.create(organization=organization, agent=agent, channel=channel,
                                     metadata={"preview": True} if preview else {})
    at = timezone.now() - timedelta(days=days_ago)
    for seq, (status, latency, error_code) in enumerate(turns, start=1):
        turn = Turn.objects.create(session=session, seq=seq, user_text="q", reply_text="a", status=status,
                                   handled_by="llm", latency_ms=latency, tokens_in=10, tokens_out=5,
                                   error_code=error_code)
        Turn.objects.filter(pk=turn.pk).update(created_at=at)
    return session


def test_figures_per_organization_and_channel(organization, other_organization):
    seed(organization, turns=[("completed", 100, ""), ("completed", 200, ""), ("failed", None, "llm_timeout")])
    seed(organization, turns=[("completed", 300, "")], days_ago=3)
    seed(organization, channel="kakao", turns=[("completed", 1000, ""), ("failed", None, "llm_timeout"),
                                               ("failed", None, "llm_unavailable")])
    seed(organization, turns=[("completed", 5, "")] * 4, preview=True)  # "test this agent": counted nowhere
    seed(organization, turns=[("completed", 5, "")], days_ago=45)  # older than 30 days
    seed(other_organization, turns=[("completed", 50, "")])
    ChatWidget.objects.create(organization=organization, agent=Agent.objects.get(organization=organization),
                              name="w1", allowed_domains=["example.com"], last_seen_at=timezone.now())
    ChatWidget.objects.create(organization=organization, agent=Agent.objects.get(organization=organization),
                              name="w2", allowed_domains=["example.com"])

    [mine] = overview_build(organizations=[organization])
    widget = {c.channel: c for c in mine.channels}["web_widget"]
    assert (widget.conversations, widget.messages, widget.conversations_today, widget.messages_today) == (2, 4, 1, 3)
    assert (widget.tokens_in, widget.tokens_out, widget.failed) == (40, 20, 1)
    assert (widget.latency_p50, widget.latency_p95) == (200, 290)
    kakao = {c.channel: c for c in mine.channels}["kakao"]
    assert (kakao.messages, kakao.failed, kakao.latency_p50) == (3, 2, 1000)
    assert mine.failures == [{"code": "llm_timeout", "count": 2}, {"code": "llm_unavailable", "count": 1}]
    assert mine.totals.messages == 7 and len(mine.daily) == 30 and mine.daily[-1]["messages"] == 6
    assert (mine.widgets, mine.widgets_installed) == (2, 1)
    assert mine.chart_svg.startswith("<svg") and mine.chart_svg.count("<rect") == 60


def test_kakao_callback_success_rate(organization, kakao_task_factory):
    for status in ("completed", "completed", "completed", "failed", "pending"):
        kakao_task_factory(organization=organization, status=status)
    [mine] = overview_build(organizations=[organization])
    assert (mine.kakao_delivered, mine.kakao_finished, mine.kakao_success_rate) == (3, 4, 75.0)


@pytest.fixture
def kakao_task_factory():
    import hashlib
    import itertools

    from kakao.models import KakaoBot, KakaoUser

    counter = itertools.count()

    def make(*, organization, status):
        agent, _ = Agent.objects.get_or_create(organization=organization, name="support")
        bot, _ = KakaoBot.objects.get_or_create(organization=organization, bot_id=f"bot-{organization.pk}",
                                                defaults={"agent": agent})
        from endusers.models import EndUser

        user = KakaoUser.objects.filter(bot=bot, user_key="u1").first() or KakaoUser.objects.create(
            bot=bot, user_key="u1", end_user=EndUser.objects.create(organization=organization))
        session = Session.objects.create(organization=organization, agent=agent, channel="kakao")
        turn = Turn.objects.create(session=session, seq=1, user_text="q")
        now = timezone.now()
        return CallbackTask.objects.create(
            organization=organization, bot=bot, kakao_user=user, turn=turn, status=status,
            token_hash=hashlib.sha256(str(next(counter)).encode()).hexdigest(), callback_url="https://x/",
            received_at=now, not_before=now, deadline=now + timedelta(seconds=55))

    return make


def test_percentile_matches_postgresql_percentile_cont():
    assert _percentile([100, 200, 300], 0.5) == 200 and _percentile([100, 200, 300], 0.95) == 290
    assert _percentile([], 0.5) is None and _percentile([7], 0.95) == 7


def test_the_admin_index_shows_the_overview(admin_client, organization):
    seed(organization, turns=[("completed", 120, "")])
    page = admin_client.get("/admin/").content.decode()
    assert "mj-overview" in page and organization.name in page and "120 / 120 ms" in page


def test_an_operator_sees_only_their_organizations_figures(client, organization, other_organization):
    Organization.objects.filter(pk=other_organization.pk).update(name="GLOBEX-ONLY")
    seed(organization, turns=[("completed", 120, "")])
    seed(other_organization, turns=[("failed", None, "globex_secret_failure")])
    user = User.objects.create_user("op", password="pw", is_staff=True)
    Membership.objects.create(user=user, organization=organization)
    client.force_login(user)
    page = client.get("/admin/").content.decode()
    assert organization.name in page and "GLOBEX-ONLY" not in page and "globex_secret_failure" not in page
    loner = User.objects.create_user("nobody", password="pw", is_staff=True)
    client.force_login(loner)
    assert "mj-overview" not in client.get("/admin/").content.decode()


def test_the_overview_is_cached_per_organization_set(admin_client, organization, settings):
    from django.core.cache import cache

    cache.clear()
    settings.ADMIN_OVERVIEW_CACHE_SECONDS = 60
    seed(organization, turns=[("completed", 120, "")])
    assert "120 / 120 ms" in admin_client.get("/admin/").content.decode()
    seed(organization, turns=[("completed", 999, "")])
    assert "120 / 120 ms" in admin_client.get("/admin/").content.decode()  # within the cache time
    cache.clear()
    assert "560 / 955 ms" in admin_client.get("/admin/").content.decode()
