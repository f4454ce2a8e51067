"""Reads of widget data: an organization's widgets, daily statistics, recent events."""

from __future__ import annotations

from datetime import date, timedelta

from django.db.models import QuerySet, Sum
from django.utils import timezone

from widgets.models import ChatWidget, WidgetDailyStat, WidgetEvent


def widgets_for_org(*, organization) -> QuerySet[ChatWidget]:
    return ChatWidget.objects.filter(organization=organization).select_related("agent").order_by("name", "pk")


def widget_stats_daily(*, widget: ChatWidget, days: int = 30, until: date | None = None) -> list[dict]:
    """One row per day (oldest first, zero-filled) of the widget's counters over `days` days."""
    until = until or timezone.localdate()
    since = until - timedelta(days=days - 1)
    stored = {
        row["day"]: row
        for row in WidgetDailyStat.objects.filter(widget=widget, day__gte=since, day__lte=until)
        .values("day")
        .annotate(**{name: Sum(name) for name in WidgetDailyStat.COUNTERS})
    }
    rows = []
    for offset in range(days):
        day = since + timedelta(days=offset)
        row = stored.get(day) or {}
        rows.append({"day": day, **{name: row.get(name) or 0 for name in WidgetDailyStat.COUNTERS}})
    return rows


def widget_stats_day(*, widget: ChatWidget, day: date | None = None) -> dict:
    """One day's counters (today by default), summed over the day's shards."""
    day = day or timezone.localdate()
    totals = WidgetDailyStat.objects.filter(widget=widget, day=day).aggregate(
        **{name: Sum(name) for name in WidgetDailyStat.COUNTERS}
    )
    return {name: totals[name] or 0 for name in WidgetDailyStat.COUNTERS}


def widget_stats_totals(*, widget: ChatWidget, days: int = 30) -> dict:
    since = timezone.localdate() - timedelta(days=days - 1)
    totals = WidgetDailyStat.objects.filter(widget=widget, day__gte=since).aggregate(
        **{name: Sum(name) for name in WidgetDailyStat.COUNTERS}
    )
    return {name: totals[name] or 0 for name in WidgetDailyStat.COUNTERS}


def widget_events_recent(*, widget: ChatWidget, limit: int = 20) -> QuerySet[WidgetEvent]:
    return WidgetEvent.objects.filter(widget=widget).order_by("-created_at")[:limit]
