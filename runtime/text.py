"""Cleaning and measuring of user text before it is stored or sent to a model."""

from __future__ import annotations

import re
import unicodedata

from django.conf import settings

from mejai.errors import ApiError

# C0/C1 controls except tab and newline, plus zero-width and bidi-override characters
# that hide text from people reading it (and NUL, which PostgreSQL refuses outright).
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)


def text_clean(text: str) -> str:
    """Normalize to NFC, drop control and invisible characters, fold CRLF, trim."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _INVISIBLE.sub("", text).strip()


def user_text_validate(text, *, field: str = "message", max_chars: int | None = None) -> str:
    """Return the cleaned message or raise the project's error for it."""
    if not isinstance(text, str):
        raise ApiError("invalid", f"{field} must be a string.", 400, field=field)
    cleaned = text_clean(text)
    if not cleaned:
        raise ApiError("empty_message", "메시지가 비어 있습니다. (The message is empty.)", 400, field=field)
    limit = max_chars or settings.RUNTIME_MAX_MESSAGE_CHARS
    if len(cleaned) > limit:
        raise ApiError(
            "message_too_long",
            f"메시지는 {limit:,}자 이하로 보내 주세요. (The message is limited to {limit:,} characters.)",
            400,
            field=field,
            extra={"limit": limit},
        )
    return cleaned


def tokens_estimate(text: str) -> int:
    """Rough token count for budgeting history: ~1 token per 3 characters covers Korean and English."""
    return max(1, (len(text) + 2) // 3)


_HANGUL = re.compile("[\uac00-\ud7a3\u3131-\u318e]")


def text_is_korean(text: str) -> bool:
    """True when Hangul appears, or when there are no Latin letters at all (Korean-first)."""
    if _HANGUL.search(text):
        return True
    return not re.search("[A-Za-z]", text)
