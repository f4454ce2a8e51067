"""Fixtures of the assistant tests."""

from __future__ import annotations

import pytest

from assistant.tests.support import access_token, member_make


@pytest.fixture
def member(organization, agent):
    return member_make(organization, "alice")


@pytest.fixture
def member_token(member):
    return access_token(member)


@pytest.fixture
def other_member(other_organization):
    from runtime.models import Agent

    Agent.objects.get_or_create(organization=other_organization, name="support")
    return member_make(other_organization, "mallory")


@pytest.fixture
def web_processes(transactional_db, settings, fake_llm):
    """Two web processes (uvicorn, as in production behind a proxy) on the test's PostgreSQL and Redis."""
    from runtime.testing.processes import web_processes as started

    if not (settings.IS_POSTGRES and settings.REDIS_URL):
        pytest.skip("two web processes share PostgreSQL and Redis: set DATABASE_URL and REDIS_URL")
    with started(settings=settings, fake_llm=fake_llm, server="uvicorn", quiet=False) as addresses:
        yield addresses
