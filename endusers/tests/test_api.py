"""Contacts API: list/search, detail, memories, search, merge, erase — and every bad input the issue names."""

from __future__ import annotations

import json

import pytest

from endusers.models import EndUser, ErasureRecord, Identity, Memory
from endusers.services import identity_claim, identity_resolve, memory_add

from .conftest import assert_error


@pytest.fixture
def api(client, api_key):
    class Api:
        def get(self, url, **params):
            return client.get(url, params, HTTP_AUTHORIZATION=f"Bearer {api_key}")

        def post(self, url, body):
            data = body if isinstance(body, str) else json.dumps(body)
            return client.post(url, data=data, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api_key}")

        def delete(self, url):
            return client.delete(url, HTTP_AUTHORIZATION=f"Bearer {api_key}")

    return Api()


@pytest.fixture
def minsu(organization):
    from endusers.services import contact_upsert

    user, _ = contact_upsert(organization=organization, external_id="cust-1", phone="010-1234-5678", display_name="김민수")
    return user


def test_contacts_need_an_organization_key(db, client):
    assert_error(client.get("/api/contacts"), 401, "unauthenticated")
    assert_error(client.get("/api/contacts", HTTP_AUTHORIZATION="Bearer mj_sk_wrong"), 401)


def test_list_and_search_contacts(api, organization, minsu):
    for i in range(3):
        identity_resolve(organization=organization, kind="visitor", value=f"v-{i}", verified=False)
    body = api.get("/api/contacts", limit=2).json()
    assert body["count"] == 4 and len(body["results"]) == 2 and body["next"]
    assert set(body["results"][0]) >= {"id", "display_name", "name", "identities", "last_seen_at"}

    by_name = api.get("/api/contacts", q="민수").json()["results"]
    assert [c["id"] for c in by_name] == [minsu.pk]
    by_phone = api.get("/api/contacts", q="+82 10-1234-5678").json()["results"]
    assert [c["id"] for c in by_phone] == [minsu.pk]
    assert [c["id"] for c in api.get("/api/contacts", phone="01012345678").json()["results"]] == [minsu.pk]
    assert [c["id"] for c in api.get("/api/contacts", q="cust-1").json()["results"]] == [minsu.pk]
    assert api.get("/api/contacts", q="nobody").json()["count"] == 0
    assert api.get("/api/contacts", q="50%_").json()["count"] == 0  # LIKE wildcards are literal


def test_contact_count_is_capped(api, organization, monkeypatch):
    from endusers.apis import CappedCountPagination

    monkeypatch.setattr(CappedCountPagination, "COUNT_CAP", 2)
    for i in range(3):
        identity_resolve(organization=organization, kind="visitor", value=f"v-{i}", verified=False)
    body = api.get("/api/contacts", limit=1).json()
    assert body["count"] == 2 and body["count_capped"] is True
    assert api.get("/api/contacts", q="v-1").json()["count_capped"] is False


@pytest.mark.parametrize("param,value", [("email", "not-an-email"), ("phone", "12345")])
def test_list_filter_with_invalid_email_or_phone_is_400_naming_the_field(api, param, value):
    error = assert_error(api.get("/api/contacts", **{param: value}), 400, f"invalid_{param}")
    assert error["field"] == param


def test_create_contact_normalizes_and_finds_again(api):
    response = api.post("/api/contacts", {"email": " Lee@Example.COM ", "phone": "+82 10 5555 6666", "display_name": "이영희"})
    assert response.status_code == 201, response.content
    contact = response.json()
    assert {(i["kind"], i["value"], i["verified"]) for i in contact["identities"]} == {
        ("email", "lee@example.com", True), ("phone", "+821055556666", True)}
    again = api.post("/api/contacts", {"phone": "010-5555-6666", "external_id": "crm-9"})
    assert again.status_code == 200 and again.json()["id"] == contact["id"]
    assert len(again.json()["identities"]) == 3


@pytest.mark.parametrize("body,field,code", [
    ({"email": "nope"}, "email", "invalid_email"), ({"phone": "010-12"}, "phone", "invalid_phone"),
    ({"external_id": "ok-1", "email": "bad@"}, "email", "invalid_email"), ({}, "external_id", "identity_required"),
    ({"email": 5}, "email", None),
])
def test_create_contact_with_invalid_identity_is_400_and_stores_nothing(api, body, field, code):
    error = assert_error(api.post("/api/contacts", body), 400, code)
    assert error["field"] == field
    assert not EndUser.objects.exists() and not Identity.objects.exists()


def test_create_contact_with_identities_of_two_people_is_a_conflict(api, organization):
    a = identity_resolve(organization=organization, kind="external_id", value="a", verified=True)
    b = identity_resolve(organization=organization, kind="email", value="b@example.com", verified=True)
    error = assert_error(api.post("/api/contacts", {"external_id": "a", "email": "b@example.com"}), 409, "identities_conflict")
    assert error["contacts"] == sorted([a.pk, b.pk])


def test_contact_detail(api, chat, api_key, minsu, offline_llm):
    chat(api_key, {"message": "안녕하세요", "external_id": "cust-1"})
    chat(api_key, {"message": "/기억 VIP 고객", "external_id": "cust-1"})
    body = api.get(f"/api/contacts/{minsu.pk}").json()
    assert body["id"] == minsu.pk and body["display_name"] == "김민수"
    assert {i["kind"] for i in body["identities"]} == {"external_id", "phone"}
    assert len(body["sessions"]) == 2 and body["sessions"][0]["channel"] == "api"
    assert [m["text"] for m in body["memories"]] == ["VIP 고객"]
    assert [t["user_text"] for t in body["recent_turns"]] == ["/기억 VIP 고객", "안녕하세요"]
    assert body["counts"] == {"sessions": 2, "messages": 2, "memories": 1}


@pytest.mark.parametrize("contact_id", ["other-org", "999999", "abc", "99999999999999999999999", "-1", "0"])
def test_contact_of_another_organization_or_unknown_is_404(api, other_organization, contact_id):
    if contact_id == "other-org":
        contact_id = EndUser.objects.create(organization=other_organization).pk
    for url in (f"/api/contacts/{contact_id}", f"/api/contacts/{contact_id}/memories",
                f"/api/contacts/{contact_id}/memories/search?q=x"):
        assert_error(api.get(url), 404, "contact_not_found")
    assert_error(api.post(f"/api/contacts/{contact_id}/memories", {"text": "x"}), 404)
    assert not Memory.objects.exists()


def test_memories_list_add_delete(api, minsu):
    created = api.post(f"/api/contacts/{minsu.pk}/memories", {"text": "생일은 5월 1일", "kind": "fact"})
    assert created.status_code == 201 and created.json()["source"] == "api"
    api.post(f"/api/contacts/{minsu.pk}/memories", {"text": "창가 자리를 선호", "kind": "preference"})
    listing = api.get(f"/api/contacts/{minsu.pk}/memories").json()
    assert listing["count"] == 2 and listing["results"][0]["text"] == "창가 자리를 선호"
    mid = created.json()["id"]
    assert api.delete(f"/api/contacts/{minsu.pk}/memories/{mid}").status_code == 204
    assert api.get(f"/api/contacts/{minsu.pk}/memories").json()["count"] == 1
    assert_error(api.delete(f"/api/contacts/{minsu.pk}/memories/{mid}"), 404, "memory_not_found")


@pytest.mark.parametrize("body,code", [({"text": ""}, "empty_memory"), ({"text": "가" * 501}, "memory_too_long"),
                                       ({}, "invalid"), ({"text": "ok", "kind": "secret"}, "invalid"),
                                       ("[1, 2]", "invalid"), ("{bad json", "malformed_json")])
def test_memory_text_empty_or_over_the_limit_is_400(api, minsu, body, code):
    assert_error(api.post(f"/api/contacts/{minsu.pk}/memories", body), 400, code)
    assert not Memory.objects.exists()


def test_deleting_another_end_users_memory_is_404_and_deletes_nothing(api, organization, minsu):
    other = EndUser.objects.create(organization=organization)
    theirs = memory_add(end_user=other, text="남의 기억")
    assert_error(api.delete(f"/api/contacts/{minsu.pk}/memories/{theirs.pk}"), 404, "memory_not_found")
    assert_error(api.delete(f"/api/contacts/{minsu.pk}/memories/not-a-number"), 404, "memory_not_found")
    assert_error(api.delete(f"/api/contacts/{minsu.pk}/memories/99999999999999999999999"), 404, "memory_not_found")
    theirs.refresh_from_db()
    assert theirs.is_active


def test_memory_search(api, minsu):
    memory_add(end_user=minsu, text="환불은 구매 후 7일 이내 가능하다고 안내받음")
    memory_add(end_user=minsu, text="배송지는 부산")
    body = api.get(f"/api/contacts/{minsu.pk}/memories/search", q="환불 규정").json()
    assert [r["text"] for r in body["results"]] == ["환불은 구매 후 7일 이내 가능하다고 안내받음"]
    assert body["results"][0]["score"] > 0


@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": "   "}, {"q": "\x00\x00"}])
def test_empty_search_query_is_400(api, minsu, params):
    assert_error(api.get(f"/api/contacts/{minsu.pk}/memories/search", **params), 400, "empty_query")


def test_nul_characters_in_search_queries_are_dropped(api, minsu):
    """PostgreSQL refuses NUL in text; a query carrying one is searched without it, never a 500."""
    memory_add(end_user=minsu, text="배송지는 부산")
    hits = api.get(f"/api/contacts/{minsu.pk}/memories/search", q="부\x00산").json()["results"]
    assert [r["text"] for r in hits] == ["배송지는 부산"]
    listing = api.get("/api/contacts", q="민\x00수")
    assert listing.status_code == 200


def test_merge_api(api, organization, minsu):
    visitor = identity_resolve(organization=organization, kind="visitor", value="v-9", verified=False)
    memory_add(end_user=visitor, text="위젯에서 남긴 기억")
    response = api.post(f"/api/contacts/{visitor.pk}/merge", {"into": minsu.pk})
    assert response.status_code == 200 and response.json()["id"] == minsu.pk
    assert Memory.objects.get(text="위젯에서 남긴 기억").end_user_id == minsu.pk
    again = api.post(f"/api/contacts/{visitor.pk}/merge", {"into": minsu.pk})
    assert again.status_code == 200  # idempotent


def test_merge_api_bad_inputs(api, organization, other_organization, minsu):
    foreign = EndUser.objects.create(organization=other_organization)
    merged = EndUser.objects.create(organization=organization, merged_into=minsu)
    other = EndUser.objects.create(organization=organization)
    assert_error(api.post(f"/api/contacts/{minsu.pk}/merge", {"into": minsu.pk}), 400, "merge_same")
    assert_error(api.post(f"/api/contacts/{other.pk}/merge", {"into": merged.pk}), 400, "merge_into_merged")
    # Another organization's contact id is not found, like any id that is not yours (no existence oracle).
    assert_error(api.post(f"/api/contacts/{minsu.pk}/merge", {"into": foreign.pk}), 404, "contact_not_found")
    assert_error(api.post(f"/api/contacts/{minsu.pk}/merge", {"into": 987654}), 404, "contact_not_found")
    assert_error(api.post(f"/api/contacts/{minsu.pk}/merge", {"into": "x"}), 400, "invalid")
    assert_error(api.post(f"/api/contacts/{minsu.pk}/merge", {"into": 10**30}), 400, "invalid")
    assert_error(api.post(f"/api/contacts/{minsu.pk}/merge", {}), 400, "invalid")
    assert EndUser.objects.get(pk=other.pk).merged_into_id is None


def test_erase_api(api, chat, api_key, organization, minsu, offline_llm):
    chat(api_key, {"message": "제 메일은 minsu@example.com 이에요", "external_id": "cust-1"})
    memory_add(end_user=minsu, text="카드 끝자리 1234")
    identity_claim(end_user=minsu, kind="email", value="minsu2@example.com")
    response = api.post(f"/api/contacts/{minsu.pk}/erase", {})
    assert response.status_code == 200, response.content
    counts = response.json()["counts"]
    assert counts["messages"] == 1 and counts["sessions"] == 1 and counts["identities"] == 3
    minsu.refresh_from_db()
    assert minsu.erased_at and minsu.display_name == "" and minsu.profile == {}
    assert not Identity.objects.filter(end_user=minsu).exists() and not Memory.objects.filter(end_user=minsu).exists()
    turn = minsu.timeline_messages.get().turn
    assert turn.user_text == "" and turn.reply_text == ""
    assert ErasureRecord.objects.get().actor.startswith("api_key:")
    detail = api.get(f"/api/contacts/{minsu.pk}").json()
    assert detail["counts"]["messages"] == 1 and detail["identities"] == []


def test_broad_searches_use_a_subquery(api, organization, monkeypatch):
    from endusers import selectors

    monkeypatch.setattr(selectors, "ID_LIST_CAP", 1)
    for i in range(3):
        identity_resolve(organization=organization, kind="external_id", value=f"shared-{i}", verified=True)
    assert api.get("/api/contacts", q="shared").json()["count"] == 3
    assert api.get("/api/contacts", q="shared-2").json()["count"] == 1
