"""The widget's chat and stream endpoints are plain async views (issue 14): CORS, methods and headers
as the DRF views had them (these assertions also pass on the DRF views)."""

# ruff: noqa: F811  (fixtures imported from support_api)
from __future__ import annotations

import pytest

from widgets.tests.support_api import ORIGIN, widget  # noqa: F401


@pytest.mark.parametrize("path,method,allow", [("/api/widget/chat", "POST", "POST, OPTIONS"),
                                               ("/api/widget/stream", "GET", "GET, HEAD, OPTIONS")])
def test_preflight_for_a_widget_origin_only(client, widget, path, method, allow):
    ok = client.options(path, HTTP_ORIGIN=ORIGIN, HTTP_ACCESS_CONTROL_REQUEST_METHOD=method)
    assert ok.status_code == 204 and ok["Access-Control-Allow-Origin"] == ORIGIN
    assert method in ok["Access-Control-Allow-Methods"] and "Authorization" in ok["Access-Control-Allow-Headers"]
    assert "Origin" in ok["Vary"] and ok["Allow"] == allow
    bad = client.options(path, HTTP_ORIGIN="https://evil.com", HTTP_ACCESS_CONTROL_REQUEST_METHOD=method)
    assert bad.status_code == 204 and "Access-Control-Allow-Origin" not in bad


@pytest.mark.parametrize("path,other", [("/api/widget/chat", "get"), ("/api/widget/stream", "post")])
def test_other_methods_are_405_in_the_error_shape(client, widget, path, other):
    response = getattr(client, other)(path, HTTP_ORIGIN=ORIGIN)
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    assert "Origin" in response["Vary"] and "Accept" in response["Vary"]


def test_chat_without_a_token_is_401_json(client, widget):
    response = client.post("/api/widget/chat", data="{}", content_type="application/json", HTTP_ORIGIN=ORIGIN)
    assert response.status_code == 401 and response.json()["error"]["code"] == "token_missing"
    assert "Access-Control-Allow-Origin" not in response  # no token, no origin to answer for


def test_chat_body_must_be_a_json_object(client, widget):
    response = client.post("/api/widget/chat", data="[1]", content_type="application/json",
                           HTTP_AUTHORIZATION="Bearer x.y.z")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"
