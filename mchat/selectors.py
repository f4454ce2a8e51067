"""Reads for the Mattermost status, health and mapping APIs (organization-scoped)."""

from __future__ import annotations

from django.db.models import Count, Min
from django.utils import timezone

from mchat import conf
from mchat.models import ChannelMapping, MattermostBot, OutboxPost, UserMapping, WorkerStatus
from mejai.errors import ApiError

HEALTHY_STATES = {WorkerStatus.State.WEBSOCKET, WorkerStatus.State.POLLING}


def _age(value) -> float | None:
    return round((timezone.now() - value).total_seconds(), 1) if value else None


def bot_status(*, bot: MattermostBot, status: WorkerStatus | None, outbox: dict) -> dict:
    heartbeat_age = _age(status.heartbeat_at) if status else None
    alive = heartbeat_age is not None and heartbeat_age <= conf.heartbeat_stale_seconds()
    state = status.state if status and alive else ("down" if bot.is_active else "stopped")
    if status and status.state == WorkerStatus.State.UNHEALTHY and alive:
        state = "unhealthy"
    return {
        "bot_id": bot.pk, "name": bot.name, "server_url": bot.server_url, "is_active": bot.is_active,
        "mode": bot.mode, "state": state,
        "auth_ok": status.auth_ok if status else None,
        "last_event_age_seconds": _age(status.last_event_at) if status else None,
        "last_seq": status.last_seq if status else None,
        "reconnects": status.reconnects if status else 0,
        "outbox_depth": outbox.get("depth", 0),
        "outbox_oldest_age_seconds": _age(outbox.get("oldest")),
        "worker_heartbeat_age_seconds": heartbeat_age,
        "worker": status.worker_label if status else "",
        "healthy": bool(bot.is_active and alive and status.state in HEALTHY_STATES and status.auth_ok),
    }


def bots_status(*, organization=None) -> list[dict]:
    bots = MattermostBot.objects.order_by("pk")
    if organization is not None:
        bots = bots.filter(organization=organization)
    bots = list(bots)
    statuses = {s.bot_id: s for s in WorkerStatus.objects.filter(bot__in=bots)}
    outbox = {row["bot_id"]: {"depth": row["depth"], "oldest": row["oldest"]}
              for row in OutboxPost.objects.filter(bot__in=bots, status=OutboxPost.Status.PENDING)
              .values("bot_id").annotate(depth=Count("id"), oldest=Min("created_at"))}
    return [bot_status(bot=b, status=statuses.get(b.pk), outbox=outbox.get(b.pk, {})) for b in bots]


def health() -> tuple[bool, dict]:
    """(healthy, body) for GET /mchat/health: every active bot has a live worker connected with a good token."""
    bots = [b for b in bots_status() if b["is_active"]]
    ok = bool(bots) and all(b["healthy"] for b in bots)
    return ok, {"status": "ok" if ok else "unavailable",
                "bots": [{"bot_id": b["bot_id"], "state": b["state"], "auth_ok": b["auth_ok"],
                          "worker_heartbeat_age_seconds": b["worker_heartbeat_age_seconds"],
                          "outbox_depth": b["outbox_depth"]} for b in bots]}


def bot_get_for_org(*, organization, bot_id) -> MattermostBot:
    try:
        pk = int(bot_id)
    except (TypeError, ValueError):
        raise ApiError("not_found", "Bot not found.", 404, field="bot_id") from None
    bot = MattermostBot.objects.select_related("organization").filter(pk=pk, organization=organization).first()
    if bot is None:
        raise ApiError("not_found", "Bot not found.", 404, field="bot_id")
    return bot


def channel_mappings_for_org(*, organization, bot_id=None):
    mappings = ChannelMapping.objects.filter(bot__organization=organization).select_related("bot")
    if bot_id not in (None, ""):
        mappings = mappings.filter(bot=bot_get_for_org(organization=organization, bot_id=bot_id))
    return mappings.order_by("bot_id", "name", "pk")


def user_mappings_for_org(*, organization, bot_id=None):
    mappings = UserMapping.objects.filter(bot__organization=organization).select_related("bot", "end_user")
    if bot_id not in (None, ""):
        mappings = mappings.filter(bot=bot_get_for_org(organization=organization, bot_id=bot_id))
    return mappings.order_by("bot_id", "username", "pk")
