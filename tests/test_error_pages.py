"""Error pages outside /api/ look like the rest of the product (Korean first); under /api/ they are the JSON shape."""

from __future__ import annotations

import json

import pytest
from django.test import RequestFactory

from mejai import views


@pytest.mark.django_db
def test_404_page_is_styled(client):
    page = client.get("/no-such-page/")
    assert page.status_code == 404
    body = page.content.decode()
    assert "mejai/base.css" in body and "페이지를 찾을 수 없어요" in body and "(Not found)" in body


@pytest.mark.django_db
def test_403_page_is_styled_and_json_under_api():
    from django.core.exceptions import PermissionDenied

    page = views.forbidden(RequestFactory().get("/admin/widgets/chatwidget/1/change/"), PermissionDenied())
    assert page.status_code == 403 and "권한이 없어요" in page.content.decode() and "mejai/base.css" in page.content.decode()
    api = views.forbidden(RequestFactory().get("/api/anything"), PermissionDenied())
    error = json.loads(api.content)["error"]
    assert api.status_code == 403 and error["code"] == "forbidden" and "(" in error["message"]


def test_500_page_is_styled():
    from django.template.loader import render_to_string

    assert "mejai/base.css" in render_to_string("500.html") and "문제가 생겼어요" in render_to_string("500.html")
