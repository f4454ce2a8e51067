"""The quickstart page in a real browser (issue 11, 5): its "edit" link lands on a styled page, and after
"Try it" the live widget's panel does not cover the install-status cards."""

from __future__ import annotations

from pathlib import Path

import pytest

from widgets.services import widget_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def operator_page(browser, live, client, organization, *, perms=(), viewport=None):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    from runtime.models import Membership

    user = get_user_model().objects.create_user(username=f"op{len(perms)}", password="pw-12345", is_staff=True)
    Membership.objects.create(user=user, organization=organization)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="widgets", codename__in=perms))
    client.force_login(user)
    ctx = browser.new_context(viewport=viewport or {"width": 1280, "height": 800}, locale="ko-KR")
    ctx.set_default_timeout(15000)
    ctx.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live.url}])
    page = ctx.new_page()
    failed = []
    # What makes a page look unstyled: a stylesheet, script, font or image that did not load. (The
    # widget's event stream is aborted by design when a test navigates away.)
    looks = ("stylesheet", "script", "font", "image")
    page.on("requestfailed", lambda req: req.resource_type in looks and failed.append(f"{req.url} {req.failure}"))
    page.on("response", lambda r: r.status >= 400 and r.request.resource_type in looks and failed.append(r.url))
    return ctx, page, failed


STYLED = """() => {
  const sheets = Array.from(document.styleSheets).filter(s => { try { return s.cssRules.length > 0; } catch (e) { return false; } });
  const font = getComputedStyle(document.body).fontFamily;
  return {sheets: sheets.length, font, serif: /^("?Times|serif)/i.test(font)};
}"""


@pytest.fixture
def widget(organization, agent):
    return widget_create(organization=organization, agent=agent, name="쇼핑몰 위젯", allowed_domains=["shop.example.com"],
                         theme={"greeting": ""})


def test_the_edit_link_lands_on_a_styled_admin_page(live_server_asgi, browser, client, organization, widget):
    ctx, page, failed = operator_page(browser, live_server_asgi, client, organization,
                                      perms=("view_chatwidget", "change_chatwidget"))
    page.goto(live_server_asgi.url + "/app/settings/?tab=quickstart")
    page.click("a.qs-link")  # 수정 Edit (allowed domains)
    page.wait_for_load_state("load")
    assert page.url.endswith(f"/admin/widgets/chatwidget/{widget.pk}/change/")
    assert page.is_visible("#header") and page.is_visible("#id_allowed_domains_text")
    look = page.evaluate(STYLED)
    assert look["sheets"] >= 2 and not look["serif"], look
    assert not failed, failed
    page.screenshot(path=str(ARTIFACTS / "quickstart-edit-target-1280.png"))
    ctx.close()


def test_without_the_admin_permission_there_is_no_edit_link_and_403_is_styled(live_server_asgi, browser, client,
                                                                               organization, widget):
    ctx, page, failed = operator_page(browser, live_server_asgi, client, organization)
    page.goto(live_server_asgi.url + "/app/settings/?tab=quickstart")
    page.wait_for_selector("#qs-domains")
    assert page.query_selector("a.qs-link") is None
    # Were the admin page opened anyway (an old bookmark), the 403 looks like the product, in Korean first.
    response = page.goto(live_server_asgi.url + f"/admin/widgets/chatwidget/{widget.pk}/change/")
    assert response.status == 403
    assert "권한이 없어요" in page.text_content("h1") and not page.evaluate(STYLED)["serif"]
    assert not failed, failed
    ctx.close()


COVERED = """() => {
  const panel = document.querySelector('.mejai-w-panel').getBoundingClientRect();
  return Array.from(document.querySelectorAll('.qs-side .qs-card')).map(card => {
    const r = card.getBoundingClientRect();
    const overlap = !(r.right <= panel.left || r.left >= panel.right || r.bottom <= panel.top || r.top >= panel.bottom);
    // What a click in the middle of the card's visible part would hit.
    const y = Math.min(Math.max(r.top + 20, 0), window.innerHeight - 1);
    const hit = document.elementFromPoint(r.left + r.width / 2, y);
    return {id: card.getAttribute('aria-labelledby'), overlap, hits_card: !!hit && card.contains(hit),
            visible: r.top < window.innerHeight};
  });
}"""


@pytest.mark.parametrize("width", [1280, 1024])
def test_try_it_does_not_cover_the_install_status_cards(live_server_asgi, browser, client, organization, widget, width):
    ctx, page, failed = operator_page(browser, live_server_asgi, client, organization,
                                      viewport={"width": width, "height": 800})
    page.goto(live_server_asgi.url + "/app/settings/?tab=quickstart")
    page.wait_for_selector(".mejai-w-launcher", state="visible")
    page.click("[data-widget-open]")
    page.wait_for_selector("html.qs-widget-open .mejai-w-open .mejai-w-panel", state="visible")
    # The panel's opening transition is over once its box stops moving (state, not time).
    page.wait_for_function("""() => {
      const p = document.querySelector('.mejai-w-panel'); const b = JSON.stringify(p.getBoundingClientRect());
      const same = window.__qsLastBox === b; window.__qsLastBox = b; return same && getComputedStyle(p).opacity === '1';
    }""", polling=100)
    cards = page.evaluate(COVERED)
    assert [c["id"] for c in cards] == ["qs-install", "qs-domains", "qs-preview"]
    for card in cards:
        assert not card["overlap"], cards
        if card["visible"]:
            assert card["hits_card"], cards
    page.screenshot(path=str(ARTIFACTS / f"quickstart-try-it-{width}.png"))
    # Closed again: the page takes its whole width back.
    page.evaluate("mejaiWidget.close()")
    page.wait_for_selector("html:not(.qs-widget-open)", state="attached")
    assert not failed, failed
    ctx.close()
