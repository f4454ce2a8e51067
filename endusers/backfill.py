"""Backfill: end users, identities and timeline rows for sessions and turns stored before (or without) them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Count, Max, Min

from endusers.models import EndUserMessage, EndUserSession, Identity

logger = logging.getLogger(__name__)

# Where channels keep who was talking, in session metadata: (metadata key, identity kind, verified).
METADATA_IDENTITIES = [
    ("external_id", Identity.Kind.EXTERNAL_ID, True),
    ("kakao_user_key", Identity.Kind.KAKAO, True),
    ("kakao_user_id", Identity.Kind.KAKAO, True),
    ("mchat_user_id", Identity.Kind.MCHAT, True),
    ("visitor_id", Identity.Kind.VISITOR, False),
]


@dataclass
class BackfillStats:
    sessions: int = 0
    end_users_linked: int = 0
    anonymous: int = 0
    messages: int = 0
    errors: list = field(default_factory=list)


def _end_user_for(session):
    from endusers.selectors import end_user_canonical
    from endusers.services import identity_resolve

    if session.end_user_id:
        return end_user_canonical(session.end_user)
    metadata = session.metadata or {}
    for key, kind, verified in METADATA_IDENTITIES:
        value = metadata.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            # A widget session's user id counts as verified only when the widget said so.
            if kind == Identity.Kind.EXTERNAL_ID and session.channel == "web_widget" and not metadata.get("verified"):
                continue
            return identity_resolve(organization=session.organization, kind=kind, value=str(value), verified=verified)
    return None


def session_backfill(*, session, stats: BackfillStats) -> None:
    """Link one session (and its turns) to its end user and write its timeline rows; idempotent."""
    from runtime.models import Session, Turn

    with transaction.atomic():
        end_user = _end_user_for(session)
        if end_user is None:
            stats.anonymous += 1
            return
        if session.end_user_id != end_user.pk:
            Session.objects.filter(pk=session.pk).update(end_user=end_user)
            stats.end_users_linked += 1
        Turn.objects.filter(session=session, author__isnull=True).update(author=end_user)
        summary = Turn.objects.filter(session=session).aggregate(n=Count("pk"), first=Min("created_at"), last=Max("created_at"))
        if not summary["n"]:
            return
        entry, _ = EndUserSession.objects.get_or_create(
            session=session,
            defaults=dict(organization_id=session.organization_id, end_user=end_user, channel=session.channel,
                          first_seen_at=summary["first"], last_seen_at=summary["last"]),
        )
        missing = Turn.objects.filter(session=session, end_user_index__isnull=True).values_list("pk", "created_at")
        rows = [EndUserMessage(organization_id=session.organization_id, end_user_id=entry.end_user_id, session=session,
                               turn_id=pk, channel=session.channel, created_at=at) for pk, at in missing]
        EndUserMessage.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
        stats.messages += len(rows)
        EndUserSession.objects.filter(pk=entry.pk).update(
            message_count=EndUserMessage.objects.filter(session=session).count(),
            first_seen_at=summary["first"], last_seen_at=summary["last"],
        )
        stats.sessions += 1


def end_users_backfill(*, batch_size: int = 200, full: bool = False, progress=None) -> BackfillStats:
    """Backfill every session without a timeline row (or all with `full`); resumable by re-running.

    Each session is done in its own transaction, and done sessions are skipped on the next run,
    so an interrupted run continues where it stopped.
    """
    from runtime.models import Session

    stats = BackfillStats()
    sessions = Session.objects.select_related("organization", "end_user").order_by("created_at", "pk")
    if not full:
        sessions = sessions.filter(end_user_index__isnull=True)
    last = None
    while True:
        batch = sessions
        if last is not None:
            batch = batch.filter(created_at__gte=last[0]).exclude(created_at=last[0], pk__lte=last[1])
        rows = list(batch[:batch_size])
        if not rows:
            break
        for session in rows:
            try:
                session_backfill(session=session, stats=stats)
            except Exception as exc:  # one bad session must not stop the rest; it is reported
                logger.exception("backfill of session %s failed", session.pk)
                stats.errors.append((str(session.pk), str(exc)))
        last = (rows[-1].created_at, rows[-1].pk)
        if progress:
            progress(len(rows))
    return stats
