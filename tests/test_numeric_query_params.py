"""Every numeric query parameter is validated: a 400 naming the field, never a database overflow (issue 11, 14)."""

from __future__ import annotations

import pytest

from endusers.services import contact_upsert
from runtime.models import Channel, Session

HUGE = "99999999999999999999999"
BAD_VALUES = [HUGE, "-1", "abc", "1.5", "1e3", "0x10", "１２", str(2**63), "1_0"]


@pytest.fixture
def urls(organization, agent):
    contact, _ = contact_upsert(organization=organization, external_id="cust-1")
    session = Session.objects.create(organization=organization, agent=agent, channel=Channel.API)
    return [
        "/api/contacts",
        f"/api/contacts/{contact.pk}/memories",
        f"/api/runtime/sessions/{session.pk}/turns",
        "/api/kakao/admin/ai-tasks",
    ]


@pytest.mark.parametrize("name", ["limit", "offset"])
@pytest.mark.parametrize("value", BAD_VALUES)
def test_bad_limit_or_offset_is_a_400_naming_the_field(client, api_key, urls, name, value):
    for url in urls:
        response = client.get(url, {name: value}, HTTP_AUTHORIZATION=f"Bearer {api_key}")
        assert response.status_code == 400, (url, value, response.content)
        error = response.json()["error"]
        assert error["code"] == "invalid" and error["field"] == name
        assert "(" in error["message"] and name in error["message"]  # Korean first, English in parentheses


def test_limit_past_the_maximum_is_refused_and_good_values_page(client, api_key, urls):
    for url in urls:
        assert client.get(url, {"limit": "201"}, HTTP_AUTHORIZATION=f"Bearer {api_key}").status_code == 400
        response = client.get(url, {"limit": "200", "offset": "1000000"}, HTTP_AUTHORIZATION=f"Bearer {api_key}")
        assert response.status_code == 200, (url, response.content)
        assert response.json()["results"] == []


def test_memory_search_limit_is_validated(client, api_key, urls):
    contact_url = urls[1].rsplit("/", 1)[0]
    response = client.get(f"{contact_url}/memories/search", {"q": "x", "limit": HUGE},
                          HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert response.status_code == 400 and response.json()["error"]["field"] == "limit"
