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
    # Exact percentile_cont of [100, 200, 300] is (200, 290); the histogram answers within half a bucket (5 ms).
    assert (widget.latency_p50, widget.latency_p95) == (205, 295)
    kakao = {c.channel: c for c in mine.channels}["kakao"]
    assert (kakao.messages, kakao.failed, kakao.latency_p50) == (3, 2, 1025)  # the 1000-1050 ms bucket
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
    assert "mj-overview" in page and organization.name in page and "125 / 125 ms" in page  # 120-130 ms bucket


def test_an_operator_sees_only_their_organizations_figures(client, organization, other_organization):
    Organization.objects.filter(pk=other_organization.pk).update(name="GLOBEX-ONLY")
    seed(organization, turns=[("completed", 120, "")])
    seed(other_organization, turns=[("failed", None, "globex_secret_failure")])
    seed(other_organization, turns=[("failed", None, "globex_rolled_up_failure")], days_ago=3)
    from mejai.overview import rollup_pending

    rollup_pending()  # the closed day comes from the roll-up, which holds every organization's rows
    user = User.objects.create_user("op", password="pw", is_staff=True)
    Membership.objects.create(user=user, organization=organization)
    client.force_login(user)
    page = client.get("/admin/").content.decode()
    assert organization.name in page and "GLOBEX-ONLY" not in page and "globex_secret_failure" not in page
    assert "globex_rolled_up_failure" not in page
    loner = User.objects.create_user("nobody", password="pw", is_staff=True)
    client.force_login(loner)
    assert "mj-overview" not in client.get("/admin/").content.decode()


def test_the_overview_is_cached_per_organization_set(admin_client, organization, settings):
    from django.core.cache import cache

    cache.clear()
    settings.ADMIN_OVERVIEW_CACHE_SECONDS = 60
    seed(organization, turns=[("completed", 120, "")])
    assert "125 / 125 ms" in admin_client.get("/admin/").content.decode()
    seed(organization, turns=[("completed", 999, "")])
    assert "125 / 125 ms" in admin_client.get("/admin/").content.decode()  # within the cache time
    cache.clear()
    assert "560 / 952 ms" in admin_client.get("/admin/").content.decode()


# --- the daily roll-up (closed days from F_conv_daily_stats, today live) --------------------------


def test_latency_buckets_in_sql_match_python(organization):
    from mejai.overview import day_bounds, figures_compute, latency_bucket

    latencies = [0, 9, 10, 999, 1000, 1049, 1050, 9999, 10000, 59999, 60000, 64999, 65000, 700000]
    seed(organization, turns=[("completed", ms, "") for ms in latencies])
    start, end = day_bounds(timezone.localdate())
    [row] = figures_compute(start=start, end=end, organization_ids=[organization.pk]).values()
    expected = {}
    for ms in latencies:
        expected[latency_bucket(ms)] = expected.get(latency_bucket(ms), 0) + 1
    assert row["latency_histogram"] == expected
    assert latency_bucket(1049) == 1000 and latency_bucket(64999) == 60000 and latency_bucket(700000) == 600000


def test_histogram_percentiles_are_within_half_a_bucket_of_the_exact_ones():
    import random

    from mejai.overview import histogram_percentile, latency_bucket, latency_bucket_width

    rng = random.Random(11)
    for size in (1, 2, 7, 100, 5000):
        values = sorted(rng.choice([rng.randint(0, 999), rng.randint(1000, 9999), rng.randint(10000, 90000)])
                        for _ in range(size))
        histogram = {}
        for ms in values:
            histogram[latency_bucket(ms)] = histogram.get(latency_bucket(ms), 0) + 1
        for p in (0.5, 0.95):
            exact = _percentile(values, p)
            assert abs(histogram_percentile(histogram, p) - exact) <= latency_bucket_width(latency_bucket(exact)) / 2 + 1
    assert histogram_percentile({}, 0.5) is None


def test_closed_days_are_read_from_the_roll_up_and_today_live(organization):
    from mejai.overview import rollup_pending
    from runtime.models import DailyStat, DailyStatDay

    old = seed(organization, turns=[("completed", 300, ""), ("failed", None, "llm_error")], days_ago=2)
    seed(organization, turns=[("completed", 100, "")])
    [live] = overview_build(organizations=[organization])  # nothing rolled up yet: every day live
    assert not DailyStatDay.objects.exists()  # reads never write
    assert (live.totals.messages, live.totals.messages_today, live.totals.failed) == (3, 1, 1)
    assert len(rollup_pending()) == 29 and DailyStat.objects.filter(organization=organization).count() == 1
    [rolled] = overview_build(organizations=[organization])
    assert (rolled.totals.messages, rolled.totals.failed, rolled.failures) == (3, 1, live.failures)
    assert rolled.channels[0].latency_histogram == live.channels[0].latency_histogram
    # The closed day now comes from the roll-up: turns deleted afterwards (retention) keep their counts ...
    Turn.objects.filter(session=old).delete()
    # ... and today's figures are live.
    seed(organization, turns=[("completed", 100, "")])
    [second] = overview_build(organizations=[organization])
    assert (second.totals.messages, second.totals.messages_today, second.totals.conversations) == (4, 2, 3)
    assert second.failures == [{"code": "llm_error", "count": 1}]
    assert second.daily[-3]["messages"] == 2 and second.daily[-1]["messages"] == 2


def test_a_turn_finishing_on_a_closed_day_makes_the_day_roll_up_again(organization):
    from mejai.overview import days_pending, rollup_pending
    from runtime import signals

    session = seed(organization, turns=[("completed", 300, ""), ("streaming", None, "")], days_ago=1)
    today = timezone.localdate()
    assert rollup_pending(today=today) and days_pending(today=today) == [today - timedelta(days=1)]  # still open
    open_turn = Turn.objects.get(session=session, seq=2)
    Turn.objects.filter(pk=open_turn.pk).update(status="completed", latency_ms=500)
    assert rollup_pending(today=today) == [today - timedelta(days=1)] and days_pending(today=today) == []
    # A finished turn whose status changes later: the turn_finished receiver marks its day changed.
    Turn.objects.filter(pk=open_turn.pk).update(status="failed", error_code="late_failure")
    signals.turn_finished.send(sender=Turn, turn=Turn.objects.get(pk=open_turn.pk))
    assert days_pending(today=today) == [today - timedelta(days=1)]
    [mine] = overview_build(organizations=[organization])  # the stale day is computed live meanwhile
    assert mine.failures == [{"code": "late_failure", "count": 1}] and days_pending(today=today)
    assert rollup_pending(today=today) == [today - timedelta(days=1)] and days_pending(today=today) == []
    [mine] = overview_build(organizations=[organization])
    assert mine.failures == [{"code": "late_failure", "count": 1}]


def test_the_roll_up_keeps_organizations_apart(organization, other_organization):
    from mejai.overview import rollup_pending

    seed(organization, turns=[("completed", 100, "")], days_ago=5)
    seed(other_organization, turns=[("failed", None, "globex_only")] * 3, days_ago=5)
    seed(other_organization, turns=[("failed", None, "globex_today")])
    rollup_pending()
    [mine] = overview_build(organizations=[organization])
    assert (mine.totals.messages, mine.totals.failed, mine.failures) == (1, 0, [])
    [theirs] = overview_build(organizations=[other_organization])
    assert (theirs.totals.messages, theirs.totals.failed) == (4, 4)


def test_the_backfill_command_and_the_periodic_job(organization, settings):
    from io import StringIO

    from django.core.management import call_command

    from runtime.models import DailyStat, DailyStatDay
    from runtime.tasks import overview_rollup_task

    assert settings.CELERY_BEAT_SCHEDULE["overview-rollup"]["task"] == overview_rollup_task.name
    seed(organization, turns=[("completed", 100, "")], days_ago=40)
    seed(organization, turns=[("completed", 100, "")], days_ago=3)
    out = StringIO()
    call_command("overview_rollup", "--days", "60", "--no-progress", stdout=out)
    assert "rolled up 59 days (2 rows)" in out.getvalue() and DailyStat.objects.count() == 2
    call_command("overview_rollup", "--days", "60", "--no-progress", stdout=out)
    assert "rolled up 0 days" in out.getvalue()  # nothing stale
    call_command("overview_rollup", "--days", "60", "--all", "--no-progress", stdout=out)
    assert "rolled up 59 days (2 rows)" in out.getvalue().splitlines()[-1]
    DailyStatDay.objects.filter(day=timezone.localdate() - timedelta(days=3)).delete()
    assert overview_rollup_task.apply().get() == [(timezone.localdate() - timedelta(days=3)).isoformat()]


def test_a_callback_still_being_posted_keeps_its_day_pending_until_it_ends(organization, kakao_task_factory):
    """The turn finished before midnight, the roll-up ran after it, the callback post ended later still:
    the day must not be taken as final while a callback of it is pending (it would never be counted)."""
    from mejai.overview import days_pending, rollup_pending

    task = kakao_task_factory(organization=organization, status="processing")
    Turn.objects.filter(pk=task.turn_id).update(status="completed", created_at=task.received_at - timedelta(days=2))
    CallbackTask.objects.filter(pk=task.pk).update(received_at=task.received_at - timedelta(days=2))
    today = timezone.localdate()
    day = today - timedelta(days=2)
    assert day in rollup_pending(today=today) and day in days_pending(today=today)  # the post has not ended
    CallbackTask.objects.filter(pk=task.pk).update(status="completed")
    assert day in rollup_pending(today=today) and day not in days_pending(today=today)
    [mine] = overview_build(organizations=[organization])
    assert (mine.kakao_delivered, mine.kakao_finished) == (1, 1)


def test_an_abandoned_turn_does_not_keep_its_day_pending_and_its_failure_is_counted_later(organization):
    """A turn left streaming by a process that died never finishes: its day is rolled up once (not on
    every run, nor computed live on every visit), and when the stale-turn rule fails it, the day again."""
    from mejai.overview import days_pending, rollup_pending
    from runtime.services import _predecessors_pending

    session = seed(organization, turns=[("streaming", None, "")], days_ago=3)
    Turn.objects.filter(session=session).update(updated_at=timezone.now() - timedelta(days=3))
    today = timezone.localdate()
    day = today - timedelta(days=3)
    assert day in rollup_pending(today=today) and day not in days_pending(today=today)
    # The customer writes again: the stale-turn rule fails the abandoned turn, and its day rolls up again.
    later = Turn.objects.create(session=session, seq=2, user_text="여보세요?")
    assert _predecessors_pending(later) == 0
    assert day in days_pending(today=today)
    [mine] = overview_build(organizations=[organization])
    assert mine.failures == [{"code": "abandoned", "count": 1}]
    assert day in rollup_pending(today=today) and day not in days_pending(today=today)
    [mine] = overview_build(organizations=[organization])
    assert mine.failures == [{"code": "abandoned", "count": 1}]


def test_a_retry_that_abandons_its_stale_turn_marks_the_day_changed_too(organization):
    """The other route of the stale-turn rule (a retry waiting on a turn nobody answers): its day
    rolls up again and counts the failure, as with a later turn of the session."""
    from mejai.overview import days_pending, rollup_pending
    from runtime.services import _turn_finished_or_abandoned

    session = seed(organization, turns=[("streaming", None, "")], days_ago=3)
    Turn.objects.filter(session=session).update(updated_at=timezone.now() - timedelta(days=3))
    today = timezone.localdate()
    day = today - timedelta(days=3)
    assert day in rollup_pending(today=today) and day not in days_pending(today=today)
    assert _turn_finished_or_abandoned(Turn.objects.get(session=session).pk) is True
    assert day in days_pending(today=today)
    [mine] = overview_build(organizations=[organization])
    assert mine.failures == [{"code": "abandoned", "count": 1}]
