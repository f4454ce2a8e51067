"""Assistant services: who is calling, which client_id is theirs, and storing a chat as a turn.

Errors are ApiError with the codes and bilingual messages of assistant.protocol; the consumer turns
them into `error` frames and keeps the socket open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from assistant import protocol
from assistant.images import images_store, images_validate
from assistant.models import AssistantClient, ClientTurn
from endusers.services import identity_resolve
from mejai.errors import ApiError
from runtime.models import Agent, Channel, Membership, Organization, Session, Turn
from runtime.services import session_create, turn_start

CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def _error(code: str, status: int = 400, **kwargs) -> ApiError:
    return ApiError(code, protocol.message_for(code), status, **kwargs)


@dataclass
class Caller:
    """A logged-in member of an organization, as an end user of it (memory follows them)."""

    user: object
    organization: Organization
    end_user: object

    @property
    def label(self) -> str:
        return self.user.get_username()


def client_id_validate(client_id) -> str:
    if not isinstance(client_id, str) or not CLIENT_ID.match(client_id):
        raise _error("client_id_invalid")
    return client_id


def user_from_token(*, raw_token) -> object:
    """The user of a staff access JWT from /api/auth/token; token_invalid / token_expired otherwise."""
    from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenError
    from rest_framework_simplejwt.settings import api_settings
    from rest_framework_simplejwt.tokens import AccessToken

    if not isinstance(raw_token, str) or not raw_token or len(raw_token) > 4096:
        raise _error("token_invalid", 401)
    try:
        token = AccessToken(raw_token)
    except ExpiredTokenError as exc:
        raise _error("token_expired", 401) from exc
    except TokenError as exc:
        if "expired" in str(exc).lower():
            raise _error("token_expired", 401) from exc
        raise _error("token_invalid", 401) from exc
    user = get_user_model().objects.filter(**{api_settings.USER_ID_FIELD: token.get(api_settings.USER_ID_CLAIM)}).first()
    if user is None:
        raise _error("token_invalid", 401)
    return user


def caller_load(*, user) -> Caller:
    """The caller behind an authenticated user: active, with an organization, as an end user."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        raise _error("account_invalid", 403)
    membership = Membership.objects.select_related("organization").filter(user=user).first()
    if membership is None:
        raise _error("account_invalid", 403)
    organization = membership.organization
    end_user = identity_resolve(organization=organization, kind="account", value=str(user.pk), verified=True,
                                display_name=user.get_full_name() or user.get_username())
    return Caller(user=user, organization=organization, end_user=end_user)


def client_attach(*, caller: Caller, client_id: str) -> AssistantClient:
    """The caller's AssistantClient for `client_id`; the first user to use an id owns it."""
    client_id_validate(client_id)
    client = AssistantClient.objects.filter(client_id=client_id).first()
    if client is None:
        try:
            with transaction.atomic():
                client = AssistantClient.objects.create(client_id=client_id, user=caller.user,
                                                        organization=caller.organization)
        except IntegrityError:
            client = AssistantClient.objects.get(client_id=client_id)
    if client.user_id != caller.user.pk or client.organization_id != caller.organization.pk:
        raise _error("client_forbidden", 403)
    AssistantClient.objects.filter(pk=client.pk).update(last_seen_at=timezone.now())
    return client


def projects_of(*, caller: Caller) -> list[dict]:
    """What the `ready` frame lists: the caller's organization and its active agents."""
    agents = list(Agent.objects.filter(organization=caller.organization, is_active=True).order_by("name")
                  .values_list("name", flat=True))
    return [{"id": caller.organization.slug, "name": caller.organization.name, "agents": agents}]


@dataclass
class ChatAccepted:
    turn: Turn
    created: bool
    entry: ClientTurn
    position: int  # turns of this client ahead of it, not yet answered


def _text_field(content: dict, name: str, *, required: bool = True, limit: int = 200) -> str:
    value = content.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ApiError("invalid", f"{name}이(가) 필요합니다. ({name} is required and must be a string.)", 400,
                       field=name)
    if len(value) > limit:
        raise ApiError("invalid", f"{name}이(가) 너무 깁니다. ({name} is limited to {limit} characters.)", 400,
                       field=name)
    return value.strip()


def chat_accept(*, caller: Caller, client: AssistantClient, content: dict) -> ChatAccepted:
    """Store a `chat` frame as the next turn of the client's session with that agent (idempotent on
    `id`) and queue it for the client's driver. Validation errors store nothing."""
    project_id = _text_field(content, "project_id")
    agent_name = _text_field(content, "agent_name")
    message_id = _text_field(content, "id", required=False, limit=128)
    if project_id != caller.organization.slug:
        # Another organization's slug looks exactly like one that does not exist.
        raise _error("project_not_found", 404, field="project_id")
    agent = Agent.objects.filter(organization=caller.organization, name=agent_name, is_active=True).first()
    if agent is None:
        raise _error("agent_not_found", 404, field="agent_name")
    images = images_validate(content.get("images"))
    if not isinstance(content.get("message"), str):
        raise ApiError("invalid", "message가 필요합니다. (message is required and must be a string.)", 400,
                       field="message")
    with transaction.atomic():
        # The client row lock orders this client's chats across processes: queue order = turn order.
        AssistantClient.objects.select_for_update(of=("self",)).get(pk=client.pk)
        session = (Session.objects.filter(organization=caller.organization, agent=agent, channel=Channel.ASSISTANT,
                                          metadata__client_id=client.client_id)
                   .exclude(metadata__has_key="delegated_task").order_by("created_at").first())
        if session is None:
            session = session_create(organization=caller.organization, agent=agent, channel=Channel.ASSISTANT,
                                     end_user=caller.end_user,
                                     metadata={"client_id": client.client_id, "user_id": caller.user.pk})
        turn, created = turn_start(
            organization=caller.organization, agent=agent, channel=Channel.ASSISTANT, text=content["message"],
            session=session, end_user=caller.end_user, client_message_id=message_id,
            idempotency_scope=f"client:{client.client_id}",
        )
        entry, _ = ClientTurn.objects.get_or_create(turn=turn, defaults={"client": client, "message_id": message_id})
        if created and images:
            images_store(turn=turn, images=images)
    position = ClientTurn.objects.filter(client=client, id__lt=entry.id, turn__status__in=(
        Turn.Status.PENDING, Turn.Status.STREAMING)).count()
    return ChatAccepted(turn=turn, created=created, entry=entry, position=position)


def client_turn_pending_next(*, client_pk: int) -> ClientTurn | None:
    """The client's oldest turn not yet answered (the driver's next job)."""
    return (ClientTurn.objects.filter(client_id=client_pk, turn__status=Turn.Status.PENDING)
            .select_related("turn__session__agent", "turn__session__organization", "turn__session__end_user",
                            "client")
            .order_by("id").first())


def client_has_pending(*, client_pk: int) -> bool:
    """Whether a turn of the client waits for its driver (one left by a process that died, say)."""
    return ClientTurn.objects.filter(client_id=client_pk, turn__status=Turn.Status.PENDING).exists()


def client_turn_current(*, client: AssistantClient) -> ClientTurn | None:
    """The turn of this client being answered now, if any."""
    return (ClientTurn.objects.filter(client=client, turn__status=Turn.Status.STREAMING)
            .select_related("turn").order_by("-id").first())
