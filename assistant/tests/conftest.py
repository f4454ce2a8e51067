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
