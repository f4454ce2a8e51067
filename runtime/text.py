"""Cleaning and measuring of user text before it is stored or sent to a model."""

from __future__ import annotations

import re
import unicodedata

from django.conf import settings

from mejai.errors import ApiError

# Removed everywhere: C0/C1 controls except tab and newline (NUL is also what PostgreSQL
# refuses), zero-width space, word joiner and the invisible math operators, the BOM, bidi
# embeddings/overrides/isolates (they reorder what people read: "Trojan Source"), and lone
# surrogates (not encodable). Kept: LRM/RLM/ALM (U+200E, U+200F, U+061C), which right-to-left
# text needs, variation selectors, the soft hyphen.
_REMOVE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2060-\u2064\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]"
)
# ZWNJ/ZWJ carry meaning between non-ASCII characters (Persian and Indic words, emoji
# sequences such as the family or the rainbow flag) and after a combining mark such as a
# virama; between ASCII, at the start or after a space they only hide text.
_JOINER = re.compile("[\u200c\u200d]")
# Tag characters spell invisible ASCII ("ASCII smuggling"); the only visible use is a
# subdivision flag: U+1F3F4, tags, U+E007F (England, Scotland, Wales).
_TAG_RUN = re.compile("[\U000e0000-\U000e007f]+")
_FLAG_TAGS = re.compile("[\U000e0020-\U000e007e]+\U000e007f")
_LINE_SEPARATORS = re.compile("[\u2028\u2029\x85]")


def _joiner_keep(match: re.Match) -> str:
    text, i = match.string, match.start()
    before = text[i - 1] if i > 0 else ""
    after = text[i + 1] if i + 1 < len(text) else ""
    if _joiner_carrier(before) and (_joiner_carrier(after) or unicodedata.category(before) in ("Mn", "Mc")):
        return match.group()  # after a virama it shapes the letter even at a word's end (Malayalam chillu)
    return ""


def _joiner_carrier(char: str) -> bool:
    return bool(char) and not char.isascii() and not char.isspace() and char not in "\u200c\u200d"


def _tags_keep(match: re.Match) -> str:
    text, i = match.string, match.start()
    if i > 0 and text[i - 1] == "\U0001f3f4" and _FLAG_TAGS.fullmatch(match.group()):
        return match.group()
    return ""


def text_clean(text: str) -> str:
    """Normalize to NFC, fold line breaks to \\n, drop what hides or reorders text, trim.

    Meaning-carrying invisible characters stay: ZWJ/ZWNJ between non-ASCII characters, LRM/RLM,
    variation selectors, the tags of a subdivision flag. See docs/model-compatibility.md.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _REMOVE.sub("", _LINE_SEPARATORS.sub("\n", text))
    text = unicodedata.normalize("NFC", text)
    if "\u200c" in text or "\u200d" in text:
        text = _JOINER.sub(_joiner_keep, text)
    if _TAG_RUN.search(text):
        text = _TAG_RUN.sub(_tags_keep, text)
    return text.strip()


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
