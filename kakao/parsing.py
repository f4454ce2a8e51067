"""Defensive parsing of Open Builder skill requests: unknown fields ignored, every bad input an ApiError."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kakao import conf
from mejai.errors import ApiError
from runtime.text import user_text_validate

MAX_USER_ID_CHARS = 70
TESTER_SURFACE = "BuilderBotTest"


@dataclass
class SkillRequest:
    user_id: str
    utterance: str  # cleaned (NFC, no controls or zero-width characters)
    bot_id: str  # as sent (may end in "!")
    callback_url: str | None
    surface: str = ""
    lang: str = ""
    plusfriend_user_key: str = ""
    app_user_id: str = ""
    is_friend: bool = False
    params: dict = field(default_factory=dict)
    client_extra: dict = field(default_factory=dict)
    block_name: str = ""

    @property
    def is_builder_test(self) -> bool:
        return self.surface == TESTER_SURFACE


def bot_id_normalize(value: str) -> str:
    return (value or "").strip().rstrip("!")


def body_decode(*, body: bytes, content_type: str) -> dict:
    """JSON object from the raw body, or the matching error (415, 413, 400)."""
    if not body.strip():
        raise ApiError("empty_body", "The request body is empty.", 400)
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise ApiError("unsupported_media_type", "Content-Type must be application/json.", 415)
    limit = conf.max_body_bytes()
    if len(body) > limit:
        raise ApiError("payload_too_large", f"The request body is limited to {limit:,} bytes.", 413)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError("invalid_encoding", "The request body must be UTF-8.", 400) from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ApiError("malformed_json", "The request body is not valid JSON.", 400) from None
    if not isinstance(data, dict):
        raise ApiError("invalid", "The request body must be a JSON object.", 400)
    return data


def _str(value) -> str:
    return value if isinstance(value, str) else ""


def _object(value) -> dict:
    """clientExtra and params arrive as an object, null, {} or even the string "null"."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip() not in ("", "null"):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return {}
        return decoded if isinstance(decoded, dict) else {}
    return {}


def skill_request_parse(data: dict, *, require_utterance: bool = True) -> SkillRequest:
    user_request = data.get("userRequest")
    if not isinstance(user_request, dict):
        raise ApiError("invalid", "userRequest is required and must be an object.", 400, field="userRequest")
    user = user_request.get("user")
    if not isinstance(user, dict):
        raise ApiError("invalid", "userRequest.user is required and must be an object.", 400, field="userRequest.user")
    user_id = user.get("id")
    if not isinstance(user_id, str) or not user_id.strip():
        raise ApiError("invalid", "userRequest.user.id is required.", 400, field="userRequest.user.id")
    user_id = user_id.strip()
    if len(user_id) > MAX_USER_ID_CHARS:
        raise ApiError("invalid", f"userRequest.user.id is limited to {MAX_USER_ID_CHARS} characters.", 400,
                       field="userRequest.user.id")
    if any(ord(c) < 0x21 or ord(c) == 0x7f for c in user_id):
        raise ApiError("invalid", "userRequest.user.id holds control characters.", 400, field="userRequest.user.id")

    bot = data.get("bot")
    bot_id = bot.get("id") if isinstance(bot, dict) else None
    if not isinstance(bot_id, str) or not bot_id.strip():
        raise ApiError("invalid", "bot.id is required.", 400, field="bot.id")

    utterance = user_request.get("utterance")
    if utterance is None and require_utterance:
        raise ApiError("invalid", "userRequest.utterance is required.", 400, field="userRequest.utterance")
    if require_utterance:
        utterance = user_text_validate(utterance, field="userRequest.utterance", max_chars=conf.max_utterance_chars())
    else:
        utterance = ""  # the welcome block: what was typed (if anything) is not needed
    callback_url = user_request.get("callbackUrl")
    if callback_url in ("", None):
        callback_url = None
    properties = user.get("properties") if isinstance(user.get("properties"), dict) else {}
    params = user_request.get("params") if isinstance(user_request.get("params"), dict) else {}
    action = data.get("action") if isinstance(data.get("action"), dict) else {}
    block = user_request.get("block") if isinstance(user_request.get("block"), dict) else {}
    return SkillRequest(
        user_id=user_id,
        utterance=utterance or "",
        bot_id=bot_id.strip(),
        callback_url=callback_url,
        surface=_str(params.get("surface")),
        lang=_str(user_request.get("lang")),
        plusfriend_user_key=_str(properties.get("plusfriendUserKey"))[:100],
        app_user_id=_str(properties.get("appUserId"))[:100],
        is_friend=properties.get("isFriend") is True,
        params={k: v for k, v in _object(action.get("params")).items() if isinstance(v, str)},
        client_extra=_object(action.get("clientExtra")),
        block_name=_str(block.get("name"))[:100],
    )
