"""POST /api/widget/init: origins, paths, CORS, identity (HMAC), sessions, history, install status, limits."""

# ruff: noqa: F811  (fixtures imported from support_api)
from __future__ import annotations

import pytest

from endusers.models import Identity
from runtime.models import Session
from widgets.models import ChatWidget, WidgetDailyStat
from widgets.selectors import widget_stats_day
from widgets.services import identity_hash_make
from widgets.tests.support_api import (  # noqa: F401
    ORIGIN,
    PAGE,
    assert_error,
    chat,
    init,
    init_ok,
    other_widget,
    post_json,
    widget,
)
from widgets.tokens import widget_token_verify

URL = "/api/widget/init"


def test_init_returns_token_session_config_and_cors(client, widget):
    response = init(client, widget)
    assert response.status_code == 200, response.content
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in response["Vary"]
    body = response.json()
    assert set(body) >= {"widget_token", "token_expires_at", "session_id", "visitor_id", "end_user_verified",
                         "widget_config", "history"}
    assert body["visitor_id"] == "visitor-aaaa-1" and body["end_user_verified"] is False and body["history"] == []
    theme = body["widget_config"]["theme"]
    assert theme["color"] == "#ff5500" and theme["greeting"] == "안녕하세요!" and theme["position"] == "bottom-right"
    claims = widget_token_verify(raw=body["widget_token"])
    assert (claims.widget_id, claims.org_id, claims.origin, claims.visitor_id) == (
        widget.pk, widget.organization_id, ORIGIN, "visitor-aaaa-1")
    assert claims.session_id == body["session_id"]
    session = Session.objects.get(pk=body["session_id"])
    assert session.channel == "web_widget"
    assert {k: session.metadata[k] for k in ("widget_id", "origin", "page_url", "visitor_id")} == {
        "widget_id": widget.pk, "origin": ORIGIN, "page_url": PAGE, "visitor_id": "visitor-aaaa-1"}
    assert session.end_user.identities.filter(kind="visitor", value="visitor-aaaa-1", verified=False).exists()


def test_install_status_and_load_stats(client, widget):
    assert not widget.is_installed
    init_ok(client, widget)
    init_ok(client, widget, visitor={"id": "visitor-bbbb-2"})
    widget.refresh_from_db()
    assert widget.is_installed and widget.first_seen_origin == ORIGIN and widget.last_seen_origin == ORIGIN
    assert widget.last_seen_page_url == PAGE
    assert widget_stats_day(widget=widget)["loads"] == 2


def test_visitor_id_generated_when_missing(client, widget):
    body = init_ok(client, widget, visitor={})
    assert body["visitor_id"].startswith("v_")


def test_preflight_allowed_origin_only(client, widget):
    ok = client.options(URL, HTTP_ORIGIN=ORIGIN, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert ok.status_code == 204 and ok["Access-Control-Allow-Origin"] == ORIGIN
    assert "Content-Type" in ok["Access-Control-Allow-Headers"] and "Authorization" in ok["Access-Control-Allow-Headers"]
    assert "Origin" in ok["Vary"]
    bad = client.options(URL, HTTP_ORIGIN="https://evil.com", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert "Access-Control-Allow-Origin" not in bad


# --- bad input -------------------------------------------------------------------------------

def _no_session_created(before: int):
    assert Session.objects.count() == before


def test_unknown_and_inactive_key_404(client, widget):
    before = Session.objects.count()
    response = post_json(client, URL, {"public_key": "mw_pk_doesnotexist", "page_url": PAGE})
    assert_error(response, 404, "widget_not_found")
    widget.is_active = False
    widget.save()
    error = assert_error(init(client, widget), 404, "widget_not_found")
    assert "widget_token" not in error
    assert_error(post_json(client, URL, {"public_key": 12345}), 400, "invalid")
    _no_session_created(before)


@pytest.mark.parametrize("origin", ["https://evil.com", "https://evil-example.com", "https://example.com.evil.com",
                                    "https://shop.example.com.evil.com", "http://example.org", "null"])
def test_origin_not_allowed_403_no_token(client, widget, origin):
    before = Session.objects.count()
    response = init(client, widget, origin=origin, page_url=(origin + "/x") if origin != "null" else "")
    error = assert_error(response, 403, "origin_not_allowed")
    assert "Access-Control-Allow-Origin" not in response
    assert "widget_token" not in str(error)
    _no_session_created(before)
    widget.refresh_from_db()
    assert not widget.is_installed


def test_wildcard_subdomain_and_any_port_allowed(client, widget):
    init_ok(client, widget, origin="https://a.b.example.org", page_url="https://a.b.example.org/")
    init_ok(client, widget, origin="http://localhost:5173", page_url="http://localhost:5173/x")


def test_referer_fallback_when_no_origin(client, widget):
    response = post_json(client, URL, {"public_key": widget.public_key, "visitor": {"id": "visitor-aaaa-1"}},
                         origin=None, HTTP_REFERER=PAGE)
    assert response.status_code == 200, response.content
    response = post_json(client, URL, {"public_key": widget.public_key}, origin=None)
    assert_error(response, 403, "origin_not_allowed")


def test_allowed_host_on_disallowed_path_403(client, widget):
    widget.allowed_paths = ["/help"]
    widget.save()
    before = Session.objects.count()
    init_ok(client, widget, page_url=ORIGIN + "/help/faq")
    before += 1
    response = init(client, widget, page_url=ORIGIN + "/helpdesk")
    assert_error(response, 403, "path_not_allowed")
    assert_error(init(client, widget, page_url=ORIGIN + "/help/../admin"), 403, "path_not_allowed")
    _no_session_created(before)


def test_page_url_on_another_origin_is_refused(client, widget):
    response = init(client, widget, origin="https://evil.com", page_url=PAGE)
    assert_error(response, 403, "origin_not_allowed")
    response = init(client, widget, page_url="javascript:alert(1)")
    assert_error(response, 400, "invalid")


def test_malformed_json_and_bad_shapes(client, widget):
    assert_error(post_json(client, URL, "{not json"), 400, "malformed_json")
    assert_error(post_json(client, URL, "[1, 2]"), 400, "invalid")
    assert_error(post_json(client, URL, {"public_key": widget.public_key, "visitor": "me"}), 400, "invalid")
    assert_error(init(client, widget, visitor={"id": "<script>"}), 400, "invalid")
    assert_error(init(client, widget, locale=5), 400, "invalid")
    assert_error(init(client, widget, page_url=ORIGIN + "/" + "x" * 9000), 400, "invalid")


# --- identity --------------------------------------------------------------------------------

def signed(widget, user_id="user-42", **extra):
    return {"id": "visitor-aaaa-1", "user_id": user_id, "hash": identity_hash_make(secret=widget.identity_secret,
                                                                                   user_id=user_id), **extra}


def test_hmac_verified_identity(client, widget):
    body = init_ok(client, widget, visitor=signed(widget, name="김민수", email="minsu@example.com"))
    assert body["end_user_verified"] is True
    claims = widget_token_verify(raw=body["widget_token"])
    assert claims.verified
    identity = Identity.objects.get(kind="external_id", value="user-42")
    assert identity.verified and identity.end_user_id == claims.end_user_id
    assert Identity.objects.filter(kind="email", end_user_id=claims.end_user_id, verified=False).exists()


def test_hmac_mismatch_stays_unverified_when_not_required(client, widget):
    visitor = {"id": "visitor-aaaa-1", "user_id": "user-42", "hash": "0" * 64}
    body = init_ok(client, widget, visitor=visitor)
    assert body["end_user_verified"] is False
    # An unsigned user id is never used to find (or to create) the customer's user.
    assert not Identity.objects.filter(kind="external_id", value="user-42").exists()


def test_hmac_mismatch_401_when_required(client, widget):
    widget.require_verified_identity = True
    widget.save()
    before = Session.objects.count()
    bad = {"id": "visitor-aaaa-1", "user_id": "user-42", "hash": identity_hash_make(secret="other", user_id="user-42")}
    assert_error(init(client, widget, visitor=bad), 401, "identity_hash_invalid")
    assert_error(init(client, widget, visitor={"id": "visitor-aaaa-1", "user_id": "user-42", "hash": "é" * 64}), 401,
                 "identity_hash_invalid")
    assert_error(init(client, widget, visitor={"id": "visitor-aaaa-1"}), 401, "identity_required")
    _no_session_created(before)
    assert init_ok(client, widget, visitor=signed(widget))["end_user_verified"] is True


def test_rotated_secret_invalidates_old_hashes(client, widget):
    from widgets.services import widget_identity_secret_rotate

    visitor = signed(widget)
    widget_identity_secret_rotate(widget=widget)
    widget.refresh_from_db()
    assert init_ok(client, widget, visitor=visitor)["end_user_verified"] is False


# --- sessions and history --------------------------------------------------------------------

def test_reinit_resumes_session_with_history(client, widget, offline_llm):
    first = init_ok(client, widget)
    assert chat(client, first["widget_token"], "안녕하세요").status_code == 200
    again = init_ok(client, widget)
    assert again["session_id"] == first["session_id"] and again["resumed"] is True
    roles = [(m["role"], m["text"][:5]) for m in again["history"]]
    assert roles[0] == ("user", "안녕하세요") and roles[1][0] == "assistant"
    assert again["widget_token"] != first["widget_token"]


def test_visitor_only_history_is_per_visitor(client, widget, offline_llm):
    mine = init_ok(client, widget)
    chat(client, mine["widget_token"], "제 주문 번호는 1234입니다")
    theirs = init_ok(client, widget, visitor={"id": "visitor-zzzz-9"})
    assert theirs["session_id"] != mine["session_id"] and theirs["history"] == []


def test_verified_user_history_across_devices(client, widget, offline_llm):
    phone = init_ok(client, widget, visitor=signed(widget, user_id="user-7") | {"id": "device-phone-1"})
    chat(client, phone["widget_token"], "배송 언제 와요?")
    laptop = init_ok(client, widget, visitor=signed(widget, user_id="user-7") | {"id": "device-laptop-2"})
    assert laptop["session_id"] == phone["session_id"]
    assert laptop["history"][0]["text"] == "배송 언제 와요?"
    # The same device without the signature is only a visitor: none of the user's history.
    anonymous = init_ok(client, widget, visitor={"id": "device-laptop-3"})
    assert anonymous["session_id"] != phone["session_id"] and anonymous["history"] == []
    # A forged signature with a known user id gets nothing either.
    forged = init_ok(client, widget, visitor={"id": "device-evil-4", "user_id": "user-7", "hash": "f" * 64})
    assert forged["session_id"] != phone["session_id"] and forged["history"] == []


def test_history_is_returned_as_text(client, widget, offline_llm):
    body = init_ok(client, widget)
    trick = '<script>alert(1)</script> [click](javascript:alert(1))'
    chat(client, body["widget_token"], trick)
    again = init_ok(client, widget)
    assert again["history"][0]["text"] == trick


def test_preview_on_mejai_origin_does_not_count_as_install(client, widget):
    response = init(client, widget, origin="http://testserver", page_url="http://testserver/app/settings/")
    assert response.status_code == 200, response.content
    widget.refresh_from_db()
    assert not widget.is_installed and not WidgetDailyStat.objects.exists()


def test_init_rate_limited_429_with_retry_after(client, widget, settings):
    settings.WIDGET_RATE_INIT_IP = 2
    settings.WIDGET_RATE_INIT_IP_WINDOW = 86400  # no window boundary within the test
    from django.core.cache import cache

    cache.clear()
    init_ok(client, widget)
    init_ok(client, widget)
    response = init(client, widget)
    error = assert_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1 and error["retry_after"] >= 1
    assert "다시 시도" in error["message"] and "try again" in error["message"]
    assert response["Access-Control-Allow-Origin"] == ORIGIN


def test_rotated_public_key_refuses_the_old_snippet(client, widget):
    from widgets.services import widget_public_key_rotate

    old = ChatWidget.objects.get(pk=widget.pk)
    widget_public_key_rotate(widget=widget)
    assert_error(init(client, old), 404, "widget_not_found")
    init_ok(client, widget)


def test_numeric_user_id_is_accepted(client, widget):
    visitor = signed(widget, user_id="1234")
    visitor["user_id"] = 1234
    assert init_ok(client, widget, visitor=visitor)["end_user_verified"] is True
    assert_error(init(client, widget, visitor={"id": "visitor-aaaa-1", "user_id": True}), 400, "invalid")


def test_long_page_url_and_language_tags_are_accepted(client, widget):
    from runtime.models import Session

    long_url = PAGE + "?utm=" + "x" * 3000
    body = init_ok(client, widget, page_url=long_url, locale="en-US")
    session = Session.objects.get(pk=body["session_id"])
    assert session.metadata["locale"] == "en" and len(session.metadata["page_url"]) == 2000
