"""Kakao output shaping: plain text, 1–3 bubbles of ≤ 1000 characters, never empty, quick replies, ≤ 30 KB."""

from __future__ import annotations

import json

from kakao.responses import (
    EMPTY_FALLBACK,
    MAX_BODY_BYTES,
    acknowledgement,
    body_size,
    bubbles_split,
    quick_replies_kakao,
    response_build,
    text_plain,
)
from kakao.tests.conftest import fixture_json, texts


def test_fixture_callback_body_shape():
    body = response_build(["환불은 구매 후 7일 이내에 가능합니다."], quick_replies=[{"label": "다시 질문", "message": "다시 질문"}])
    assert body == fixture_json("callback_body.json")
    assert "useCallback" not in body


def test_acknowledgement_shape():
    assert acknowledgement("답변을 생성하고 있어요. 잠시만 기다려 주세요.") == fixture_json("skill_response_use_callback.json")


def test_markdown_is_flattened():
    md = ("## 환불 안내\n\n**환불**은 _7일_ 이내 가능해요.\n\n- 영수증 필요\n* 카드 취소\n\n> 참고: `주문번호`\n\n"
          "[자세히](https://example.com/refund) ![그림](https://example.com/a.png)\n\n---\n```\ncode block\n```")
    plain = text_plain(md)
    for marker in ("##", "**", "_7일_", "`", "](", "```", "---"):
        assert marker not in plain
    assert "환불 안내" in plain and "환불은 7일 이내 가능해요." in plain
    assert "• 영수증 필요" in plain and "• 카드 취소" in plain and "자세히 (https://example.com/refund)" in plain
    assert "code block" in plain


def test_snake_case_and_arithmetic_survive():
    assert text_plain("order_id 와 2*3*4") == "order_id 와 2*3*4"


def test_long_text_is_split_at_boundaries_into_at_most_three_bubbles():
    paragraph = "가나다라마바사 아자차카타파하. " * 40  # ~ 680 chars
    text = "\n\n".join([paragraph.strip()] * 3)
    pieces = bubbles_split(text)
    assert 2 <= len(pieces) <= 3 and all(0 < len(p) <= 1000 for p in pieces)
    huge = "가" * 5000
    pieces = bubbles_split(huge)
    assert len(pieces) == 3 and all(len(p) <= 1000 for p in pieces) and pieces[-1].endswith("…")


def test_never_empty():
    assert texts(response_build([""])) == [EMPTY_FALLBACK]
    assert texts(response_build(["   ", "## \n"])) == [EMPTY_FALLBACK]


def test_held_answer_and_new_answer_share_three_bubbles():
    body = response_build(["가" * 2500, "새 답변"])
    outputs = texts(body)
    assert len(outputs) == 3 and outputs[-1] == "새 답변"
    body = response_build(["하나", "둘", "셋", "넷"])
    assert texts(body) == ["둘", "셋", "넷"]


def test_quick_replies_are_capped_and_labels_shortened():
    replies = [{"label": f"선택지 번호 {i} 아주 긴 라벨입니다", "message": f"선택 {i}"} for i in range(15)]
    kakao = quick_replies_kakao(replies + [{"label": "", "message": "x"}, "junk"])
    assert len(kakao) == 10
    assert all(len(r["label"]) <= 14 and r["action"] == "message" for r in kakao)
    assert kakao[0]["messageText"] == "선택 0"


def test_body_stays_under_30kb():
    body = response_build(["\U0001f600" * 3000, "\U0001f600" * 3000],
                          quick_replies=[{"label": "a" * 14, "message": "\U0001f600" * 1000} for _ in range(10)])
    assert body_size(body) <= MAX_BODY_BYTES
    json.dumps(body)
