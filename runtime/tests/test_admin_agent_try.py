"""'Test this agent' on the agent's admin page (issue 11, 4): the real pipeline, preview mode, in no statistics."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User

from mejai.overview import overview_build
from runtime.models import Agent, Membership, Session, Turn


@pytest.fixture
def operator(organization):
    def make(org, name="op"):
        user = User.objects.create_user(name, password="pw", is_staff=True)
        user.user_permissions.add(*Permission.objects.filter(content_type__app_label="runtime"))
        Membership.objects.create(user=user, organization=org)
        return user

    return make


def test_try_an_agent_from_its_admin_page(client, organization, agent, operator, offline_llm):
    client.force_login(operator(organization))
    change_page = client.get(f"/admin/runtime/agent/{agent.pk}/change/").content.decode()
    assert f"/admin/runtime/agent/{agent.pk}/try/" in change_page
    url = f"/admin/runtime/agent/{agent.pk}/try/"
    assert client.get(url).status_code == 200
    assert client.post(url, {"message": "안녕하세요, 배송 문의예요"}).status_code == 302
    assert client.post(url, {"message": "/메모리"}).status_code == 302
    page = client.get(url).content.decode()
    assert "안녕하세요, 배송 문의예요" in page and "오프라인" in page and "mj-bubble mj-bot" in page
    session = Session.objects.get()
    assert session.metadata["preview"] is True and session.agent_id == agent.pk and session.last_seq == 2

    # Counted nowhere: not in the overview, not among customers' conversations.
    [figures] = overview_build(organizations=[organization])
    assert figures.totals.messages == 0
    assert "배송 문의" not in client.get("/admin/runtime/conversation/").content.decode()

    client.post(url, {"restart": "1"})
    client.post(url, {"message": "새 대화"})
    assert Session.objects.count() == 2


def test_an_empty_message_shows_the_error_and_stores_nothing(client, organization, agent, operator, offline_llm):
    client.force_login(operator(organization))
    response = client.post(f"/admin/runtime/agent/{agent.pk}/try/", {"message": "   "})
    page = response.content.decode()
    assert response.status_code == 400 and "errornote" in page and "(" in page
    assert not Turn.objects.exists()


def test_an_operator_cannot_try_another_organizations_agent(client, organization, other_organization, operator,
                                                            offline_llm):
    theirs = Agent.objects.create(organization=other_organization, name="globex-agent")
    client.force_login(operator(organization))
    url = f"/admin/runtime/agent/{theirs.pk}/try/"
    assert client.get(url).status_code == 404
    assert client.post(url, {"message": "hi"}).status_code == 404
    assert not Turn.objects.exists()
