"""Small things a new user met (issue 11, 5): a favicon, an /app/ index, logout on the quickstart page."""

from __future__ import annotations

from django.contrib.auth.models import User

from runtime.models import Membership


def test_favicon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("mejai/favicon.svg")
    assert 'rel="icon"' in client.get("/").content.decode()


def test_app_has_an_index(client):
    response = client.get("/app/")
    assert response.status_code == 302 and response["Location"] == "/app/settings/?tab=quickstart"


def test_quickstart_page_has_logout(client, organization):
    user = User.objects.create_user("op", password="pw", is_staff=True)
    Membership.objects.create(user=user, organization=organization)
    client.force_login(user)
    page = client.get("/app/settings/?tab=quickstart").content.decode()
    assert 'action="/admin/logout/"' in page and "로그아웃" in page and 'rel="icon"' in page
    client.post("/admin/logout/")
    assert client.get("/app/settings/?tab=quickstart").status_code in (302, 403)
