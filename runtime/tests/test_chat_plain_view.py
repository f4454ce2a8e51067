"""POST /api/runtime/chat is a plain async view (issue 14) with DRF's contract: methods, Accept,
authentication headers and the error shape as before (these assertions also pass on the DRF view)."""

from __future__ import annotations

import json

URL = "/api/runtime/chat"


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    return body["error"]


def test_other_methods_are_405_with_allow(client, api_key):
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {api_key}")
    _error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST, OPTIONS"
    _error(client.get(URL), 401, "unauthenticated")  # authentication first, as DRF checked it
    _error(client.get(URL, HTTP_ACCEPT="text/html"), 406, "not_acceptable")  # and negotiation before that


def test_an_unacceptable_accept_is_406(client, api_key):
    response = client.post(URL, data=json.dumps({"message": "hi"}), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {api_key}", HTTP_ACCEPT="text/html")
    _error(response, 406, "not_acceptable")


def test_401_names_the_scheme_and_varies_on_accept(client, db):
    response = client.post(URL, data=json.dumps({"message": "hi"}), content_type="application/json")
    _error(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"] == "Bearer"
    assert "Accept" in response["Vary"] and response["Allow"] == "POST, OPTIONS"


def test_authentication_is_checked_before_the_body(client, db):
    response = client.post(URL, data="{not json", content_type="application/json",
                           HTTP_AUTHORIZATION="Bearer mj_sk_unknown-key-000000")
    _error(response, 401, "unauthenticated")


def test_an_empty_body_is_a_missing_message(client, api_key):
    response = client.post(URL, data="", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert _error(response, 400, "invalid")["field"] == "message"


def test_not_a_json_constant(client, api_key):
    response = client.post(URL, data='{"message": NaN}', content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {api_key}")
    _error(response, 400, "malformed_json")


def test_options_needs_the_key_as_before(client, api_key):
    _error(client.options(URL), 401, "unauthenticated")
    response = client.options(URL, HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert response.status_code == 200 and response["Allow"] == "POST, OPTIONS"


def test_no_csrf_token_needed(api_key, offline_llm):
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post(URL, data=json.dumps({"message": "안녕"}),
                                                     content_type="application/json",
                                                     HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert response.status_code == 200, response.content
