"""Widget pages over HTTP: /widget.js, the embed iframe page, the quickstart settings page."""

from __future__ import annotations

import gzip
import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from runtime.models import Agent, Membership
from widgets.models import ChatWidget
from widgets.services import widget_create

WIDGET_JS_BUDGET_GZIP = 12 * 1024


@pytest.fixture
def widget(organization, agent):
    return widget_create(
        organization=organization,
        agent=agent,
        name="Acme 상담",
        allowed_domains=["shop.example.com", "*.acme.test", "localhost:3000"],
        theme={"color": "#0f766e", "welcome_message": "안녕하세요, Acme입니다!"},
    )


@pytest.fixture
def other_widget(other_organization):
    agent = Agent.objects.create(organization=other_organization, name="globex-bot")
    return widget_create(organization=other_organization, agent=agent, name="Globex", allowed_domains=["globex.test"])


def make_user(username, organization=None, *, staff=False):
    user = get_user_model().objects.create_user(username=username, password="pw-12345", is_staff=staff)
    if organization is not None:
        Membership.objects.create(user=user, organization=organization)
    return user


# --- /widget.js -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_widget_js_is_javascript_cached_with_etag(client):
    response = client.get("/widget.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert "max-age=" in response["Cache-Control"] and "public" in response["Cache-Control"]
    assert response["ETag"].startswith('"')
    assert "Accept-Encoding" in response["Vary"]
    assert "Access-Control-Allow-Credentials" not in response
    body = response.content.decode()
    assert "__MEJAI_LAUNCHER_CSS__" not in body
    assert re.search(r'"/static/widgets/launcher\.css\?v=[0-9a-f]{12}"', body)

    again = client.get("/widget.js", HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304
    assert client.get("/widget.js", HTTP_IF_NONE_MATCH='"stale"').status_code == 200


@pytest.mark.django_db
def test_widget_js_gzip_within_budget(client):
    plain = client.get("/widget.js").content
    response = client.get("/widget.js", HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert response["Content-Encoding"] == "gzip"
    assert gzip.decompress(response.content) == plain
    assert len(response.content) <= WIDGET_JS_BUDGET_GZIP, f"widget.js is {len(response.content)} B gzipped"


@pytest.mark.django_db
def test_widget_js_head_and_post(client):
    assert client.head("/widget.js").status_code == 200
    assert client.post("/widget.js").status_code == 405


def test_widget_js_has_no_inline_styles_or_html_parsing():
    """A strict host CSP blocks <style> and style= attributes: the loader uses a stylesheet and the CSSOM."""
    from widgets.views import STATIC_DIR

    shared = STATIC_DIR.parent / "mejai" / "markdown.js"  # one renderer for the widget and /chat
    for name, path in [(n, STATIC_DIR / n) for n in ("widget.js", "embed.js")] + [("markdown.js", shared)]:
        source = path.read_text()
        assert "<style" not in source, name
        assert 'setAttribute("style"' not in source, name
        assert ".style.cssText" not in source, name
        assert "innerHTML" not in source, name
        assert "insertAdjacentHTML" not in source and "document.write" not in source, name
    loader = (STATIC_DIR / "widget.js").read_text()
    # postMessage always names the target origin.
    assert re.findall(r"postMessage\(([^)]*)\)", loader) == ["msg, base"]
    assert "ev.origin !== base" in loader and "ev.source !== frame.contentWindow" in loader
    embed = (STATIC_DIR / "embed.js").read_text()
    assert re.findall(r"postMessage\(([^)]*)\)", embed) == ["msg, hostOrigin"]
    assert "ev.source !== parentWin" in embed and "ev.origin !== hostOrigin" in embed


# --- /embed/<public_key> ---------------------------------------------------------------------


def embed_config(response) -> dict:
    match = re.search(
        r'<script id="mejai-embed-config" type="application/json">(.*?)</script>', response.content.decode(), re.S
    )
    assert match, "embed config missing"
    return json.loads(match.group(1))


@pytest.mark.django_db
def test_embed_page_frame_ancestors_and_no_xfo(client, widget):
    response = client.get(f"/embed/{widget.public_key}?origin=https://shop.example.com")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert "X-Frame-Options" not in response
    csp = response["Content-Security-Policy"]
    directives = {d.split()[0]: d.split()[1:] for d in (p.strip() for p in csp.split(";")) if d}
    ancestors = directives["frame-ancestors"]
    assert "'self'" in ancestors
    assert "https://shop.example.com:*" in ancestors
    assert "https://*.acme.test:*" in ancestors
    assert "http://localhost:3000" in ancestors
    assert not any("example.org" in a or a == "*" for a in ancestors)
    # The page itself runs no inline code and accepts no inline styles.
    assert directives["script-src"] == ["'self'"] and directives["style-src"] == ["'self'"]
    html = response.content.decode()
    assert ' style="' not in html and "<style" not in html
    for tag in re.findall(r"<script[^>]*>", html):
        assert 'src="' in tag or 'type="application/json"' in tag, tag
    # The composer is disabled until the panel is connected: nothing typed before the JS runs is lost.
    assert re.search(r'<textarea[^>]*id="mw-input"[^>]*\bdisabled\b', html)
    config = embed_config(response)
    assert config["public_key"] == widget.public_key
    assert config["host_origin"] == "https://shop.example.com"
    assert config["theme"]["color"] == "#0f766e"
    assert config["locale"] == "ko"
    assert "identity_secret" not in html and widget.identity_secret not in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    "origin",
    [
        "https://evil-example.com",
        "https://shop.example.com.evil.com",
        "javascript:alert(1)",
        "null",
        "",
        "https://acme.test",
    ],
)
def test_embed_page_ignores_a_host_origin_not_allowed(client, widget, origin):
    response = client.get(f"/embed/{widget.public_key}", {"origin": origin})
    assert response.status_code == 200
    assert embed_config(response)["host_origin"] is None


@pytest.mark.django_db
def test_embed_page_wildcard_subdomain_and_own_origin(client, widget):
    assert (
        embed_config(client.get(f"/embed/{widget.public_key}?origin=https://a.b.acme.test"))["host_origin"]
        == "https://a.b.acme.test"
    )
    own = embed_config(client.get(f"/embed/{widget.public_key}?origin=http://testserver"))
    assert own["host_origin"] == "http://testserver"


@pytest.mark.django_db
def test_embed_page_locale_override(client, widget):
    response = client.get(f"/embed/{widget.public_key}?locale=en-US")
    assert embed_config(response)["locale"] == "en"
    assert '<html lang="en">' in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["mw_pk_doesnotexist000000000000", "nonsense", "mw_pk_" + "x" * 60, "%3Cscript%3E"])
def test_embed_unknown_key_is_a_404_page(client, widget, key):
    response = client.get(f"/embed/{key}")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert "위젯을 찾을 수 없습니다" in response.content.decode()
    assert "<script>" not in response.content.decode()


@pytest.mark.django_db
def test_embed_inactive_widget_is_a_404_page(client, widget):
    ChatWidget.objects.filter(pk=widget.pk).update(is_active=False)
    response = client.get(f"/embed/{widget.public_key}")
    assert response.status_code == 404
    assert "위젯을 찾을 수 없습니다" in response.content.decode()


# --- /app/settings/?tab=quickstart -----------------------------------------------------------

QS = "/app/settings/?tab=quickstart"


@pytest.mark.django_db
def test_quickstart_requires_login(client):
    response = client.get(QS)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")
    assert "tab%3Dquickstart" in response["Location"]


@pytest.mark.django_db
def test_quickstart_without_membership_explains(client, widget):
    client.force_login(make_user("drifter"))
    response = client.get(QS)
    assert response.status_code == 403
    body = response.content.decode()
    assert "소속된 조직이 없습니다" in body
    assert widget.public_key not in body


@pytest.mark.django_db
def test_quickstart_shows_snippet_key_secret_and_status(client, widget, other_widget):
    client.force_login(make_user("operator", widget.organization))
    response = client.get(QS)
    assert response.status_code == 200
    body = response.content.decode()
    snippet = f"&lt;script async src=&quot;http://testserver/widget.js&quot; data-key=&quot;{widget.public_key}&quot;&gt;&lt;/script&gt;"
    assert snippet in body
    assert "window.mejaiWidget" in body
    assert widget.identity_secret in body  # the operator's own secret, behind a reveal button
    assert "hmac.new(" in body and 'createHmac("sha256"' in body
    assert 'data-install-status="not-installed"' in body
    assert "shop.example.com" in body and "*.acme.test" in body
    assert f'src="/embed/{widget.public_key}?preview=1"' in body
    assert f'<script async src="/widget.js" data-key="{widget.public_key}"></script>' in body
    # Scoped to the user's organization.
    assert other_widget.public_key not in body and other_widget.identity_secret not in body


@pytest.mark.django_db
def test_quickstart_install_status_after_first_load(client, widget):
    now = timezone.now()
    ChatWidget.objects.filter(pk=widget.pk).update(
        first_seen_origin="https://shop.example.com",
        first_seen_at=now,
        last_seen_origin="https://shop.example.com",
        last_seen_at=now,
        last_seen_page_url="https://shop.example.com/cart",
    )
    client.force_login(make_user("operator", widget.organization))
    body = client.get(QS).content.decode()
    assert 'data-install-status="installed"' in body
    assert "https://shop.example.com/cart" in body
    assert "설치 확인" in body  # the matching allowed domain is marked


@pytest.mark.django_db
def test_quickstart_widget_choice_is_scoped(client, widget, other_widget, agent):
    second = widget_create(organization=widget.organization, agent=agent, name="B widget", allowed_domains=[])
    client.force_login(make_user("operator", widget.organization))
    body = client.get(f"{QS}&widget={second.pk}").content.decode()
    assert second.public_key in body and "허용된 도메인이 없어" in body
    assert f'<option value="{widget.pk}"' in body and f'<option value="{second.pk}" selected' in body
    assert client.get(f"{QS}&widget={other_widget.pk}").status_code == 404
    assert client.get(f"{QS}&widget=abc").status_code == 404
    assert client.get(f"{QS}&widget=999999").status_code == 404


@pytest.mark.django_db
def test_quickstart_empty_state_and_tab_redirect(client, organization):
    client.force_login(make_user("newbie", organization, staff=True))
    response = client.get("/app/settings/")
    assert response.status_code == 302 and response["Location"].endswith("?tab=quickstart")
    body = client.get(QS).content.decode()
    assert "아직 위젯이 없습니다" in body


@pytest.mark.django_db
def test_quickstart_admin_links_only_for_who_may_open_them(client, organization, agent):
    """The "edit"/"create" links go to admin pages; a staff member without the permission would land on a 403."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    from runtime.models import Membership

    widget = widget_create(organization=organization, agent=agent, name="w", allowed_domains=["example.com"])
    change = f"/admin/widgets/chatwidget/{widget.pk}/change/"
    user = get_user_model().objects.create_user(username="op", password="pw-12345", is_staff=True)
    Membership.objects.create(user=user, organization=organization)
    client.force_login(user)
    assert change not in client.get("/app/settings/?tab=quickstart").content.decode()
    assert client.get(change).status_code == 403
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_chatwidget", "change_chatwidget"]))
    user = get_user_model().objects.get(pk=user.pk)  # permissions are cached on the instance
    client.force_login(user)
    assert change in client.get("/app/settings/?tab=quickstart").content.decode()
    assert client.get(change).status_code == 200
