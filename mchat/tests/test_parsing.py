"""Mention parsing, loop-bait filtering and answer splitting, as Mattermost sees posts."""

from __future__ import annotations

import json

import pytest

from mchat.parsing import (
    broadcast_neutralise,
    fences_balanced,
    ignore_reason,
    mention_remove,
    mentions,
    post_decode,
    text_split,
)


@pytest.mark.parametrize("text, expected", [
    ("@ai 안녕", True), ("안녕 @ai", True), ("@AI hello", True), ("hi @ai.", True), ("(@ai) 도와줘", True),
    ("@ai, 질문", True), ("@ai: 질문", True), ("@aiden hi", False), ("x@ai.com 으로 메일", False),
    ("`@ai` 라고 쓰면 돼요", False), ("```\n@ai\n```", False), ("@channel 공지", False), ("@here", False),
    ("@all", False), ("@ai.com", False), ("메일@ai", False), ("@ai-bot", False), ("@ai_", True),
    ("```python\nx = 1\n```\n@ai 이 코드 봐줘", True),
])
def test_mentions_as_mattermost_parses_them(text, expected):
    assert mentions(text, "ai") is expected


def test_mention_remove_keeps_the_rest():
    assert mention_remove("@ai /remember 커피 좋아함", "ai") == "/remember 커피 좋아함"
    assert mention_remove("안녕 @ai, 잘 지내?", "ai") == "안녕 , 잘 지내?"
    assert mention_remove("`@ai` 는 그대로 @ai 질문", "ai") == "`@ai` 는 그대로  질문"


@pytest.mark.parametrize("change, reason", [
    ({"user_id": "BOT"}, "own_post"),
    ({"props": {"from_webhook": "true", "override_username": "ai"}}, "from_webhook"),
    ({"props": {"from_bot": "true"}}, "from_bot"),
    ({"props": {"from_plugin": "true"}}, "from_plugin"),
    ({"type": "system_join_channel"}, "system_post"),
    ({"type": "custom_poll"}, "custom_post"),
    ({"delete_at": 123}, "deleted"),
    ({"message": "  "}, "empty"),
    ({"type": "me"}, None),
    ({"message": "🤖 @ai from a person"}, None),  # never filtered by emoji
])
def test_ignore_reasons(change, reason):
    post = {"id": "p", "channel_id": "c", "user_id": "U", "message": "@ai hi", "type": "", "props": {}, "delete_at": 0}
    post.update(change)
    assert ignore_reason(post, bot_user_id="BOT") == reason


def test_post_decode_rejects_garbage():
    assert post_decode("{not json") is None
    assert post_decode(json.dumps([1, 2])) is None
    assert post_decode(json.dumps({"id": "p"})) is None
    assert post_decode(json.dumps({"id": "p", "channel_id": "c", "message": 5})) is None
    assert post_decode(json.dumps({"id": "p", "channel_id": "c", "message": "hi"}))["props"] == {}


def test_broadcast_words_are_neutralised():
    out = broadcast_neutralise("@channel 와 @all, @here 그리고 메일 x@all.com")
    assert "@channel" not in out and "@all," not in out and "@here" not in out and "x@all.com" in out


def test_long_answer_split_at_paragraphs_with_fences_reopened():
    paragraphs = []
    for i in range(40):
        paragraphs.append(f"문단 {i} " + "가나다라 " * 150)
        paragraphs.append("```python\n" + "\n".join(f"print({i}, {j})  # 코드" for j in range(40)) + "\n```")
    text = "\n\n".join(paragraphs)
    assert len(text) > 40000
    parts = text_split(text, limit=16383)
    assert len(parts) >= 3 and all(len(p) <= 16383 for p in parts)
    assert all(fences_balanced(p) for p in parts)
    # Nothing lost: every line of the answer is in some post, in order.
    joined = "\n".join(parts)
    for i in range(40):
        assert f"문단 {i} " in joined and f"print({i}, 39)" in joined


def test_split_inside_one_huge_code_block():
    text = "```sql\n" + "\n".join(f"SELECT {i};" for i in range(5000)) + "\n```"
    parts = text_split(text, limit=4000)
    assert all(len(p) <= 4000 and fences_balanced(p) for p in parts)
    assert all(p.startswith("```sql") for p in parts)
    body = "".join(line + "\n" for p in parts for line in p.split("\n") if not line.startswith("```"))
    assert body.count("SELECT") == 5000
