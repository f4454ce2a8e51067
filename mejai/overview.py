"""The operator's overview on the admin index: per organization and channel, from the stored turns.

Figures (30 days unless said): conversations and messages today and per day (a chart), tokens in
and out, model latency p50/p95 of answered turns, failed turns by reason, widget installs, Kakao
callback success rate. Widget previews and "test this agent" chats (sessions with
`metadata.preview`) count in none of them. Every query is bounded by `D_conv_turns.created_at`
(indexed) or by the organization; bench/bench_overview.py measures them at 1M turns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db import connection
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext

DAYS = 30


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


@dataclass
class OrganizationOverview:
    organization_id: int
    name: str
    channels: list[ChannelFigures] = field(default_factory=list)
    daily: list[dict] = field(default_factory=list)  # [{"day", "messages", "conversations"}] oldest first
    failures: list[dict] = field(default_factory=list)  # [{"code", "count", "example"}]
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


def overview_build(*, organizations, now: datetime | None = None) -> list[OrganizationOverview]:
    """The overview of each of `organizations` (a queryset or list of Organization), in that order."""
    from kakao.models import CallbackTask
    from runtime.models import Channel, Turn
    from widgets.models import ChatWidget

    organizations = list(organizations)
    if not organizations:
        return []
    now = now or timezone.now()
    today = timezone.localdate(now)
    since = timezone.make_aware(datetime.combine(today - timedelta(days=DAYS - 1), datetime.min.time()))
    start_today = timezone.make_aware(datetime.combine(today, datetime.min.time()))
    org_ids = [o.pk for o in organizations]
    labels = dict(Channel.choices)
    result = {o.pk: OrganizationOverview(organization_id=o.pk, name=o.name) for o in organizations}

    turns = (Turn.objects.filter(created_at__gte=since, session__organization_id__in=org_ids)
             # has_key first: a session without the key must stay in (SQL NULL would drop it from NOT(...)).
             .exclude(session__metadata__has_key="preview", session__metadata__preview=True))
    org, channel = "session__organization_id", "session__channel"
    per_channel = {}
    for row in turns.values(org, channel).annotate(
        messages=Count("pk"), conversations=Count("session_id", distinct=True),
        messages_today=Count("pk", filter=Q(created_at__gte=start_today)),
        conversations_today=Count("session_id", distinct=True, filter=Q(created_at__gte=start_today)),
        tokens_in=Sum("tokens_in"), tokens_out=Sum("tokens_out"), failed=Count("pk", filter=Q(status=Turn.Status.FAILED)),
    ):
        figures = ChannelFigures(
            channel=row[channel], label=gettext(labels.get(row[channel], row[channel])), messages=row["messages"],
            conversations=row["conversations"], messages_today=row["messages_today"],
            conversations_today=row["conversations_today"], tokens_in=row["tokens_in"] or 0,
            tokens_out=row["tokens_out"] or 0, failed=row["failed"],
        )
        per_channel[(row[org], row[channel])] = figures
        result[row[org]].channels.append(figures)
    for (org_id, channel_name), (p50, p95) in _latency_percentiles(turns=turns).items():
        figures = per_channel.get((org_id, channel_name))
        if figures is not None:
            figures.latency_p50, figures.latency_p95 = p50, p95

    by_day = {}
    for row in turns.annotate(day=TruncDate("created_at")).values(org, "day").annotate(
            messages=Count("pk"), conversations=Count("session_id", distinct=True)):
        by_day[(row[org], row["day"])] = row
    for org_id, overview in result.items():
        overview.channels.sort(key=lambda f: -f.messages)
        for offset in range(DAYS):
            day = today - timedelta(days=DAYS - 1 - offset)
            row = by_day.get((org_id, day), {})
            overview.daily.append({"day": day, "messages": row.get("messages", 0),
                                   "conversations": row.get("conversations", 0)})
        overview.chart_svg = daily_chart_svg(overview.daily)

    for row in (turns.filter(status=Turn.Status.FAILED).values(org, "error_code")
                .annotate(count=Count("pk")).order_by(org, "-count")):
        result[row[org]].failures.append({"code": row["error_code"] or "unknown", "count": row["count"]})

    for row in ChatWidget.objects.filter(organization_id__in=org_ids).values("organization_id").annotate(
            total=Count("pk"), installed=Count("pk", filter=Q(last_seen_at__isnull=False))):
        result[row["organization_id"]].widgets = row["total"]
        result[row["organization_id"]].widgets_installed = row["installed"]

    finished = (CallbackTask.Status.COMPLETED, CallbackTask.Status.FAILED, CallbackTask.Status.EXPIRED)
    for row in (CallbackTask.objects.filter(organization_id__in=org_ids, mode=CallbackTask.Mode.CALLBACK,
                                            status__in=finished, received_at__gte=since)
                .values("organization_id").annotate(finished=Count("pk"),
                                                    delivered=Count("pk", filter=Q(status=CallbackTask.Status.COMPLETED)))):
        result[row["organization_id"]].kakao_delivered = row["delivered"]
        result[row["organization_id"]].kakao_finished = row["finished"]
    return [result[o.pk] for o in organizations]


def _latency_percentiles(*, turns) -> dict[tuple[int, str], tuple[int | None, int | None]]:
    """p50/p95 of `latency_ms` of completed model answers, per (organization, channel)."""
    from runtime.models import Turn

    answered = turns.filter(status=Turn.Status.COMPLETED, handled_by="llm", latency_ms__isnull=False)
    if connection.vendor == "postgresql":
        from django.db.models import Aggregate, FloatField

        class Percentile(Aggregate):
            function = "percentile_cont"
            template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"
            output_field = FloatField()

            def __init__(self, expression, percentile: float):
                super().__init__(expression, percentile=percentile)

        rows = answered.values("session__organization_id", "session__channel").annotate(
            p50=Percentile("latency_ms", 0.5), p95=Percentile("latency_ms", 0.95))
        return {(r["session__organization_id"], r["session__channel"]):
                (round(r["p50"]) if r["p50"] is not None else None, round(r["p95"]) if r["p95"] is not None else None)
                for r in rows}
    # SQLite (the embedded default, small by nature): sort in Python.
    values: dict[tuple[int, str], list[int]] = {}
    for org_id, channel, latency in answered.values_list("session__organization_id", "session__channel", "latency_ms"):
        values.setdefault((org_id, channel), []).append(latency)
    return {key: (_percentile(sorted(v), 0.5), _percentile(sorted(v), 0.95)) for key, v in values.items()}


def _percentile(ordered: list[int], p: float) -> int | None:
    """Linear interpolation, like PostgreSQL's percentile_cont."""
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
