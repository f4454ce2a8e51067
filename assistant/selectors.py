"""Assistant reads: the figures of the status endpoint."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count
from django.utils import timezone

from assistant.connections import sockets_open
from assistant.models import AssistantClient, ClientTurn, DelegatedTask, Report
from runtime.models import Turn


def assistant_status(*, organization) -> dict:
    """{"sockets_this_process", "clients", "clients_seen_last_hour", "turns": {status: n of unfinished},
    "tasks": {status: n}, "reports_pending"} for one organization (sockets: this process, all organizations)."""
    clients = AssistantClient.objects.filter(organization=organization)
    hour_ago = timezone.now() - timedelta(hours=1)
    turns = (ClientTurn.objects.filter(client__organization=organization,
                                       turn__status__in=(Turn.Status.PENDING, Turn.Status.STREAMING))
             .values("turn__status").annotate(n=Count("id")))
    tasks = DelegatedTask.objects.filter(organization=organization).values("status").annotate(n=Count("id"))
    return {
        "sockets_this_process": sockets_open["sockets"],
        "clients": clients.count(),
        "clients_seen_last_hour": clients.filter(last_seen_at__gte=hour_ago).count(),
        "turns": {row["turn__status"]: row["n"] for row in turns},
        "tasks": {row["status"]: row["n"] for row in tasks},
        "reports_pending": Report.objects.filter(organization=organization, delivered_at__isnull=True).count(),
    }
