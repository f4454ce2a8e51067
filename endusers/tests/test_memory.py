"""Memories: history, limits, hybrid search scoped to one end user, grounding."""

from __future__ import annotations

import pytest

from endusers.models import EndUser, Memory, MemoryEvent
from endusers.search import fallback_score, query_terms
from endusers.selectors import grounding_for, memory_search, memory_search_org
from endusers.services import memory_add, memory_delete, memory_update
from mejai.errors import ApiError

REFUND = "환불은 구매 후 7일 이내 가능하다고 안내받음"


@pytest.fixture
def person(organization):
    return EndUser.objects.create(organization=organization, display_name="민수", profile={"name": "민수"})


def test_add_update_delete_keep_history(person):
    memory = memory_add(end_user=person, text="  커피는   라떼를 좋아함 ", kind="preference")
    assert memory.text == "커피는 라떼를 좋아함"
    newer = memory_update(memory=memory, text="커피는 아이스 라떼를 좋아함", actor="test")
    memory.refresh_from_db()
    assert memory.superseded_by_id == newer.pk and newer.is_active and not memory.is_active
    memory_delete(memory=newer, actor="test")
    newer.refresh_from_db()
    assert newer.deleted_at is not None
    actions = list(MemoryEvent.objects.filter(memory__end_user=person).values_list("memory_id", "action"))
    assert actions == [(memory.pk, "add"), (memory.pk, "update"), (newer.pk, "add"), (newer.pk, "delete")]
    with pytest.raises(ApiError) as err:
        memory_delete(memory=newer)
    assert err.value.status == 404


@pytest.mark.parametrize("text,code", [("", "empty_memory"), ("   \n ", "empty_memory"), ("가" * 501, "memory_too_long"),
                                       (123, "invalid")])
def test_memory_text_empty_or_over_the_limit(person, text, code):
    with pytest.raises(ApiError) as err:
        memory_add(end_user=person, text=text)
    assert err.value.code == code and err.value.status == 400 and err.value.field == "text"
    assert not Memory.objects.exists()


def test_query_terms_keep_stems_without_particles():
    assert query_terms("환불은 규정이") == ["환불은", "환불", "규정이", "규정"]
    assert query_terms("a 환불") == ["환불"]


def test_search_finds_korean_text_with_particles(person):
    memory_add(end_user=person, text="배송지는 서울시 강남구")
    refund = memory_add(end_user=person, text=REFUND)
    memory_add(end_user=person, text="좋아하는 색은 파란색")
    found = memory_search(end_user=person, query="환불 규정")
    assert found and found[0].pk == refund.pk and found[0].score > 0
    assert all(m.pk != refund.pk for m in memory_search(end_user=person, query="파란색"))


def test_search_tolerates_a_typo_through_trigrams(person):
    memory = memory_add(end_user=person, text="preferred contact is email in the evening")
    assert memory.pk in [m.pk for m in memory_search(end_user=person, query="evenning")]


def test_full_text_hits_come_first_and_similar_ones_fill_up(person):
    exact = memory_add(end_user=person, text="evening calls are fine")
    fuzzy = memory_add(end_user=person, text="contact in the evenning only")  # a typo in the memory
    found = [m.pk for m in memory_search(end_user=person, query="evening", limit=1)]
    assert found == [exact.pk]
    assert [m.pk for m in memory_search(end_user=person, query="evening", limit=5)][:2] == [exact.pk, fuzzy.pk]


def test_search_is_scoped_to_one_end_user(organization, person, other_organization):
    stranger = EndUser.objects.create(organization=organization)
    foreign = EndUser.objects.create(organization=other_organization)
    memory_add(end_user=stranger, text=REFUND)
    memory_add(end_user=foreign, text=REFUND)
    assert memory_search(end_user=person, query="환불 규정") == []
    mine = memory_add(end_user=person, text=REFUND)
    assert [m.pk for m in memory_search(end_user=person, query="환불")] == [mine.pk]


def test_superseded_and_deleted_memories_are_not_found(person):
    old = memory_add(end_user=person, text="환불 계좌는 국민은행")
    new = memory_update(memory=old, text="환불 계좌는 신한은행")
    assert [m.pk for m in memory_search(end_user=person, query="환불 계좌")] == [new.pk]
    memory_delete(memory=new)
    assert memory_search(end_user=person, query="환불 계좌") == []


def test_org_wide_memories(organization, other_organization):
    policy = memory_add(organization=organization, text=REFUND)
    memory_add(organization=other_organization, text=REFUND)
    assert [m.pk for m in memory_search_org(organization=organization, query="환불 규정")] == [policy.pk]


@pytest.mark.parametrize("query", ["", "   ", None])
def test_empty_search_query_is_refused(person, query):
    with pytest.raises(ApiError) as err:
        memory_search(end_user=person, query=query)
    assert err.value.code == "empty_query" and err.value.status == 400


def test_grounding_has_profile_preferences_and_ranked_memories(organization, person):
    memory_add(end_user=person, text="연락은 이메일을 선호함", kind="preference")
    refund = memory_add(end_user=person, text=REFUND)
    policy = memory_add(organization=organization, text="환불 규정: 전자제품은 개봉 시 불가", is_public=True)
    grounding = grounding_for(end_user=person, organization=organization, query="환불 규정 알려줘")
    assert grounding.profile == {"name": "민수", "preferences": ["연락은 이메일을 선호함"]}
    assert {m["id"] for m in grounding.memories} >= {refund.pk, policy.pk}
    assert all(set(m) == {"id", "text", "score"} for m in grounding.memories)


def test_fallback_ranking_matches_prefixes():
    assert fallback_score(terms=query_terms("환불 규정"), text=REFUND)[0]
    matched, score = fallback_score(terms=query_terms("배송"), text=REFUND)
    assert not matched and score < 0.35


def test_internal_org_memories_never_reach_customers(organization, person):
    """Issue 10 (Low): an internal note (a staff discount code) is never in a customer's grounding."""
    public = memory_add(organization=organization, text="할인 행사: 이번 주 전 품목 10% 할인", is_public=True)
    internal = memory_add(organization=organization, text="할인 코드 STAFF-ONLY-7777 은 직원 전용")
    grounding = grounding_for(end_user=person, organization=organization, query="할인 코드 알려줘")
    ids = {m["id"] for m in grounding.memories}
    assert public.pk in ids and internal.pk not in ids
    # Updating an internal memory keeps it internal; the operator's own search still finds it.
    assert not memory_update(memory=internal, text="할인 코드 STAFF-ONLY-8888 은 직원 전용").is_public
    assert memory_search_org(organization=organization, query="할인 코드")
    # The organization's own staff (an `account` identity) are told internal knowledge.
    from endusers.models import Identity

    Identity.objects.create(organization=organization, end_user=person, kind="account", value="staff-1", verified=True)
    staff_ids = {m["id"] for m in grounding_for(end_user=person, organization=organization,
                                                 query="할인 코드 알려줘").memories}
    assert internal.pk not in staff_ids  # superseded by the update
    assert any("STAFF-ONLY-8888" in m["text"] for m in grounding_for(
        end_user=person, organization=organization, query="할인 코드 알려줘").memories)


def test_internal_org_memory_is_not_answered_to_an_anonymous_visitor(client, organization, agent, offline_llm):
    from widgets.models import ChatWidget
    from widgets.tests.support_api import init_ok, post_json

    widget = ChatWidget.objects.create(organization=organization, agent=agent, name="Shop",
                                       allowed_domains=["shop.example.com"])
    memory_add(organization=organization, text="할인 코드 STAFF-ONLY-7777 은 직원 전용")
    memory_add(organization=organization, text="할인 행사: 이번 주 전 품목 10% 할인", is_public=True)
    started = init_ok(client, widget)
    reply = post_json(client, "/api/widget/chat", {"message": "할인 코드 있어요?"}, token=started["widget_token"])
    assert reply.status_code == 200
    assert "STAFF-ONLY" not in reply.content.decode()
    assert "10% 할인" in reply.json()["message"]  # the public one is answered
