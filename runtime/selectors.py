"""Reads of runtime data, always scoped to an organization."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from mejai.errors import ApiError
from runtime.models import Agent, ApiKey, Organization, PromptTemplate, Session, Turn


def session_get_for_org(*, organization: Organization, session_id) -> Session:
    """The organization's session, or a 404 that says nothing about other organizations."""
    try:
        sid = uuid.UUID(str(session_id))
    except (TypeError, ValueError, AttributeError):
        raise ApiError("session_not_found", "Session not found.", 404, field="session_id") from None
    session = (
        Session.objects.select_related("agent", "organization", "end_user")
        .filter(pk=sid, organization=organization)
        .first()
    )
    if session is None:
        raise ApiError("session_not_found", "Session not found.", 404, field="session_id")
    return session


def session_open_for_end_user(*, organization: Organization, agent: Agent, channel: str, end_user,
                              idle_minutes: int) -> Session | None:
    """The end user's latest open session with this agent on this channel, active within `idle_minutes`; else None."""
    from datetime import timedelta

    from django.utils import timezone

    if idle_minutes <= 0 or end_user is None:
        return None
    return (
        Session.objects.select_related("agent", "organization", "end_user")
        .filter(organization=organization, agent=agent, channel=channel, end_user=end_user, status=Session.Status.OPEN,
                last_activity_at__gte=timezone.now() - timedelta(minutes=idle_minutes))
        .order_by("-last_activity_at")
        .first()
    )


def session_turns(*, session: Session) -> QuerySet[Turn]:
    return Turn.objects.filter(session=session).order_by("seq")


def agent_for_org(*, organization: Organization, name: str | None = None) -> Agent:
    """The named active agent, or the organization's first active one."""
    agents = Agent.objects.select_related("organization").filter(organization=organization, is_active=True)
    agent = agents.filter(name=name).first() if name else agents.order_by("created_at", "pk").first()
    if agent is None:
        if name:
            raise ApiError("agent_not_found", f"No active agent named {name!r}.", 404, field="agent")
        raise ApiError("no_agent", "This organization has no active agent.", 409)
    return agent


def agent_for_org_cached(*, organization: Organization, name: str | None = None) -> Agent:
    """agent_for_org from the per-process hot cache (runtime/hotcache.py); same errors. The agent
    (and its organization) returned are shared between requests: read-only."""
    from runtime.hotcache import cached

    return cached(("agent", organization.pk, name or ""),
                  lambda: (organization.pk, agent_for_org(organization=organization, name=name)))


def agent_get_cached(*, organization_id: int, agent_id: int) -> Agent | None:
    """One of the organization's agents by id (active or not) from the hot cache; None if not the organization's."""
    from runtime.hotcache import cached

    return cached(("agent_id", organization_id, agent_id), lambda: (organization_id, Agent.objects.select_related(
        "organization").filter(pk=agent_id, organization_id=organization_id).first()))


def api_key_find(*, raw_key: str) -> ApiKey | None:
    from runtime.auth import api_key_hash

    return ApiKey.objects.select_related("organization").filter(key_hash=api_key_hash(raw_key)).first()


def prompt_templates_for_org(*, organization: Organization) -> QuerySet[PromptTemplate]:
    return PromptTemplate.objects.filter(organization=organization).prefetch_related("versions")


def conversations_annotate(queryset: QuerySet[Session]) -> QuerySet[Session]:
    """Sessions with `first_text`, `last_text` (user messages) and `last_reply` for the conversations list.

    Each preview is one lookup on the unique (session, seq) index: seq 1 and the session's `last_seq`.
    """
    from django.db.models import OuterRef, Subquery

    turns = Turn.objects.filter(session=OuterRef("pk"))
    return queryset.select_related("agent", "end_user").annotate(
        first_text=Subquery(turns.filter(seq=1).values("user_text")[:1]),
        last_text=Subquery(turns.filter(seq=OuterRef("last_seq")).values("user_text")[:1]),
        last_reply=Subquery(turns.filter(seq=OuterRef("last_seq")).values("reply_text")[:1]),
    )


def conversation_transcript(*, session: Session) -> list[Turn]:
    """The turns of a session, oldest first, with their prompt versions (for the transcript page)."""
    return list(Turn.objects.filter(session=session).select_related("prompt_version").order_by("seq"))


def prompt_template_get_for_org(*, organization: Organization, name: str) -> PromptTemplate:
    """The organization's prompt of that name with its versions; ApiError 404 `not_found` otherwise."""
    template = PromptTemplate.objects.prefetch_related("versions").filter(organization=organization, name=name).first()
    if template is None:
        raise ApiError("not_found", "프롬프트를 찾을 수 없습니다. (Prompt not found.)", 404)
    return template
