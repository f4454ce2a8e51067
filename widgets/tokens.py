"""Widget tokens: simplejwt tokens with audience "widget", their own type and signing key.

Staff JWTs (no audience, type "access") are refused here, and widget tokens are refused by the staff
authentication: PyJWT rejects a token whose audience is missing or unexpected, the token types differ
and the signing keys differ.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenError
from rest_framework_simplejwt.tokens import Token

from mejai.errors import ApiError
from widgets import conf

AUDIENCE = "widget"
ISSUER = "mejai"
TICKET_CACHE_PREFIX = "widget:stream-ticket:"
TOKEN_EXPIRED_MESSAGE = "위젯 토큰이 만료되었습니다. 다시 연결해 주세요. (The widget token has expired.)"


def _signing_key() -> str:
    explicit = getattr(settings, "WIDGET_TOKEN_SIGNING_KEY", "")
    if explicit:
        return explicit
    # Derived from SECRET_KEY, distinct from the staff JWT key (which is SECRET_KEY itself).
    return hmac.new(settings.SECRET_KEY.encode(), b"mejai.widgets.token.v1", hashlib.sha256).hexdigest()


_backends: dict[str, TokenBackend] = {}


def token_backend() -> TokenBackend:
    key = _signing_key()
    backend = _backends.get(key)
    if backend is None:
        backend = _backends[key] = TokenBackend("HS256", signing_key=key, audience=AUDIENCE, issuer=ISSUER, leeway=5)
    return backend


class WidgetToken(Token):
    token_type = "widget"
    lifetime = timedelta(seconds=1800)

    def get_token_backend(self) -> TokenBackend:
        return token_backend()


@dataclass(frozen=True)
class WidgetClaims:
    org_id: int
    widget_id: int
    origin: str
    visitor_id: str
    end_user_id: int | None
    session_id: str
    verified: bool
    expires_at: datetime
    key_fingerprint: str = ""  # of the widget's public key at issue: a rotation cuts the token off

    @property
    def principal(self) -> str:
        """Who the conversation belongs to: the verified end user, else the visitor."""
        return f"user:{self.end_user_id}" if self.verified else f"visitor:{self.visitor_id}"


def public_key_fingerprint(public_key: str) -> str:
    """A short digest of a widget's public key, carried in its tokens (the key itself is public anyway)."""
    return hashlib.sha256((public_key or "").encode()).hexdigest()[:16]


def widget_token_issue(
    *, widget, origin: str, visitor_id: str, end_user_id: int | None, session_id, verified: bool
) -> tuple[str, datetime]:
    """A signed widget token and its expiry time."""
    token = WidgetToken()
    token.set_exp(lifetime=timedelta(seconds=conf.token_ttl_seconds()))
    token["org_id"] = widget.organization_id
    token["widget_id"] = widget.pk
    token["origin"] = origin
    token["visitor_id"] = visitor_id
    token["end_user_id"] = end_user_id
    token["session_id"] = str(session_id)
    token["verified"] = bool(verified)
    token["key"] = public_key_fingerprint(widget.public_key)
    expires_at = datetime.fromtimestamp(token["exp"], tz=token.current_time.tzinfo)
    return str(token), expires_at


def widget_token_verify(*, raw: str | None) -> WidgetClaims:
    """Claims of a valid widget token; ApiError 401 token_missing / token_expired / token_invalid."""
    raw = (raw or "").strip()
    if not raw:
        raise ApiError("token_missing", "위젯 토큰이 필요합니다. (A widget token is required.)", 401)
    if len(raw) > 4096:
        raise ApiError("token_invalid", "위젯 토큰이 올바르지 않습니다. (The widget token is invalid.)", 401)
    try:
        token = WidgetToken(raw)
    except ExpiredTokenError as exc:
        raise ApiError(
            "token_expired", TOKEN_EXPIRED_MESSAGE, 401
        ) from exc
    except (TokenError, ValueError, TypeError) as exc:
        raise ApiError("token_invalid", "위젯 토큰이 올바르지 않습니다. (The widget token is invalid.)", 401) from exc
    try:
        return WidgetClaims(
            org_id=int(token["org_id"]),
            widget_id=int(token["widget_id"]),
            origin=str(token["origin"]),
            visitor_id=str(token["visitor_id"]),
            end_user_id=int(token["end_user_id"]) if token.get("end_user_id") is not None else None,
            session_id=str(token["session_id"]),
            verified=bool(token.get("verified")),
            expires_at=datetime.fromtimestamp(int(token["exp"]), tz=token.current_time.tzinfo),
            key_fingerprint=str(token.get("key") or ""),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ApiError("token_invalid", "위젯 토큰이 올바르지 않습니다. (The widget token is invalid.)", 401) from exc


def bearer_token(authorization: str | None) -> str:
    scheme, _, raw = (authorization or "").partition(" ")
    return raw.strip() if scheme.lower() == "bearer" else ""


# --- single-use stream tickets (for EventSource, which cannot send an Authorization header) ------

def stream_ticket_issue(*, raw_token: str, session_id) -> tuple[str, int]:
    """A short-lived single-use ticket standing for the token, for one session's stream."""
    ttl = conf.stream_ticket_ttl_seconds()
    ticket = "mw_st_" + secrets.token_urlsafe(24)
    cache.set(TICKET_CACHE_PREFIX + ticket, {"token": raw_token, "session_id": str(session_id)}, ttl)
    return ticket, ttl


def stream_ticket_redeem(*, ticket: str) -> tuple[str, str]:
    """(raw token, session id) of a ticket, consuming it; ApiError 401 when unknown, used or expired."""
    ticket = (ticket or "").strip()
    if not ticket.startswith("mw_st_") or len(ticket) > 100:
        raise ApiError("ticket_invalid", "스트림 티켓이 올바르지 않습니다. (The stream ticket is invalid.)", 401)
    key = TICKET_CACHE_PREFIX + ticket
    data = cache.get(key)
    # delete() is atomic: of two concurrent redeemers only one sees True.
    if not data or not cache.delete(key):
        raise ApiError(
            "ticket_invalid", "스트림 티켓이 만료되었거나 이미 사용되었습니다. (The stream ticket is expired or used.)", 401
        )
    return data["token"], data["session_id"]
