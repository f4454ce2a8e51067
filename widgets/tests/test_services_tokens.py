"""Widget tokens: claims, audience separation from staff JWTs, expiry, tampering; stream tickets."""

from __future__ import annotations

import time

import jwt
import pytest
from django.conf import settings
from rest_framework_simplejwt.tokens import AccessToken

from mejai.errors import ApiError
from widgets.models import ChatWidget
from widgets.tokens import (
    stream_ticket_issue,
    stream_ticket_redeem,
    token_backend,
    widget_token_issue,
    widget_token_verify,
)


@pytest.fixture
def widget(organization, agent):
    return ChatWidget.objects.create(organization=organization, agent=agent, name="w", allowed_domains=["example.com"])


def issue(widget, **kw):
    args = dict(widget=widget, origin="https://example.com", visitor_id="visitor-1", end_user_id=7,
                session_id="7f1c1a2e-52d4-4a55-8a53-0f6a1f4a8a10", verified=False)
    args.update(kw)
    return widget_token_issue(**args)


def code_of(raw):
    with pytest.raises(ApiError) as exc:
        widget_token_verify(raw=raw)
    assert exc.value.status == 401
    return exc.value.code


def test_claims_round_trip(widget):
    raw, expires_at = issue(widget)
    claims = widget_token_verify(raw=raw)
    assert (claims.org_id, claims.widget_id, claims.origin, claims.visitor_id, claims.end_user_id) == (
        widget.organization_id, widget.pk, "https://example.com", "visitor-1", 7)
    assert claims.expires_at == expires_at
    payload = jwt.decode(raw, options={"verify_signature": False})
    assert payload["aud"] == "widget" and payload["token_type"] == "widget"
    assert 1790 <= payload["exp"] - payload["iat"] <= 1800


def test_missing_tampered_wrongly_signed_and_expired(widget, settings):
    raw, _ = issue(widget)
    assert code_of("") == "token_missing"
    assert code_of("not-a-jwt") == "token_invalid"
    header, payload, signature = raw.split(".")
    forged = jwt.encode({**jwt.decode(raw, options={"verify_signature": False}), "visitor_id": "someone-else"},
                        "wrong-key-of-sufficient-length-0123456789", algorithm="HS256")
    assert code_of(forged) == "token_invalid"
    assert code_of(f"{header}.{payload}.{signature[:-2]}xx") == "token_invalid"
    # Re-signed with the right key but another audience:
    other_aud = jwt.encode({**jwt.decode(raw, options={"verify_signature": False}), "aud": "other"},
                           token_backend().signing_key, algorithm="HS256")
    assert code_of(other_aud) == "token_invalid"
    settings.WIDGET_TOKEN_TTL_SECONDS = 60
    expired_payload = {**jwt.decode(raw, options={"verify_signature": False}), "exp": int(time.time()) - 60}
    expired = jwt.encode(expired_payload, token_backend().signing_key, algorithm="HS256")
    assert code_of(expired) == "token_expired"


def test_staff_jwt_is_not_a_widget_token_and_back(widget, django_user_model):
    user = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    staff = str(AccessToken.for_user(user))
    assert code_of(staff) == "token_invalid"
    raw, _ = issue(widget)
    from rest_framework_simplejwt.exceptions import TokenError

    with pytest.raises(TokenError):
        AccessToken(raw)
    assert settings.SECRET_KEY != token_backend().signing_key


def test_stream_ticket_is_single_use(widget):
    raw, _ = issue(widget)
    ticket, ttl = stream_ticket_issue(raw_token=raw, session_id="7f1c1a2e-52d4-4a55-8a53-0f6a1f4a8a10")
    assert 5 <= ttl <= 60
    assert stream_ticket_redeem(ticket=ticket) == (raw, "7f1c1a2e-52d4-4a55-8a53-0f6a1f4a8a10")
    for bad in (ticket, "mw_st_unknown", "x" * 500, ""):
        with pytest.raises(ApiError) as exc:
            stream_ticket_redeem(ticket=bad)
        assert exc.value.code == "ticket_invalid" and exc.value.status == 401
