"""/remember, /search, /memory, /forget through the runtime pipeline, in Korean and English."""

from __future__ import annotations

import pytest

from endusers.models import EndUser, Memory
from endusers.services import identity_resolve, memory_add


def say(chat, key, text, external_id="cust-1", **extra):
    response = chat(key, {"message": text, "external_id": external_id, **extra})
    assert response.status_code == 200, response.content
    return response.json()["message"]


def test_remember_search_memory_forget_in_korean(chat, api_key, offline_llm):
    reply = say(chat, api_key, "/기억 환불은 구매 후 7일 이내 가능하다고 안내받음")
    assert reply.startswith("기억했어요 (#")
    memory = Memory.objects.get()
    assert memory.source == "command" and memory.end_user.identities.get().value == "cust-1"
    say(chat, api_key, "/기억 커피는 라떼")

    found = say(chat, api_key, "/검색 환불 규정")
    assert found.startswith("찾은 기억:") and f"#{memory.pk} 환불은" in found and "라떼" not in found

    listing = say(chat, api_key, "/메모리")
    assert listing.startswith("기억하고 있는 내용 (최신순):")
    assert listing.index("커피는 라떼") < listing.index("환불은")  # newest first, with ids

    assert say(chat, api_key, f"/잊기 {memory.pk}").startswith(f"#{memory.pk} 기억을 지웠어요")
    memory.refresh_from_db()
    assert memory.deleted_at is not None
    assert "환불은" not in say(chat, api_key, "/메모리")


def test_commands_answer_in_english_for_english_text(chat, api_key, offline_llm):
    assert say(chat, api_key, "/remember I prefer email").startswith("Remembered (#")
    assert say(chat, api_key, "/search email").startswith("Found in memory:")
    assert say(chat, api_key, "/memory").startswith("What I remember (newest first):")
    assert say(chat, api_key, "/search refund") == "Nothing remembered about “refund”."
    assert say(chat, api_key, "/forget 999999") == "그 기억을 찾을 수 없어요. (Memory not found.)"


def test_forget_with_another_persons_memory_id_deletes_nothing(chat, api_key, organization, offline_llm):
    other = identity_resolve(organization=organization, kind="external_id", value="someone-else", verified=True)
    theirs = memory_add(end_user=other, text="다른 사람의 기억")
    reply = say(chat, api_key, f"/forget {theirs.pk}")
    assert "찾을 수 없어요" in reply
    theirs.refresh_from_db()
    assert theirs.is_active


@pytest.mark.parametrize("text,expected", [
    ("/기억", "기억할 내용을 함께 적어 주세요"), ("/remember", "Tell me what to remember"),
    ("/검색", "검색어를 함께 적어 주세요"), ("/forget", "Give the id of the memory"),
    ("/잊기 abc", "찾을 수 없어요"), ("/잊기 99999999999999999999999", "찾을 수 없어요"),
])
def test_commands_without_arguments_explain_themselves(chat, api_key, offline_llm, text, expected):
    assert expected in say(chat, api_key, text)
    assert not Memory.objects.exists()


def test_remember_over_the_limit_is_refused_and_nothing_is_stored(chat, api_key, offline_llm):
    reply = say(chat, api_key, "/기억 " + "가" * 501)
    assert "500자 이하" in reply
    assert not Memory.objects.exists()


def test_remember_in_an_anonymous_session_creates_its_end_user(chat, api_key, offline_llm):
    response = chat(api_key, {"message": "/remember call me after 6pm"})
    assert response.status_code == 200
    memory = Memory.objects.get()
    assert memory.end_user.conversation_sessions.get().pk.hex == response.json()["session_id"].replace("-", "")
    assert EndUser.objects.count() == 1


def test_help_lists_the_memory_commands(chat, api_key, offline_llm):
    reply = say(chat, api_key, "/도움말")
    for word in ("/remember (/기억, /기억해)", "/search (/검색)", "/memory (/메모리, /기억목록)", "/forget (/잊기, /잊어)"):
        assert word in reply


def test_forgetting_the_name_forgets_it_in_the_greeting_too(chat, api_key, organization, offline_llm):
    """Issue 11, 11: after /잊기 of '이름: 민수' the next answer no longer says 민수님."""
    from endusers.services import profile_name_set

    person = identity_resolve(organization=organization, kind="external_id", value="cust-1", verified=True)
    profile_name_set(end_user=person, name="민수")
    assert say(chat, api_key, "안녕하세요").startswith("민수님")
    name_memory = Memory.objects.get(end_user=person, key="name", deleted_at=None, superseded_by=None)
    assert say(chat, api_key, f"/잊기 {name_memory.pk}").startswith(f"#{name_memory.pk} 기억을 지웠어요")
    person.refresh_from_db()
    assert "name" not in person.profile and person.display_name == ""
    assert "민수" not in say(chat, api_key, "안녕하세요")


def test_forgetting_a_name_keeps_a_different_display_name(organization):
    from endusers.services import memory_forget, profile_name_set

    person = identity_resolve(organization=organization, kind="external_id", value="cust-2", verified=True)
    profile_name_set(end_user=person, name="민수")
    EndUser.objects.filter(pk=person.pk).update(display_name="김민수 (CRM)")
    memory = Memory.objects.get(end_user=person, key="name", deleted_at=None)
    memory_forget(end_user=person, memory_id=memory.pk)
    person.refresh_from_db()
    assert "name" not in person.profile and person.display_name == "김민수 (CRM)"


def test_organization_knowledge_is_not_presented_as_the_visitors_memory(chat, api_key, organization, offline_llm):
    """Issue 11, 12: a brand-new visitor asks about delivery; the answer words org knowledge as information."""
    memory_add(organization=organization, text="배송은 결제 후 2~3일 걸려요", is_public=True)
    reply = say(chat, api_key, "배송은 얼마나 걸려요?", external_id="brand-new")
    assert "기억하고" not in reply and "기억" not in reply
    assert "안내 정보" in reply and "배송은 결제 후 2~3일 걸려요" in reply
    assert say(chat, api_key, "/메모리", external_id="brand-new").startswith("아직 기억하고 있는 내용이 없어요")

    memory_add(organization=organization, text="Delivery takes 2-3 days after payment", is_public=True)
    english = say(chat, api_key, "How long does delivery take?", external_id="brand-new-en")
    assert "remember" not in english and "general information" in english and "2-3 days" in english


def test_the_model_is_told_which_facts_are_the_persons_and_which_the_organizations(
        chat, api_key, organization, fake_llm):
    person = identity_resolve(organization=organization, kind="external_id", value="cust-9", verified=True)
    memory_add(end_user=person, text="배송지는 부산 해운대")
    memory_add(organization=organization, text="배송은 결제 후 2~3일 걸려요", is_public=True)
    say(chat, api_key, "배송 언제 와요?", external_id="cust-9")
    chat = [r for r in fake_llm.requests if r["messages"][-1]["content"] == "배송 언제 와요?"]  # not an extraction
    system = chat[-1]["messages"][0]["content"]
    about_person, _, general = system.partition("The organization's general knowledge")
    assert "배송지는 부산 해운대" in about_person and "2~3일" not in about_person
    assert "2~3일" in general and "해운대" not in general
