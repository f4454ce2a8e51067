"""Masking of personal data (emails, phone numbers, card-like numbers) for logs and list views."""

from __future__ import annotations

import re

EMAIL_RE = re.compile(r"([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+)")
# 13–19 digits in groups (cards) before phones, so a card is not half-masked as a phone.
# ASCII boundaries: Korean particles may follow a number ("010-1234-5678로"), UUID segments may not match.
CARD_RE = re.compile(r"(?<![A-Za-z0-9\-])(?:\d[ \-]?){12,18}\d(?![A-Za-z0-9\-])")
PHONE_RE = re.compile(
    r"(?<![A-Za-z0-9\-+])(\+?\d{1,3}[ \-.]?)?(\(?\d{2,4}\)?[ \-.]?)\d{3,4}[ \-.]?(\d{4})(?![A-Za-z0-9\-])"
)


def _card(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[card ****" + digits[-4:] + "]"


def _phone(match: re.Match) -> str:
    return "[phone ***" + match.group(3)[-2:] + "]"


def mask_text(text: str) -> str:
    """'min@example.com 010-1234-5678' -> 'm***@example.com [phone ***78]'."""
    if not text:
        return text
    text = EMAIL_RE.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    text = CARD_RE.sub(_card, text)
    return PHONE_RE.sub(_phone, text)


def mask_identity(*, kind: str, value: str) -> str:
    """How an identity is shown in list views: enough to recognise, not enough to read."""
    if kind == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if kind == "phone":
        return value[:3] + "*" * max(0, len(value) - 7) + value[-4:] if len(value) > 7 else "***"
    if len(value) <= 6:
        return value[:1] + "***"
    return value[:3] + "…" + value[-2:]
