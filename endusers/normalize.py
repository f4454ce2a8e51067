"""Normalization of identity values before they are matched: one person, one stored form."""

from __future__ import annotations

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

from mejai.errors import ApiError

DEFAULT_PHONE_REGION = "KR"
_email_validator = EmailValidator()


def email_normalize(value: str, *, field: str = "email") -> str:
    """Trim, lower-case, IDNA-encode the domain: ' Min@Exämple.com ' -> 'min@xn--exmple-cua.com'."""
    value = (value or "").strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise ApiError("invalid_email", "올바른 이메일 주소가 아닙니다. (Not a valid email address.)", 400, field=field)
    try:
        domain = domain.strip().rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:
        raise ApiError("invalid_email", "올바른 이메일 주소가 아닙니다. (Not a valid email address.)", 400, field=field) from None
    normalized = f"{local}@{domain}".lower()
    try:
        _email_validator(normalized)
    except ValidationError:
        raise ApiError("invalid_email", "올바른 이메일 주소가 아닙니다. (Not a valid email address.)", 400, field=field) from None
    if len(normalized) > 254:
        raise ApiError("invalid_email", "이메일 주소가 너무 깁니다. (The email address is too long.)", 400, field=field)
    return normalized


def phone_normalize(value: str, *, field: str = "phone", region: str = DEFAULT_PHONE_REGION) -> str:
    """E.164 with KR as the default region: '010-1234-5678' and '+82 10 1234 5678' -> '+821012345678'."""
    value = (value or "").strip()
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise ApiError("invalid_phone", "올바른 전화번호가 아닙니다. (Not a valid phone number.)", 400, field=field) from None
    if not phonenumbers.is_valid_number(number):
        raise ApiError("invalid_phone", "올바른 전화번호가 아닙니다. (Not a valid phone number.)", 400, field=field)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def identity_value_normalize(*, kind: str, value: str, field: str | None = None) -> str:
    """The stored form of an identity value, or an ApiError naming the field."""
    from endusers.models import Identity

    field = field or kind
    if kind not in Identity.Kind.values:
        raise ApiError("invalid_identity_kind", f"Unknown identity kind {kind!r}.", 400, field="kind")
    if not isinstance(value, str):
        raise ApiError("invalid", f"{field} must be a string.", 400, field=field)
    if kind == Identity.Kind.EMAIL:
        return email_normalize(value, field=field)
    if kind == Identity.Kind.PHONE:
        return phone_normalize(value, field=field)
    value = value.strip()
    if not value:
        raise ApiError("invalid", f"{field} must not be empty.", 400, field=field)
    if len(value) > 255:
        raise ApiError("invalid", f"{field} is limited to 255 characters.", 400, field=field)
    return value
