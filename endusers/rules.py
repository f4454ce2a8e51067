"""Rule-based understanding of what people say about themselves (works without an LLM)."""

from __future__ import annotations

import re
import unicodedata

# 1–20 characters of Hangul, Latin letters, digits, middle dot, hyphen, underscore.
NAME_CHARS = r"[0-9A-Za-z\uac00-\ud7a3·\-_]"
NAME_RE = re.compile(rf"^{NAME_CHARS}{{1,20}}$")

_KO_PATTERNS = [
    # 내 이름은 민수야 / 제 이름은 민수입니다 / 내 이름은 민수라고 해
    re.compile(rf"(?:내|제|나의|저의)\s*이름은\s*({NAME_CHARS}{{1,20}}?)\s*(?:이에요|예요|입니다|이야|야|이라고\s*해요?|라고\s*해요?|라고\s*합니다|이라고\s*합니다|임|요)?\s*[.!~]*$"),
    # 저는 철수라고 해요 / 나는 영희라고 해
    re.compile(rf"^(?:저는|나는|난|전)\s*({NAME_CHARS}{{1,20}}?)\s*(?:이라고|라고)\s*(?:해요|합니다|해|불러\s*줘|불러\s*주세요)\s*[.!~]*$"),
    # 난 영희야 / 저는 철수입니다 / 전 민수예요
    re.compile(rf"^(?:저는|나는|난|전)\s*({NAME_CHARS}{{1,20}}?)\s*(?:이야|야|입니다|이에요|예요)\s*[.!~]*$"),
]
_EN_PATTERN = re.compile(rf"(?:^|\b)(?:my name is|call me|i am called|i'm called)\s+({NAME_CHARS}{{1,20}})\s*[.!]*$", re.IGNORECASE)

# Words that end "난 …야" sentences but are not names ("난 괜찮아", "난 학생이야").
_NOT_NAMES = {"괜찮", "괜찮아", "학생", "고객", "회원", "배고파", "좋아", "싫어", "여기", "처음", "누구", "뭐", "그래"}


def name_normalize(name: str) -> str:
    """NFC, trimmed, without trailing punctuation: ' 민수. ' -> '민수'."""
    return unicodedata.normalize("NFC", name or "").strip().rstrip(".!~?").strip()


def name_valid(name: str) -> bool:
    return bool(NAME_RE.match(name or ""))


def name_extract(text: str) -> str | None:
    """The name a person states in one message ("내 이름은 민수야" -> "민수"), or None."""
    text = " ".join(unicodedata.normalize("NFC", text or "").split())
    if not text or len(text) > 60:
        return None
    for pattern in _KO_PATTERNS:
        match = pattern.search(text)
        if match:
            name = match.group(1)
            if name_valid(name) and name not in _NOT_NAMES:
                return name
    match = _EN_PATTERN.search(text)
    if match and name_valid(match.group(1)):
        return match.group(1)
    return None


# Contact details said in a message ("메일은 min@example.com 이에요", "010-1234-5678로 연락 주세요").
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
PHONE_RE = re.compile(r"(?<![\d+])(?:\+?82[\s\-.]?)?0?1[016789][\s\-.]?\d{3,4}[\s\-.]?\d{4}(?!\d)|(?<![\d+])\+\d[\d\s\-]{7,16}\d(?!\d)")


def contacts_extract(text: str) -> dict[str, list[str]]:
    """Emails and phone numbers in a message, as typed (normalize before storing)."""
    text = text or ""
    return {"email": EMAIL_RE.findall(text), "phone": [m.strip() for m in PHONE_RE.findall(text)]}
