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


def api_key_find(*, raw_key: str) -> ApiKey | None:
    from runtime.auth import api_key_hash

    return ApiKey.objects.select_related("organization").filter(key_hash=api_key_hash(raw_key)).first()


def prompt_templates_for_org(*, organization: Organization) -> QuerySet[PromptTemplate]:
    return PromptTemplate.objects.filter(organization=organization).prefetch_related("versions")


def prompt_template_get_for_org(*, organization: Organization, name: str) -> PromptTemplate:
    """The organization's prompt of that name with its versions; ApiError 404 `not_found` otherwise."""
    template = PromptTemplate.objects.prefetch_related("versions").filter(organization=organization, name=name).first()
    if template is None:
        raise ApiError("not_found", "프롬프트를 찾을 수 없습니다. (Prompt not found.)", 404)
    return template
