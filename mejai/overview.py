"""The operator's overview on the admin index: per organization and channel, from a daily roll-up.

Figures (30 days unless said): conversations started and messages today and per day (a chart), tokens
in and out, model latency p50/p95 of answered turns, failed turns by reason, widget installs, Kakao
callback success rate. Widget previews and "test this agent" chats (sessions with
`metadata.preview`) count in none of them.

Closed days are read from runtime.DailyStat (`F_conv_daily_stats`, one row per organization ×
channel × agent × day), which rollup_day writes by recomputing a whole day from `D_conv_turns`;
today is computed live with the same queries bounded to today (the `created_at` index) and the
organizations asked for. The periodic job `runtime.overview_rollup` (CELERY_BEAT_SCHEDULE) rolls up
closed days missing from the roll-up or changed since (a turn of that day finished later); until it has,
the overview computes such a day live too (reads never write; `manage.py overview_rollup` backfills).
Latency percentiles come from a fixed-bucket histogram (latency_bucket), exact to half a bucket.
bench/bench_overview.py measures it at 1M turns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, F, IntegerField, Q, Sum, Value, When
from django.db.models.functions import Least
from django.utils import timezone
from django.utils.translation import gettext

DAYS = 30
# Latency histogram buckets: (below this many ms, bucket width ms); above the last bound, LATENCY_WIDE
# wide buckets up to LATENCY_CAP. Half a width is the error of a percentile read from the histogram.
LATENCY_STEPS = ((1_000, 10), (10_000, 50), (60_000, 500))
LATENCY_WIDE = 5_000
LATENCY_CAP = 600_000


@dataclass
class ChannelFigures:
    channel: str
    label: str
    conversations_today: int = 0
    messages_today: int = 0
    conversations: int = 0
    messages: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    latency_p50: int | None = None
    latency_p95: int | None = None
    failed: int = 0
    latency_histogram: dict[int, int] = field(default_factory=dict, repr=False)


@dataclass
class OrganizationOverview:
    organization_id: int
    name: str
    channels: list[ChannelFigures] = field(default_factory=list)
    daily: list[dict] = field(default_factory=list)  # [{"day", "messages", "conversations"}] oldest first
    failures: list[dict] = field(default_factory=list)  # [{"code", "count"}], most first
    widgets: int = 0
    widgets_installed: int = 0
    kakao_delivered: int = 0
    kakao_finished: int = 0
    chart_svg: str = ""

    @property
    def kakao_success_rate(self) -> float | None:
        return round(100 * self.kakao_delivered / self.kakao_finished, 1) if self.kakao_finished else None

    @property
    def totals(self) -> ChannelFigures:
        total = ChannelFigures(channel="", label="")
        for row in self.channels:
            for name in ("conversations_today", "messages_today", "conversations", "messages", "tokens_in",
                         "tokens_out", "failed"):
                setattr(total, name, getattr(total, name) + getattr(row, name))
        return total


# --- the roll-up ---------------------------------------------------------------------------------


def latency_bucket(ms: int) -> int:
    """The lower bound (ms) of the histogram bucket holding a latency of `ms` (what _bucket_sql computes)."""
    for below, width in LATENCY_STEPS:
        if ms < below:
            return ms // width * width
    return min(ms // LATENCY_WIDE * LATENCY_WIDE, LATENCY_CAP)


def latency_bucket_width(lower: int) -> int:
    for below, width in LATENCY_STEPS:
        if lower < below:
            return width
    return LATENCY_WIDE


def _bucket_sql():
    """latency_bucket in SQL (integer division on PostgreSQL and SQLite alike)."""
    whens = [When(latency_ms__lt=below, then=F("latency_ms") / width * width) for below, width in LATENCY_STEPS]
    return Case(*whens, default=Least(F("latency_ms") / LATENCY_WIDE * LATENCY_WIDE, Value(LATENCY_CAP)),
                output_field=IntegerField())


def histogram_percentile(histogram: dict[int, int], p: float) -> int | None:
    """The p-th percentile (0..1) of a {bucket lower bound ms: count} histogram, like PostgreSQL's
    percentile_cont with each bucket's values spread evenly over the bucket: within half a bucket."""
    total = sum(histogram.values())
    if not total:
        return None

    def value(rank: int) -> float:
        seen = 0
        for lower in sorted(histogram):
            count = histogram[lower]
            if rank < seen + count:
                return lower + latency_bucket_width(lower) * (rank - seen + 0.5) / count
            seen += count
        raise AssertionError("rank beyond the histogram")

    position = (total - 1) * p
    low = int(position)
    high = min(low + 1, total - 1)
    a, b = value(low), value(high)
    return round(a + (b - a) * (position - low))


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a day in TIME_ZONE, as aware datetimes."""
    start = timezone.make_aware(datetime.combine(day, datetime.min.time()))
    return start, timezone.make_aware(datetime.combine(day + timedelta(days=1), datetime.min.time()))


def _blank_row() -> dict:
    return {"conversations": 0, "messages": 0, "tokens_in": 0, "tokens_out": 0, "failed": 0, "unfinished": 0,
            "failures": {}, "latency_histogram": {}, "callbacks_delivered": 0, "callbacks_failed": 0}


def figures_compute(*, start: datetime, end: datetime, organization_ids=None) -> dict[tuple[int, str, int], dict]:
    """The roll-up figures of the turns created in [start, end), per (organization id, channel, agent id):
    {"conversations", "messages", "tokens_in", "tokens_out", "failed", "unfinished" (turns not finished and
    callbacks not yet delivered or given up), "failures":
    {code: n}, "latency_histogram": {lower ms: n}, "callbacks_delivered", "callbacks_failed"}.
    Five grouped queries, each bounded by `created_at` (or the callbacks' `received_at`)."""
    from kakao.models import CallbackTask
    from runtime.models import Turn

    turns = (Turn.objects.filter(created_at__gte=start, created_at__lt=end)
             # has_key first: a session without the key must stay in (SQL NULL would drop it from NOT(...)).
             .exclude(session__metadata__has_key="preview", session__metadata__preview=True))
    tasks = CallbackTask.objects.filter(received_at__gte=start, received_at__lt=end, mode=CallbackTask.Mode.CALLBACK)
    if organization_ids is not None:
        turns = turns.filter(session__organization_id__in=organization_ids)
        tasks = tasks.filter(organization_id__in=organization_ids)
    keys = ("session__organization_id", "session__channel", "session__agent_id")
    # A turn left open longer than RUNTIME_TURN_STALE_SECONDS is abandoned (its process died): it keeps
    # no day pending (it may never finish), and the stale-turn rule marks its day changed if it fails it.
    stale_before = timezone.now() - timedelta(seconds=settings.RUNTIME_TURN_STALE_SECONDS)
    rows: dict[tuple[int, str, int], dict] = {}

    def row_of(r, prefix="session__") -> dict:
        key = (r[f"{prefix}organization_id"], r[f"{prefix}channel"], r[f"{prefix}agent_id"])
        return rows.setdefault(key, _blank_row())

    for r in turns.values(*keys).annotate(
            messages=Count("pk"), conversations=Count("pk", filter=Q(seq=1)),
            tokens_in=Sum("tokens_in"), tokens_out=Sum("tokens_out"),
            failed=Count("pk", filter=Q(status=Turn.Status.FAILED)),
            unfinished=Count("pk", filter=~Q(status__in=Turn.FINISHED) & Q(updated_at__gte=stale_before))).order_by():
        row = row_of(r)
        for name in ("messages", "conversations", "failed", "unfinished"):
            row[name] = r[name]
        row["tokens_in"], row["tokens_out"] = r["tokens_in"] or 0, r["tokens_out"] or 0
    for r in turns.filter(status=Turn.Status.FAILED).values(*keys, "error_code").annotate(n=Count("pk")).order_by():
        row_of(r)["failures"][r["error_code"] or "unknown"] = r["n"]
    answered = turns.filter(status=Turn.Status.COMPLETED, handled_by="llm", latency_ms__isnull=False)
    for r in answered.annotate(bucket=_bucket_sql()).values(*keys, "bucket").annotate(n=Count("pk")).order_by():
        row_of(r)["latency_histogram"][r["bucket"]] = r["n"]
    finished = (CallbackTask.Status.COMPLETED, CallbackTask.Status.FAILED, CallbackTask.Status.EXPIRED)
    task_keys = ("organization_id", "turn__session__channel", "turn__session__agent_id")
    for r in tasks.filter(status__in=finished).values(*task_keys).annotate(
            delivered=Count("pk", filter=Q(status=CallbackTask.Status.COMPLETED)),
            failed=Count("pk", filter=~Q(status=CallbackTask.Status.COMPLETED))).order_by():
        row = rows.setdefault((r["organization_id"], r["turn__session__channel"], r["turn__session__agent_id"]),
                              _blank_row())
        row["callbacks_delivered"], row["callbacks_failed"] = r["delivered"], r["failed"]
    # A callback still being posted counts as unfinished, so its day is rolled up again once it is delivered
    # or given up (the turn may have finished, and the day been rolled up, before the post ended).
    for r in tasks.exclude(status__in=finished).values(*task_keys).annotate(n=Count("pk")).order_by():
        row = rows.setdefault((r["organization_id"], r["turn__session__channel"], r["turn__session__agent_id"]),
                              _blank_row())
        row["unfinished"] += r["n"]
    return rows


def rollup_day(day: date) -> int:
    """Recompute the DailyStat rows of a closed `day` from the turns (every organization) and mark the
    day rolled up; the number of rows written. Safe to run twice at once (the day's marker is locked)."""
    from runtime.models import DailyStat, DailyStatDay

    start, end = day_bounds(day)
    with transaction.atomic():
        marker, _ = DailyStatDay.objects.select_for_update().get_or_create(
            day=day, defaults={"rolled_at": timezone.now()})
        read_at = timezone.now()  # a turn finishing after this marks the day changed again
        rows = figures_compute(start=start, end=end)
        DailyStat.objects.filter(day=day).delete()
        DailyStat.objects.bulk_create([
            DailyStat(organization_id=org_id, channel=channel, agent_id=agent_id, day=day,
                      **{k: v for k, v in row.items() if k != "unfinished"})
            for (org_id, channel, agent_id), row in rows.items()
        ])
        marker.rolled_at = read_at
        marker.unfinished = sum(row["unfinished"] for row in rows.values())
        marker.save(update_fields=["rolled_at", "unfinished"])
    return len(rows)


def days_pending(*, today: date, days: int = DAYS) -> list[date]:
    """The closed days of the `days`-day window ending today that the roll-up lacks or holds stale:
    never rolled up, a turn finished since (changed_at), or turns or Kakao callbacks were still open when it was."""
    from runtime.models import DailyStatDay

    first = today - timedelta(days=days - 1)
    fresh = set(DailyStatDay.objects.filter(day__gte=first, day__lt=today, unfinished=0)
                .filter(Q(changed_at__isnull=True) | Q(changed_at__lt=F("rolled_at"))).values_list("day", flat=True))
    return [first + timedelta(days=i) for i in range(days - 1) if first + timedelta(days=i) not in fresh]


def rollup_pending(*, today: date | None = None, days: int = DAYS) -> list[date]:
    """Roll up every pending closed day of the window (days_pending); the days rolled up."""
    pending = days_pending(today=today or timezone.localdate(), days=days)
    for day in pending:
        rollup_day(day)
    return pending


def day_changed(*, turn) -> None:
    """turn_finished receiver's work: a turn of an already closed day finished, so that day's roll-up
    (if any) is stale. Nothing for today's turns (today is always computed live)."""
    created = getattr(turn, "created_at", None)
    if created is not None:
        days_changed(created=[created])


def days_changed(*, created) -> None:
    """Turns created at these times (aware datetimes) changed: mark their closed days' roll-up stale."""
    from runtime.models import DailyStatDay

    today = timezone.localdate()
    days = {timezone.localdate(at) for at in created} - {today}
    days = [day for day in days if day < today]
    if days:
        DailyStatDay.objects.filter(day__in=days).update(changed_at=timezone.now())


# --- the overview --------------------------------------------------------------------------------


def overview_build(*, organizations, now: datetime | None = None) -> list[OrganizationOverview]:
    """The overview of each of `organizations` (a queryset or list of Organization), in that order.
    Reads only: closed days the roll-up holds fresh come from DailyStat; today and any pending closed day
    (not rolled up yet, or changed since: days_pending) are computed from the turns, per day."""
    from runtime.models import Channel, DailyStat
    from widgets.models import ChatWidget

    organizations = list(organizations)
    if not organizations:
        return []
    now = now or timezone.now()
    today = timezone.localdate(now)
    first = today - timedelta(days=DAYS - 1)
    org_ids = [o.pk for o in organizations]
    labels = dict(Channel.choices)
    result = {o.pk: OrganizationOverview(organization_id=o.pk, name=o.name) for o in organizations}

    # (organization, channel, day, figures): fresh closed days from the roll-up, the rest live.
    pending = days_pending(today=today)
    cells: list[tuple[int, str, date, dict]] = []
    for stat in (DailyStat.objects.filter(organization_id__in=org_ids, day__gte=first, day__lt=today)
                 .exclude(day__in=pending)):
        cells.append((stat.organization_id, stat.channel, stat.day, {
            "conversations": stat.conversations, "messages": stat.messages, "tokens_in": stat.tokens_in,
            "tokens_out": stat.tokens_out, "failed": stat.failed, "failures": stat.failures,
            "latency_histogram": stat.latency_histogram, "callbacks_delivered": stat.callbacks_delivered,
            "callbacks_failed": stat.callbacks_failed}))
    for day in [*pending, today]:
        start, end = day_bounds(day)
        for (org_id, channel, _agent), row in figures_compute(start=start, end=min(end, now + timedelta(seconds=1)),
                                                              organization_ids=org_ids).items():
            cells.append((org_id, channel, day, row))

    per_channel: dict[tuple[int, str], ChannelFigures] = {}
    by_day: dict[tuple[int, date], dict] = {}
    failures: dict[int, dict[str, int]] = {}
    for org_id, channel, day, row in cells:
        overview = result[org_id]
        figures = per_channel.get((org_id, channel))
        if figures is None:
            figures = per_channel[(org_id, channel)] = ChannelFigures(
                channel=channel, label=gettext(labels.get(channel, channel)))
            overview.channels.append(figures)
        for name in ("conversations", "messages", "tokens_in", "tokens_out", "failed"):
            setattr(figures, name, getattr(figures, name) + row[name])
        if day == today:
            figures.conversations_today += row["conversations"]
            figures.messages_today += row["messages"]
        for lower, count in row["latency_histogram"].items():
            figures.latency_histogram[int(lower)] = figures.latency_histogram.get(int(lower), 0) + count
        daily = by_day.setdefault((org_id, day), {"messages": 0, "conversations": 0})
        daily["messages"] += row["messages"]
        daily["conversations"] += row["conversations"]
        for code, count in row["failures"].items():
            failures.setdefault(org_id, {})[code] = failures.get(org_id, {}).get(code, 0) + count
        overview.kakao_delivered += row["callbacks_delivered"]
        overview.kakao_finished += row["callbacks_delivered"] + row["callbacks_failed"]

    for figures in per_channel.values():
        figures.latency_p50 = histogram_percentile(figures.latency_histogram, 0.5)
        figures.latency_p95 = histogram_percentile(figures.latency_histogram, 0.95)
    for org_id, overview in result.items():
        # A channel with only callbacks (no turn in the window) is no row of the table.
        overview.channels = [c for c in overview.channels if c.messages or c.conversations]
        overview.channels.sort(key=lambda f: -f.messages)
        for offset in range(DAYS):
            day = first + timedelta(days=offset)
            row = by_day.get((org_id, day), {})
            overview.daily.append({"day": day, "messages": row.get("messages", 0),
                                   "conversations": row.get("conversations", 0)})
        overview.chart_svg = daily_chart_svg(overview.daily)
        overview.failures = [{"code": code, "count": count} for code, count in
                             sorted(failures.get(org_id, {}).items(), key=lambda item: (-item[1], item[0]))]

    for row in ChatWidget.objects.filter(organization_id__in=org_ids).values("organization_id").annotate(
            total=Count("pk"), installed=Count("pk", filter=Q(last_seen_at__isnull=False))).order_by():
        result[row["organization_id"]].widgets = row["total"]
        result[row["organization_id"]].widgets_installed = row["installed"]
    return [result[o.pk] for o in organizations]


def _percentile(ordered: list[int], p: float) -> int | None:
    """Linear interpolation over exact values, like PostgreSQL's percentile_cont (the reference the
    histogram estimate is tested against)."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * p
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def daily_chart_svg(daily: list[dict], *, width: int = 420, height: int = 72) -> str:
    """Bars of messages per day (conversations as a darker inner bar); plain SVG, no script."""
    from django.utils.html import escape

    peak = max([d["messages"] for d in daily] + [1])
    step = width / max(len(daily), 1)
    bars = []
    for i, day in enumerate(daily):
        h = round((height - 14) * day["messages"] / peak, 1)
        c = round((height - 14) * day["conversations"] / peak, 1)
        x = round(i * step + 1, 1)
        label = escape(f"{day['day']:%m-%d}: {day['messages']} / {day['conversations']}")
        bars.append(f'<g><title>{label}</title><rect x="{x}" y="{height - 12 - h}" width="{round(step - 2, 1)}" '
                    f'height="{h}" fill="#a5b4fc"/><rect x="{x}" y="{height - 12 - c}" width="{round(step - 2, 1)}" '
                    f'height="{c}" fill="#4f46e5"/></g>')
    first, last = daily[0]["day"] if daily else date.today(), daily[-1]["day"] if daily else date.today()
    axis = (f'<text x="0" y="{height}" font-size="10" fill="currentColor">{first:%m-%d}</text>'
            f'<text x="{width}" y="{height}" font-size="10" text-anchor="end" fill="currentColor">{last:%m-%d}</text>')
    return (f'<svg class="mj-chart" viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
            f'aria-label="messages per day">{"".join(bars)}{axis}</svg>')


def on_turn_finished(sender, turn, **kwargs) -> None:
    """runtime.signals.turn_finished receiver (connected in runtime.apps): never fails the turn."""
    import logging

    try:
        day_changed(turn=turn)
    except Exception:
        logging.getLogger(__name__).exception("overview roll-up: marking the day of turn %s changed failed",
                                              getattr(turn, "pk", None))
