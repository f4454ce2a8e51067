"""Mattermost channel services (sync, database): bots and the env bootstrap, the worker's status, channel,
thread and user mappings (with the trust rule), the inbound ledger, the outbox and the audit of mappings.

    bot_bootstrap_from_env     MCHAT_URL/MCHAT_BOT_TOKEN/… create or update one bot at worker start
    status_set                 the worker's live status (state, seq, heartbeat…)
    channel_mapping_sync       a channel the bot is in; new ones start their catch-up cursor sensibly
    inbound_claim              the ledger: a post passes once, whatever path brought it
    conversation_resolve       where a post's answer goes and which session it belongs to
    user_mapping_resolve       the end user behind a Mattermost user (mapping → trusted email → new)
    user_mapping_link          an operator's manual link (audited)

See docs/mchat.md for the decisions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from endusers.models import EndUser, Identity
from endusers.selectors import end_user_canonical
from endusers.services import identity_claim, identity_resolve
from mchat import conf
from mchat.models import (
    ChannelMapping,
    InboundPost,
    MappingAudit,
    MattermostBot,
    OutboxPost,
    ThreadMapping,
    UserMapping,
    WorkerStatus,
)
from mejai.errors import ApiError
from runtime.models import Agent, Channel, Organization, Session
from runtime.services import session_create

logger = logging.getLogger(__name__)


# --- bots ------------------------------------------------------------------------------------

def bot_bootstrap_from_env() -> MattermostBot | None:
    """One bot from MCHAT_URL + MCHAT_BOT_TOKEN (+ MCHAT_ORGANIZATION slug, MCHAT_AGENT name,
    MCHAT_VERIFY_SSL, MCHAT_MENTION_NAME), created or updated; None when MCHAT_URL is unset."""
    url, token = conf.bootstrap_url(), conf.bootstrap_token()
    if not url:
        return None
    if not token:
        raise ApiError("mchat_config", "MCHAT_URL is set but MCHAT_BOT_TOKEN is not.", 400)
    slug = conf.bootstrap_organization()
    organization = Organization.objects.filter(slug=slug).first()
    if organization is None:
        raise ApiError("mchat_config", f"MCHAT_ORGANIZATION: no organization with slug {slug!r}.", 400)
    agents = Agent.objects.filter(organization=organization, is_active=True)
    agent_name = conf.bootstrap_agent()
    agent = agents.filter(name=agent_name).first() if agent_name else agents.order_by("pk").first()
    if agent is None:
        raise ApiError("mchat_config", f"MCHAT_AGENT: no active agent {agent_name!r} in {slug!r}.", 400)
    bot = MattermostBot.objects.filter(organization=organization, server_url=url).order_by("pk").first()
    fields = {"token": token, "verify_tls": conf.bootstrap_verify_tls(), "agent": agent, "is_active": True}
    if conf.bootstrap_mention():
        fields["mention_name"] = conf.bootstrap_mention()
    if bot is None:
        bot = MattermostBot.objects.create(organization=organization, name=f"env:{url}"[:100], server_url=url, **fields)
    else:
        changed = [name for name, value in fields.items() if getattr(bot, name) != value]
        for name in changed:
            setattr(bot, name, fields[name])
        if changed:
            bot.save(update_fields=[*changed, "updated_at"])
    return bot


def bots_for_worker(*, bot_id: int | None = None) -> list[MattermostBot]:
    bots = MattermostBot.objects.select_related("organization", "agent").filter(is_active=True)
    if bot_id is not None:
        bots = bots.filter(pk=bot_id)
    return list(bots.order_by("pk"))


def bot_reload(*, bot_id: int) -> MattermostBot | None:
    return MattermostBot.objects.select_related("organization", "agent").filter(pk=bot_id).first()


def status_set(*, bot_id: int, **fields) -> None:
    """Upsert the worker status of a bot (only the given fields)."""
    updated = WorkerStatus.objects.filter(bot_id=bot_id).update(**fields, updated_at=timezone.now())
    if not updated:
        try:
            with transaction.atomic():
                WorkerStatus.objects.create(bot_id=bot_id, **fields)
        except IntegrityError:
            WorkerStatus.objects.filter(bot_id=bot_id).update(**fields, updated_at=timezone.now())


def status_get(*, bot_id: int) -> WorkerStatus | None:
    return WorkerStatus.objects.filter(bot_id=bot_id).first()


def status_reconnected(*, bot_id: int) -> None:
    from django.db.models import F

    WorkerStatus.objects.filter(bot_id=bot_id).update(reconnects=F("reconnects") + 1, updated_at=timezone.now())


# --- channels and threads ----------------------------------------------------------------------

def channel_mapping_sync(*, bot: MattermostBot, channel: dict) -> ChannelMapping:
    """Record a channel the bot is in. A channel seen for the first time catches up from when the worker
    was last alive (or its creation), so a DM opened during an outage is not missed; never from the dawn of time."""
    values = {"name": str(channel.get("name") or "")[:64], "display_name": str(channel.get("display_name") or "")[:200],
              "team_id": str(channel.get("team_id") or "")[:26], "channel_type": str(channel.get("type") or "O")[:1]}
    mapping = ChannelMapping.objects.filter(bot=bot, mchat_channel_id=channel["id"]).first()
    if mapping is not None:
        changed = {k: v for k, v in values.items() if getattr(mapping, k) != v}
        if changed:
            ChannelMapping.objects.filter(pk=mapping.pk).update(**changed, updated_at=timezone.now())
            for k, v in changed.items():
                setattr(mapping, k, v)
        return mapping
    now_ms = int(timezone.now().timestamp() * 1000)
    status = status_get(bot_id=bot.pk)
    alive_ms = int(status.heartbeat_at.timestamp() * 1000) if status and status.heartbeat_at else now_ms
    overlap = int(conf.poll_overlap_seconds() * 1000)
    cursor = max(int(channel.get("create_at") or 0), alive_ms - overlap)
    try:
        with transaction.atomic():
            return ChannelMapping.objects.create(bot=bot, mchat_channel_id=channel["id"], cursor_ms=min(cursor, now_ms),
                                                 **values)
    except IntegrityError:
        return ChannelMapping.objects.get(bot=bot, mchat_channel_id=channel["id"])


def channel_cursor_advance(*, mapping_id: int, cursor_ms: int) -> None:
    ChannelMapping.objects.filter(pk=mapping_id, cursor_ms__lt=cursor_ms).update(cursor_ms=cursor_ms)


def channels_of_bot(*, bot_id: int) -> list[ChannelMapping]:
    return list(ChannelMapping.objects.filter(bot_id=bot_id).order_by("pk"))


@dataclass
class Conversation:
    session: Session
    channel: ChannelMapping
    reply_root_id: str  # "" = a flat reply (top-level DM)
    thread: ThreadMapping | None
    new_thread: bool  # the bot had not been part of this thread before


def conversation_resolve(*, bot: MattermostBot, channel: ChannelMapping, post: dict, end_user: EndUser) -> Conversation:
    """DM: one channel = one session, flat replies (a reply inside a DM thread stays in that thread).
    Channels: one thread = one session, replies in the thread (root = root_id or id)."""
    metadata = {"mchat_bot_id": bot.pk, "mchat_channel_id": channel.mchat_channel_id, "mchat_user_id": post["user_id"],
                "mchat_server": bot.server_host}
    if channel.channel_type == ChannelMapping.Type.DIRECT:
        with transaction.atomic():
            locked = ChannelMapping.objects.select_for_update().get(pk=channel.pk)
            session = Session.objects.filter(pk=locked.session_id, status=Session.Status.OPEN).first() \
                if locked.session_id else None
            if session is None:
                session = session_create(organization=bot.organization, agent=bot.agent, channel=Channel.MCHAT,
                                         end_user=end_user, metadata=metadata)
                ChannelMapping.objects.filter(pk=channel.pk).update(session=session)
        return Conversation(session, channel, post.get("root_id") or "", None, False)
    root_id = post.get("root_id") or post["id"]
    thread = ThreadMapping.objects.select_related("session").filter(bot=bot, root_post_id=root_id).first()
    if thread is not None:
        return Conversation(thread.session, channel, root_id, thread, False)
    with transaction.atomic():
        session = session_create(organization=bot.organization, agent=bot.agent, channel=Channel.MCHAT,
                                 end_user=end_user, metadata={**metadata, "mchat_root_id": root_id})
        try:
            with transaction.atomic():
                thread = ThreadMapping.objects.create(bot=bot, channel=channel, root_post_id=root_id, session=session)
        except IntegrityError:
            thread = ThreadMapping.objects.select_related("session").get(bot=bot, root_post_id=root_id)
            session.delete()
            return Conversation(thread.session, channel, root_id, thread, False)
    return Conversation(session, channel, root_id, thread, True)


def thread_answered(*, thread_id: int) -> None:
    ThreadMapping.objects.filter(pk=thread_id, answered=False).update(answered=True)


# --- the ledger ----------------------------------------------------------------------------------

def inbound_claim(*, bot_id: int, post: dict, via: str) -> InboundPost | None:
    """Enter a post in the ledger; None when it was seen before (by any path, process or restart)."""
    try:
        with transaction.atomic():
            return InboundPost.objects.create(
                bot_id=bot_id, post_id=post["id"], channel_id=post.get("channel_id", ""),
                root_id=post.get("root_id") or "", user_id=post.get("user_id") or "",
                create_at_ms=int(post.get("create_at") or 0), via=via,
            )
    except IntegrityError:
        return None


def inbound_set(*, inbound_id: int, status: str, reason: str = "", turn=None) -> None:
    fields = {"status": status, "reason": reason[:40], "updated_at": timezone.now()}
    if turn is not None:
        fields["turn"] = turn
    InboundPost.objects.filter(pk=inbound_id).update(**fields)


def inbound_unfinished(*, bot_id: int, older_than_seconds: float = 0) -> list[InboundPost]:
    """Posts a previous worker accepted but did not finish (it died): answered again after a restart."""
    before = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(InboundPost.objects.filter(bot_id=bot_id, status__in=[InboundPost.Status.RECEIVED,
                                                                      InboundPost.Status.PROCESSING],
                                           received_at__lte=before).order_by("create_at_ms", "pk"))


# --- users -------------------------------------------------------------------------------------

def _identity_value(bot: MattermostBot, mchat_user_id: str) -> str:
    """Mattermost user ids are unique per server: the identity is scoped to the bot's server."""
    return f"{bot.server_host}:{mchat_user_id}"


def _email_trusted(user: dict) -> bool:
    email = (user.get("email") or "").strip()
    return bool(email) and (user.get("email_verified") is True or bool((user.get("auth_service") or "").strip()))


def _identity_pin(*, bot: MattermostBot, mchat_user_id: str, end_user: EndUser) -> None:
    """The verified `mchat` identity, held by this end user (moved to it on a manual link)."""
    value = _identity_value(bot, mchat_user_id)
    held = Identity.objects.filter(organization_id=bot.organization_id, kind=Identity.Kind.MCHAT, value=value).first()
    if held is None:
        try:
            with transaction.atomic():
                Identity.objects.create(organization_id=bot.organization_id, end_user=end_user,
                                        kind=Identity.Kind.MCHAT, value=value, verified=True)
        except IntegrityError:
            pass
    elif held.end_user_id != end_user.pk or not held.verified:
        Identity.objects.filter(pk=held.pk).update(end_user=end_user, verified=True)


def user_mapping_resolve(*, bot: MattermostBot, user: dict) -> UserMapping:
    """The end user behind a Mattermost user, in the seed's order with a trust rule:
    1) the mapping table (pinned to the Mattermost user id);
    2) an existing end user by email, only when Mattermost vouches for it (email_verified, or SSO/LDAP
       `auth_service`); an empty or unverified email is never a match, only an unverified claim;
    3) a new end user with a verified `mchat` identity."""
    user_id = user["id"]
    email = (user.get("email") or "").strip()
    fields = {"username": str(user.get("username") or "")[:64], "email": email[:254],
              "email_verified": user.get("email_verified") is True,
              "auth_service": str(user.get("auth_service") or "")[:32]}
    mapping = UserMapping.objects.select_related("end_user").filter(bot=bot, mchat_user_id=user_id).first()
    if mapping is not None:
        canonical = end_user_canonical(mapping.end_user)
        changed = {k: v for k, v in fields.items() if getattr(mapping, k) != v}
        if canonical.pk != mapping.end_user_id:
            changed["end_user"] = canonical
        if changed:
            UserMapping.objects.filter(pk=mapping.pk).update(**changed, updated_at=timezone.now())
            for k, v in changed.items():
                setattr(mapping, k, v)
        return mapping
    display_name = " ".join(p for p in (user.get("first_name"), user.get("last_name")) if p).strip() \
        or fields["username"]
    value = _identity_value(bot, user_id)
    held = Identity.objects.filter(organization_id=bot.organization_id, kind=Identity.Kind.MCHAT, value=value,
                                   verified=True).exists()
    linked_by = UserMapping.LinkedBy.CREATED
    if held:
        end_user = identity_resolve(organization=bot.organization, kind=Identity.Kind.MCHAT, value=value, verified=True)
    elif _email_trusted(user):
        try:
            end_user = identity_resolve(organization=bot.organization, kind=Identity.Kind.EMAIL, value=email,
                                        verified=True, display_name=display_name)
            _identity_pin(bot=bot, mchat_user_id=user_id, end_user=end_user)
            linked_by = UserMapping.LinkedBy.VERIFIED_EMAIL
        except ApiError:  # not a valid email after all
            end_user = identity_resolve(organization=bot.organization, kind=Identity.Kind.MCHAT, value=value,
                                        verified=True, display_name=display_name)
    else:
        end_user = identity_resolve(organization=bot.organization, kind=Identity.Kind.MCHAT, value=value,
                                    verified=True, display_name=display_name)
        if email:
            try:
                identity_claim(end_user=end_user, kind=Identity.Kind.EMAIL, value=email)
            except ApiError:
                pass
    try:
        with transaction.atomic():
            return UserMapping.objects.create(bot=bot, mchat_user_id=user_id, end_user=end_user, linked_by=linked_by,
                                              **fields)
    except IntegrityError:
        return UserMapping.objects.select_related("end_user").get(bot=bot, mchat_user_id=user_id)


def user_mapping_link(*, bot: MattermostBot, mchat_user_id: str, end_user: EndUser, actor: str) -> UserMapping:
    """An operator links a Mattermost user to an end user of the same organization (audited)."""
    if end_user.organization_id != bot.organization_id:
        raise ApiError("not_found", "End user not found.", 404, field="end_user_id")
    end_user = end_user_canonical(end_user)
    with transaction.atomic():
        mapping = UserMapping.objects.select_for_update().filter(bot=bot, mchat_user_id=mchat_user_id).first()
        previous = mapping.end_user_id if mapping else None
        if mapping is None:
            mapping = UserMapping.objects.create(bot=bot, mchat_user_id=mchat_user_id, end_user=end_user,
                                                 linked_by=UserMapping.LinkedBy.MANUAL)
        else:
            UserMapping.objects.filter(pk=mapping.pk).update(end_user=end_user, linked_by=UserMapping.LinkedBy.MANUAL,
                                                             updated_at=timezone.now())
            mapping.end_user, mapping.linked_by = end_user, UserMapping.LinkedBy.MANUAL
        _identity_pin(bot=bot, mchat_user_id=mchat_user_id, end_user=end_user)
        audit_record(bot=bot, actor=actor, action="user_link", mchat_user_id=mchat_user_id,
                     end_user_id=end_user.pk, previous_end_user_id=previous)
    return mapping


def channel_mapping_update(*, bot: MattermostBot, mchat_channel_id: str, actor: str, auto_reply: bool | None = None,
                           name: str | None = None, channel_type: str | None = None) -> ChannelMapping:
    """Create or change a channel mapping from the operator API (audited)."""
    with transaction.atomic():
        mapping = ChannelMapping.objects.select_for_update().filter(bot=bot, mchat_channel_id=mchat_channel_id).first()
        created = mapping is None
        if created:
            mapping = ChannelMapping(bot=bot, mchat_channel_id=mchat_channel_id,
                                     cursor_ms=int(timezone.now().timestamp() * 1000))
        before = {"auto_reply": mapping.auto_reply, "name": mapping.name, "channel_type": mapping.channel_type}
        if auto_reply is not None:
            mapping.auto_reply = auto_reply
        if name is not None:
            mapping.name = name[:64]
        if channel_type is not None:
            mapping.channel_type = channel_type
        mapping.save()
        after = {"auto_reply": mapping.auto_reply, "name": mapping.name, "channel_type": mapping.channel_type}
        audit_record(bot=bot, actor=actor, action="channel_create" if created else "channel_update",
                     mchat_channel_id=mchat_channel_id, before=None if created else before, after=after)
    return mapping


def audit_record(*, bot: MattermostBot, actor: str, action: str, **detail) -> MappingAudit:
    return MappingAudit.objects.create(organization_id=bot.organization_id, bot=bot, actor=actor[:150], action=action,
                                       detail=detail)


# --- the outbox --------------------------------------------------------------------------------

def outbox_create(*, bot_id: int, channel_id: str, root_id: str, text: str, part: int = 0, inbound_id=None,
                  turn_id=None, pending_post_id: str) -> OutboxPost:
    return OutboxPost.objects.create(bot_id=bot_id, channel_id=channel_id, root_id=root_id, text=text, part=part,
                                     inbound_id=inbound_id, turn_id=turn_id, pending_post_id=pending_post_id)


def outbox_update(*, outbox_id, **fields) -> None:
    OutboxPost.objects.filter(pk=outbox_id).update(**fields)


def outbox_due(*, bot_id: int) -> list[OutboxPost]:
    """Replies waiting to be (re)sent, oldest first: delivered in order per channel after an outage."""
    return list(OutboxPost.objects.filter(bot_id=bot_id, status=OutboxPost.Status.PENDING).order_by("created_at", "part"))
