"""Issue 10 (Low, information leaks): a new API key never travels in a cookie; the quickstart page is never
cached; domain allowlists fold hostnames as browsers do (UTS-46), so faß.de does not allow fass.de."""

from __future__ import annotations

import pytest
from django.urls import reverse

from runtime.models import ApiKey, Membership
from widgets.services import allowed_domains_clean, host_normalize, origin_allowed, origin_parse, patterns_parse


def test_a_new_api_key_is_never_in_a_cookie(admin_client, organization):
    response = admin_client.post(reverse("admin:runtime_apikey_add"), {"organization": organization.pk, "name": "k"})
    assert response.status_code == 302
    key = ApiKey.objects.get(name="k")
    assert "messages" not in response.cookies
    assert not any(key.key_prefix in morsel.value for morsel in response.cookies.values())
    page = admin_client.get(response["Location"]).content.decode()
    assert key.key_prefix in page  # shown once, from the server-side session


def test_quickstart_page_is_never_cached(client, organization, django_user_model):
    user = django_user_model.objects.create_user("op", "op@example.com", "pw", is_staff=True)
    Membership.objects.create(user=user, organization=organization)
    client.force_login(user)
    response = client.get("/app/settings/?tab=quickstart")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]


@pytest.mark.parametrize(("pattern", "origin", "allowed"), [
    ("faß.de", "https://xn--fa-hia.de", True),
    ("faß.de", "https://fass.de", False),
    ("fass.de", "https://xn--fa-hia.de", False),
    ("例え.jp", "https://xn--r8jz45g.jp", True),
    ("ＳＨＯＰ.example.com", "https://shop.example.com", True),
])
def test_domain_allowlist_uses_uts46(pattern, origin, allowed):
    patterns = patterns_parse(allowed_domains_clean([pattern]))
    assert origin_allowed(origin=origin_parse(origin), patterns=patterns) is allowed


def test_uts46_normalisation():
    assert host_normalize("faß.de") == "xn--fa-hia.de"
    assert host_normalize("FASS.de") == "fass.de"
