"""Masking of personal data (emails, phone numbers, card-like numbers) for logs and list views."""

from __future__ import annotations

import re

# Hyphen-like separators people paste: ASCII, U+2010–U+2015 (hyphen, non-breaking hyphen, figure
# dash, en/em dash, bar), U+2212 minus and the fullwidth hyphen.
_DASHES = "\\-\u2010-\u2015\u2212\uFF0D"
_SEP = rf"[ .{_DASHES}]"
# Every pattern is linear in the input: a match may only start where the previous character
# cannot continue it (look-behind), and every run is bounded (a local part is at most 64
# characters, a domain label 63), so a long run without '@' is scanned once, not once per
# position. \w makes non-ASCII addresses (müller@exämple.de, 민수@예시.한국) masked too.
EMAIL_RE = re.compile(r"(?<![\w.%+\-])([\w%+\-])[\w.%+\-]{0,63}@((?:[\w\-]{1,63}\.){1,8}[\w\-]{1,63})")
# 13–19 digits in groups (cards) before phones, so a card is not half-masked as a phone.
# ASCII boundaries: Korean particles may follow a number ("010-1234-5678로"), UUID segments may not match.
CARD_RE = re.compile(rf"(?<![A-Za-z0-9{_DASHES}])(?:\d{_SEP}?){{12,18}}\d(?![A-Za-z0-9{_DASHES}])")
PHONE_RE = re.compile(
    rf"(?<![A-Za-z0-9+{_DASHES}])(\+?\d{{1,3}}{_SEP}?)?(\(?\d{{2,4}}\)?{_SEP}?)\d{{3,4}}{_SEP}?(\d{{4}})"
    rf"(?![A-Za-z0-9{_DASHES}])"
)
# Log lines are cut to this many characters before masking (a 404 logs the whole path).
LOG_MAX_CHARS = 4000


def _card(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[card ****" + digits[-4:] + "]"


def _phone(match: re.Match) -> str:
    return "[phone ***" + match.group(3)[-2:] + "]"


def mask_text(text: str) -> str:
    """'min@example.com 010-1234-5678' -> 'm***@example.com [phone ***78]'. Linear in len(text)."""
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
