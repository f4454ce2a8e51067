"""Memory extraction after answered turns: rules offline, LLM facts + decisions, off the request path."""

from __future__ import annotations

import json
import time

import pytest
from django.db import connection

from endusers import receivers
from endusers.extraction import memory_extract
from endusers.models import EndUser, Identity, Memory, MemoryEvent
from endusers.services import identity_resolve, memory_add
from runtime.models import Turn


def turn_for(organization, agent, end_user, text, reply="네, 알겠습니다."):
    from runtime.services import turn_start

    turn, _ = turn_start(organization=organization, agent=agent, channel="api", text=text, end_user=end_user)
    Turn.objects.filter(pk=turn.pk).update(status="completed", reply_text=reply, handled_by="llm")
    return turn


@pytest.fixture
def person(organization):
    return identity_resolve(organization=organization, kind="external_id", value="p-1", verified=True)


def test_offline_rules_capture_name_and_contacts(organization, agent, person, offline_llm):
    turn = turn_for(organization, agent, person, "저는 철수라고 해요")
    assert memory_extract(turn_id=turn.pk) == ["name:철수"]
    person.refresh_from_db()
    assert person.profile["name"] == "철수" and person.display_name == "철수"

    turn = turn_for(organization, agent, person, "연락처는 010-2222-3333, 메일은 Chulsoo@Example.com 입니다")
    memory_extract(turn_id=turn.pk)
    claims = dict(Identity.objects.filter(end_user=person, verified=False).values_list("kind", "value"))
    assert claims == {"phone": "+821022223333", "email": "chulsoo@example.com"}
    profile = set(Memory.objects.filter(end_user=person, kind="profile").values_list("text", flat=True))
    assert profile == {"이름: 철수", "전화번호: +821022223333", "이메일: chulsoo@example.com"}
    # Offline there is no model: no other memories appear.
    assert not Memory.objects.filter(end_user=person, source="extracted").exists()


def test_reasoning_of_the_extraction_model_is_not_read_as_facts(organization, agent, person, fake_llm):
    """A reasoning model's <think> block mentions a made-up fact; only the answer counts (issue 9)."""
    from runtime.fakes import shapes

    answer = json.dumps({"facts": [{"text": "배송지는 부산", "kind": "fact"}]}, ensure_ascii=False)
    fake_llm.script(shapes.vllm_stream(["<think>maybe {\"facts\": [{\"text\": \"VIP 고객\"}]}</think>", answer],
                                       reasoning=["thinking..."]))
    turn = turn_for(organization, agent, person, "배송지는 부산으로 해 주세요")
    assert memory_extract(turn_id=turn.pk) == ["add"]
    assert list(Memory.objects.filter(end_user=person, source="extracted").values_list("text", flat=True)) == [
        "배송지는 부산"]


def test_llm_facts_are_added(organization, agent, person, fake_llm):
    fake_llm.config.reply = json.dumps({"facts": [{"text": "아이폰 15를 11월 3일에 주문함", "kind": "fact"},
                                                  {"text": "연락은 카톡을 선호함", "kind": "preference"}]}, ensure_ascii=False)
    turn = turn_for(organization, agent, person, "11월 3일에 아이폰 15 주문했는데 카톡으로 연락 주세요")
    assert memory_extract(turn_id=turn.pk) == ["add", "add"]
    memories = dict(Memory.objects.filter(end_user=person, source="extracted").values_list("text", "kind"))
    assert memories == {"아이폰 15를 11월 3일에 주문함": "fact", "연락은 카톡을 선호함": "preference"}
    sent = fake_llm.requests[0]
    assert sent["messages"][0]["content"].startswith("You extract durable facts")
    assert "카톡으로 연락 주세요" in sent["messages"][1]["content"]
    # A retried job does not ask the model again.
    calls = len(fake_llm.requests)
    assert memory_extract(turn_id=turn.pk) == ["already"]
    assert len(fake_llm.requests) == calls


def test_llm_decision_updates_a_similar_memory_keeping_history(organization, agent, person, fake_llm):
    old = memory_add(end_user=person, text="배송지는 서울시 강남구", source="extracted")
    # One reply serves both calls: the facts step reads "facts", the decision step reads "action".
    fake_llm.config.reply = json.dumps({"facts": [{"text": "배송지는 서울시 서초구"}], "action": "update", "id": old.pk,
                                        "text": "배송지는 서울시 서초구 (이사함)"}, ensure_ascii=False)
    turn = turn_for(organization, agent, person, "이사해서 배송지가 서울시 서초구로 바뀌었어요")
    assert memory_extract(turn_id=turn.pk) == ["update"]
    old.refresh_from_db()
    assert old.superseded_by.text == "배송지는 서울시 서초구 (이사함)"
    assert MemoryEvent.objects.filter(memory=old, action="update", actor="extraction").exists()
    decision = fake_llm.requests[-1]["messages"]
    assert decision[0]["content"].startswith("You keep a customer's memory consistent")
    assert f"id {old.pk}: 배송지는 서울시 강남구" in decision[1]["content"]


def test_llm_decision_deletes_a_contradicted_memory(organization, agent, person, fake_llm):
    old = memory_add(end_user=person, text="멤버십 회원임", source="extracted")
    fake_llm.config.reply = json.dumps({"facts": [{"text": "멤버십 해지함"}], "action": "delete", "id": old.pk})
    turn = turn_for(organization, agent, person, "멤버십 해지했어요")
    assert memory_extract(turn_id=turn.pk) == ["delete"]
    old.refresh_from_db()
    assert old.deleted_at is not None
    assert Memory.objects.get(end_user=person, deleted_at__isnull=True, superseded_by__isnull=True).text == "멤버십 해지함"


def test_llm_decision_none_and_an_unknown_id(organization, agent, person, fake_llm):
    old = memory_add(end_user=person, text="고양이 두 마리를 키움", source="extracted")
    fake_llm.config.reply = json.dumps({"facts": [{"text": "고양이를 키움"}], "action": "none"})
    assert memory_extract(turn_id=turn_for(organization, agent, person, "고양이 키워요").pk) == ["none"]
    fake_llm.config.reply = json.dumps({"facts": [{"text": "고양이 이름은 나비"}], "action": "update", "id": 99999})
    assert memory_extract(turn_id=turn_for(organization, agent, person, "고양이 이름은 나비예요").pk) == ["add"]
    old.refresh_from_db()
    assert old.is_active


def test_unusable_model_replies_store_nothing(organization, agent, person, fake_llm):
    fake_llm.config.reply = "I could not find any facts, sorry."
    assert memory_extract(turn_id=turn_for(organization, agent, person, "안녕").pk) == []
    fake_llm.config.reply = json.dumps({"facts": [{"text": ""}, 5, {"text": "가" * 600}]})
    assert memory_extract(turn_id=turn_for(organization, agent, person, "음").pk) == []
    assert not Memory.objects.exists()


def test_a_failing_model_raises_for_a_retry(organization, agent, person, fake_llm):
    from runtime.clients.llm import LLMError

    fake_llm.config.fail_status, fake_llm.config.fail_times = 500, 5
    with pytest.raises(LLMError) as err:
        memory_extract(turn_id=turn_for(organization, agent, person, "배송 언제 와요").pk)
    assert err.value.retryable


def test_only_answered_llm_turns_of_known_people_are_queued(
    chat, api_key, offline_llm, monkeypatch
):
    queued = []
    monkeypatch.setattr(receivers, "extraction_enqueue", lambda *, turn_id: queued.append(turn_id))
    answered = chat(api_key, {"message": "안녕하세요", "external_id": "x-1"}).json()
    chat(api_key, {"message": "/기억 무언가", "external_id": "x-1"})  # a command: nothing to extract
    chat(api_key, {"message": "안녕하세요"})  # nobody known
    assert queued == [answered["turn_id"]]


def test_enqueue_happens_on_commit(db, monkeypatch, django_capture_on_commit_callbacks):
    from endusers import tasks

    sent = []
    monkeypatch.setattr(tasks.memory_extract_task, "delay", lambda turn_id: sent.append(turn_id))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        receivers.extraction_enqueue(turn_id="t-1")
    assert sent == [] and len(callbacks) == 1
    callbacks[0]()
    receivers._enqueue_executor().submit(lambda: None).result(10)  # the sender thread is FIFO
    assert sent == ["t-1"]


def test_an_unreachable_broker_never_fails_the_turn(db, monkeypatch, django_capture_on_commit_callbacks):
    from endusers import tasks

    def down(turn_id):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.memory_extract_task, "delay", down)
    with django_capture_on_commit_callbacks(execute=True):
        receivers.extraction_enqueue(turn_id="t-2")
    receivers._enqueue_executor().submit(lambda: None).result(10)


@pytest.mark.django_db(transaction=True)
def test_extraction_job_runs_off_the_request(client, api_key, settings):
    """The real path: the answer is returned, then the job (Celery, or the in-process pool) stores the name."""
    if not settings.CELERY_IN_PROCESS:
        pytest.skip("with a broker the job needs a worker process (see test_extraction_on_a_celery_worker)")
    settings.OPENAI_BASE_URL = settings.OPENAI_API_KEY = ""
    response = client.post("/api/runtime/chat", data=json.dumps({"message": "내 이름은 영희야", "external_id": "y-1"}),
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert response.status_code == 200
    person = Identity.objects.get(value="y-1").end_user
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not EndUser.objects.get(pk=person.pk).profile.get("name"):
        time.sleep(0.05)
    assert EndUser.objects.get(pk=person.pk).profile.get("name") == "영희"


@pytest.mark.redis
@pytest.mark.postgres
def test_extraction_on_a_celery_worker(celery_worker_process, client, api_key, settings):
    settings.OPENAI_BASE_URL = settings.OPENAI_API_KEY = ""
    connection.close()
    response = client.post("/api/runtime/chat", data=json.dumps({"message": "my name is Alex", "external_id": "z-1"}),
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert response.status_code == 200
    person = Identity.objects.get(value="z-1").end_user
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not EndUser.objects.get(pk=person.pk).profile.get("name"):
        time.sleep(0.1)
    assert EndUser.objects.get(pk=person.pk).profile.get("name") == "Alex"
