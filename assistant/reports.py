"""`auto_report`s: reports of delegated tasks and external systems, delivered to a client once.

A report is kept in the database until it is *claimed* (delivered_at set in one UPDATE, so twice is
impossible) and appended to its client's stream, from where every tab and a later resume get it.
It is claimed at once when a socket of the client is connected (presence: set on connect and ping,
cleared when the process's last socket of the client closes), else on the client's next connect,
resume, or ping of a tab open elsewhere.
"""

from __future__ import annotations

from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from assistant import protocol
from assistant.models import AssistantClient, Report

PRESENCE_SECONDS = 60
MAX_REPORT_CHARS = 8000


def _presence_key(client_id: str) -> str:
    return f"assistant:online:{client_id}"


def _waiting_key(client_id: str) -> str:
    return f"assistant:reports-waiting:{client_id}"


def client_seen(*, client_id: str) -> bool:
    """A socket of the client is here (connect, ping); True when reports wait for it."""
    cache.set(_presence_key(client_id), 1, timeout=PRESENCE_SECONDS)
    return bool(cache.get(_waiting_key(client_id)))


def client_gone(*, client_id: str) -> None:
    """The last socket of the client in this process closed: reports wait for the next one.
    (A tab still open in another process refreshes the presence on its next ping, and collects
    the waiting reports then.)"""
    cache.delete(_presence_key(client_id))


def report_frame(report: Report) -> dict:
    return {**protocol.frame_auto_report(content=report.content, task_id=report.reported_task_id),
            "report_id": report.pk}


def report_recipient_resolve(*, organization, client_id: str | None = None, username: str | None = None):
    """(client, user) a report goes to: exactly one of an organization's client_id or a member's
    username. ApiError 400 for both or neither; 404 for one that is not the organization's (another
    organization's client or user looks exactly like one that does not exist)."""
    from mejai.errors import ApiError
    from runtime.models import Membership

    if bool(client_id) == bool(username):
        raise ApiError("invalid", "client_id와 user 중 하나만 주세요. (Give exactly one of client_id and user.)", 400)
    if client_id:
        client = AssistantClient.objects.filter(client_id=client_id, organization=organization).first()
        if client is None:
            raise ApiError("not_found", "클라이언트를 찾을 수 없습니다. (Client not found.)", 404, field="client_id")
        return client, None
    membership = (Membership.objects.select_related("user")
                  .filter(organization=organization, user__username=username).first())
    if membership is None:
        raise ApiError("not_found", "사용자를 찾을 수 없습니다. (User not found.)", 404, field="user")
    return None, membership.user


def report_create(*, organization, content: str, client: AssistantClient | None = None, user=None,
                  task=None, external_task_id: str = "") -> Report:
    """Store a report for a client (or a user: their most recently seen client, else their next one)
    and deliver it now when the client is connected."""
    if client is None and user is not None:
        client = AssistantClient.objects.filter(user=user, organization=organization).order_by("-last_seen_at").first()
    report = Report.objects.create(organization=organization, client=client, user=user if client is None else None,
                                   task=task, external_task_id=external_task_id, content=content)
    if client is not None:
        client_id = client.client_id
        if cache.get(_presence_key(client_id)):
            transaction.on_commit(lambda: reports_deliver_sync(client_id=client_id))
        else:
            cache.set(_waiting_key(client_id), 1, timeout=None)
    return report


def reports_claim(*, client: AssistantClient) -> list[Report]:
    """Take this client's undelivered reports (and its user's unaddressed ones), once, in order."""
    with transaction.atomic():
        pending = list(Report.objects.select_for_update(skip_locked=True)
                       .filter(Q(client=client) | Q(client__isnull=True, user_id=client.user_id,
                                                    organization_id=client.organization_id),
                               delivered_at__isnull=True).order_by("id"))
        if pending:
            Report.objects.filter(pk__in=[r.pk for r in pending]).update(client=client, delivered_at=timezone.now())
    return pending


def reports_waiting(*, client: AssistantClient) -> bool:
    """Whether reports for this client (or its user's unaddressed ones) wait undelivered."""
    return Report.objects.filter(Q(client=client) | Q(client__isnull=True, user_id=client.user_id,
                                                      organization_id=client.organization_id),
                                 delivered_at__isnull=True).exists()


def claim_for(client_id: str) -> list[Report]:
    """Claim the reports waiting for `client_id` (sync; send them with `reports_send`)."""
    cache.delete(_waiting_key(client_id))
    client = AssistantClient.objects.filter(client_id=client_id).first()
    return reports_claim(client=client) if client else []



async def _send_all(client_id: str, frames: list[dict]) -> None:
    from assistant.connections import client_send

    for frame in frames:
        await client_send(client_id=client_id, frame=frame)


async def reports_deliver(*, client_id: str) -> int:
    """Claim and send the client's pending reports; how many were sent."""
    from assistant.sync import db

    return await reports_send(client_id=client_id, claimed=await db(claim_for)(client_id))


async def reports_send(*, client_id: str, claimed: list[Report]) -> int:
    """Send reports already claimed (`claim_for`) into the client's stream; how many."""
    await _send_all(client_id, [report_frame(r) for r in claimed])
    return len(claimed)


def reports_deliver_sync(*, client_id: str) -> int:
    """The same from sync code (an API view, a job): the claim here, the sends on the server's loop."""
    from assistant.connections import run_on_server_loop

    claimed = claim_for(client_id)
    if claimed:
        run_on_server_loop(_send_all(client_id, [report_frame(r) for r in claimed]))
    return len(claimed)
