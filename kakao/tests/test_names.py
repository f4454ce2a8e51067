"""Name capture and the name-change mode of the original Kakao bot (synchronous answers for brevity)."""

from __future__ import annotations

import pytest

from endusers.models import EndUser
from kakao.models import KakaoEvent, KakaoUser
from kakao.tests.conftest import post_skill, texts
from runtime.models import Turn

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def say(client, kakao_bot, skill_body):
    def send(utterance: str) -> list[str]:
        response = post_skill(client, skill_body("skill_request_no_callback.json", utterance=utterance))
        assert response.status_code == 200, response.content
        return texts(response.json())

    return send


def name() -> str:
    return EndUser.objects.get().display_name


@pytest.mark.parametrize("utterance,expected", [
    ("내 이름은 민수야", "민수"), ("난 영희야", "영희"), ("저는 철수라고 해요", "철수"), ("my name is Alex", "Alex"),
])
def test_stated_names_are_stored_and_the_agent_greets_by_name(say, offline_llm, utterance, expected):
    reply = say(utterance)
    assert name() == expected
    assert reply[0].startswith(f"{expected}님") or reply[0].startswith(f"Hello, {expected}")
    assert KakaoEvent.objects.filter(kind="name_set", detail__name=expected).exists()
    assert Turn.objects.get().user_text == utterance  # stored as said


def test_name_reaches_the_model_prompt(say, fake_llm):
    say("내 이름은 민수야")
    say("환불 규정 알려줘")
    # The chat's request, not a memory-extraction call that may have come after it.
    chat = [r for r in fake_llm.requests if r["messages"][-1].get("content") == "환불 규정 알려줘"]
    assert chat and "민수" in chat[-1]["messages"][0]["content"]


@pytest.mark.parametrize("trigger", ["다른 이름", "이름 바꿔", "이름 변경", "이름 바꿔 줘!", "/이름"])
def test_name_change_mode_then_new_name(say, offline_llm, trigger):
    say("내 이름은 민수야")
    ask = say(trigger)
    assert "어떤 이름으로 불러 드릴까요" in ask[0]
    assert KakaoUser.objects.get().mode == "name_change"
    done = say("홍길동")
    assert done == ["좋아요, 홍길동님! 앞으로 홍길동님이라고 불러 드릴게요."]
    assert name() == "홍길동" and KakaoUser.objects.get().mode == ""
    assert Turn.objects.filter(user_text="/이름 홍길동", handled_by="command:이름").exists()


def test_name_change_accepts_a_sentence_in_the_mode(say, offline_llm):
    say("이름 변경")
    say("제 이름은 김철수입니다")
    assert name() == "김철수"


def test_slash_name_with_a_name_sets_it_at_once(say, offline_llm):
    assert say("/이름 홍길동") == ["좋아요, 홍길동님! 앞으로 홍길동님이라고 불러 드릴게요."]
    assert name() == "홍길동" and KakaoUser.objects.get().mode == ""
    assert KakaoEvent.objects.filter(kind="name_set", detail__source="command").exists()


def test_cancel_leaves_the_name_alone(say, offline_llm):
    say("내 이름은 민수야")
    say("이름 바꿔")
    assert say("취소") == ["이름 변경을 취소했어요. 다른 궁금한 점이 있으면 말씀해 주세요."]
    assert name() == "민수" and KakaoUser.objects.get().mode == ""
    assert KakaoEvent.objects.filter(kind="name_change_cancelled").exists()
    # Out of the mode, a plain word is an ordinary question again.
    say("홍길동")
    assert name() == "민수"


@pytest.mark.parametrize("bad", ["가" * 21, "홍 길 동!!", "<script>", "a@b"])
def test_invalid_names_are_refused_and_the_mode_stays(say, offline_llm, bad):
    say("이름 바꿔")
    reply = say(bad)
    assert "1–20자" in reply[0]
    assert KakaoUser.objects.get().mode == "name_change"
    assert name() == ""


def test_commands_other_than_name_still_work_in_the_mode(say, offline_llm):
    say("이름 바꿔")
    assert "명령어" in say("/도움말")[0]
    assert KakaoUser.objects.get().mode == "name_change"


def test_the_mode_expires(say, offline_llm):
    say("이름 바꿔")
    KakaoUser.objects.update(mode_expires_at=KakaoUser.objects.get().created_at.replace(year=2020))
    say("홍길동")
    assert name() == ""
