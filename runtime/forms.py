"""What a bot may ask a person to type into a form: an allow-list, never secrets.

The model's `request_user_info` call and a widget's submitted form values both go through
`form_field_allowed`: the standard fields (name, email, phone, order id) plus the ones an operator
added to the agent (`Agent.extra_form_fields`), and never a field whose name or label looks like a
secret (password, PIN, card number, CVC, one-time code, resident registration number…), whoever
asked for it — a crafted page or prompt cannot turn the chat into a phishing form.
"""

from __future__ import annotations

import re

STANDARD_FORM_FIELDS = ("name", "email", "phone", "order_id")
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# Secret-like words in a field's name or label (English and Korean); matched case-insensitively.
SECRET_LIKE = re.compile(
    r"pass(word|wd|code|phrase)?|pwd|\bpin\b|pin_|_pin|otp|one.?time|secret|token|api.?key|cvc|cvv|csc|"
    r"card|credit|iban|account.?(no|num)|routing|ssn|social.?security|security.?code|login|credential|"
    r"비밀번호|비번|암호|카드|계좌|보안.?코드|인증.?번호|주민.?등록|주민.?번호|일회용",
    re.IGNORECASE,
)


def secret_like(text: str) -> bool:
    return bool(SECRET_LIKE.search(text or ""))


def form_fields_allowed(extra=()) -> frozenset[str]:
    """The field names a form may have: the standard ones plus the operator's (secret-like ones never)."""
    names = {*STANDARD_FORM_FIELDS}
    for name in extra or ():
        if isinstance(name, str) and FIELD_NAME.match(name) and not secret_like(name):
            names.add(name)
    return frozenset(names)


def form_field_allowed(name: str, label: str = "", *, extra=()) -> bool:
    """May a form ask for `name` (shown as `label`)? Only allow-listed, never secret-like."""
    return name in form_fields_allowed(extra) and not secret_like(name) and not secret_like(label)
