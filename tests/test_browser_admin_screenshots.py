"""Screenshots of every admin page, the conversations list and transcript, the overview and the API docs page,
at 1280 px and 390 px, into test-artifacts/admin/ (issue 11, done-when). Also checks, per page, that nothing
failed to load and that a changelist does not overflow the desktop width."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "admin"
VIEWPORTS = {"1280": {"width": 1280, "height": 800}, "390": {"width": 390, "height": 844}}


def demo_data(organization, agent):
    """A little of everything, so each page shows rows (Korean text included)."""
    from endusers.services import identity_claim, identity_resolve, memory_add, profile_name_set
    from runtime.models import Session, Turn
    from widgets.services import widget_create

    person = identity_resolve(organization=organization, kind="external_id", value="cust-1001", verified=True)
    profile_name_set(end_user=person, name="김민수")
    identity_claim(end_user=person, kind="email", value="minsu@example.com")
    memory_add(end_user=person, text="배송은 항상 경비실에 맡겨 달라고 요청함. 평일 오후에는 연락이 어렵고 저녁 7시 이후 통화 선호.")
    memory_add(organization=organization, text="환불 규정: 전자제품은 개봉 후 7일 이내, 미개봉은 30일 이내 환불 가능")
    widget = widget_create(organization=organization, agent=agent, name="쇼핑몰 위젯", allowed_domains=["shop.example.com"])
    for channel, texts in (
        ("web_widget", [("배송 언제 와요? 주문번호는 A-1234 입니다.", "주문 A-1234는 내일 오후에 도착할 예정이에요."),
                        ("경비실에 맡겨 주세요", "네, 경비실에 맡기도록 요청해 둘게요.")]),
        ("kakao", [("환불 규정 알려줘", "전자제품은 개봉 후 7일 이내에 환불할 수 있어요.")]),
        ("api", [("Where is my order?", "Your order ships tomorrow.")]),
    ):
        session = Session.objects.create(organization=organization, agent=agent, channel=channel, end_user=person,
                                         last_seq=len(texts) + 1)
        for seq, (user_text, reply_text) in enumerate(texts, start=1):
            Turn.objects.create(session=session, seq=seq, author=person, user_text=user_text, reply_text=reply_text,
                                status="completed", handled_by="llm", model="gpt-4o-mini", tokens_in=412,
                                tokens_out=58, ttft_ms=320, latency_ms=1480, completed_at=timezone.now())
        Turn.objects.create(session=session, seq=len(texts) + 1, author=person, user_text="또 하나 물어볼게요",
                            status="failed", error_code="llm_timeout", error="The language model did not answer in time.")
    return widget


def admin_urls() -> list[tuple[str, str]]:
    """(name, path) of the index, every changelist, every add page and one change page per model with rows."""
    urls = [("index-overview", reverse("admin:index"))]
    for model in sorted(admin.site._registry, key=lambda item: item._meta.label):
        label = f"{model._meta.app_label}-{model._meta.model_name}"
        urls.append((f"{label}-list", reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")))
        try:
            urls.append((f"{label}-add", reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")))
        except NoReverseMatch:
            pass
        obj = model._default_manager.order_by("pk").first()
        if obj is not None:
            urls.append((f"{label}-change", reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change",
                                                    args=[obj.pk])))
    from runtime.models import Agent

    agent = Agent.objects.order_by("pk").first()
    if agent is not None:
        urls.append(("runtime-agent-try", f"/admin/runtime/agent/{agent.pk}/try/"))
    urls.append(("api-docs", "/api/docs/"))
    return urls


def test_screenshot_every_admin_page(browser, live_server_asgi, organization, agent, client, offline_llm):
    demo_data(organization, agent)
    user = User.objects.create_superuser("screens", "screens@example.com", "pw")
    client.force_login(user)
    session_cookie = client.cookies["sessionid"].value
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems = []
    shots = 0
    for width, viewport in VIEWPORTS.items():
        context = browser.new_context(viewport=viewport, locale="ko-KR")
        context.add_cookies([{"name": "sessionid", "value": session_cookie, "url": live_server_asgi.url}])
        failures: list[str] = []
        context.on("response", lambda r, failures=failures: r.status >= 400 and failures.append(f"HTTP {r.status} {r.url}"))
        page = context.new_page()
        for name, path in admin_urls():
            failures.clear()
            response = page.goto(live_server_asgi.url + path, wait_until="load")
            if name.endswith("-add") and response is not None and response.status == 403:
                continue  # this model has no add page (read-only records): nothing to show
            if response is None or response.status >= 400:
                problems.append(f"{width} {path}: HTTP {response.status if response else '?'}")
            page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
            shots += 1
            if path.startswith("/admin/") and failures:
                problems.append(f"{width} {path}: {failures}")
            if width == "1280" and name.endswith("-list"):
                overflow = page.evaluate("() => document.scrollingElement.scrollWidth")
                if overflow > 1280:
                    problems.append(f"{width} {path}: page is {overflow}px wide")
        context.close()
    print("\n".join(problems))
    assert shots >= 2 * 40
    assert problems == []
