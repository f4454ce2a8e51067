"""Demo data: a widget allowed on localhost and 127.0.0.1 (any port), for `make run` and the quickstart."""

from __future__ import annotations

from django.conf import settings

from widgets.models import ChatWidget
from widgets.services import patterns_parse

DEMO_NAME = "데모 위젯 · Demo widget"
# No "[::1]": frame-ancestors cannot express an IPv6 literal (pattern_parse refuses it).
DEMO_DOMAINS = ["localhost", "127.0.0.1"]
DEMO_THEME = {
    "color": "#4f46e5",
    "icon": "chat",
    "position": "bottom-right",
    "launcher_title": "mejai 데모샵 상담",
    "greeting": "무엇을 도와드릴까요? 🙂",
    "welcome_message": "안녕하세요! mejai 데모샵입니다. 배송, 환불, 주문에 대해 물어보세요.",
    "mobile_allowed": True,
}


def _allowed_text(widget) -> str:
    """The widget's allowed domains as they are now (an operator may have edited them since the first run)."""
    domains = widget.allowed_domains or []
    if not domains:
        return "허용 도메인 없음: 어디서도 동작하지 않음 · no allowed domain: runs nowhere"
    return "allowed on " + ", ".join(domains)


def demo_setup(*, organization, agent) -> list[str]:
    """Create (once) the demo widget and return the lines to print: its key and the install snippet."""
    widget = ChatWidget.objects.filter(organization=organization, name=DEMO_NAME).first()
    if widget is None:
        widget = ChatWidget.objects.create(
            organization=organization, agent=agent, name=DEMO_NAME, allowed_domains=DEMO_DOMAINS, theme=DEMO_THEME,
            locale=ChatWidget.Locale.KO,
        )
    else:
        changed = []
        usable = [d for d in widget.allowed_domains or [] if patterns_parse([d])]
        if usable != widget.allowed_domains:
            widget.allowed_domains = usable  # a demo widget from before "[::1]" was refused
            changed.append("allowed_domains")
        if not widget.is_active:
            widget.is_active = True
            changed.append("is_active")
        if changed:
            widget.save(update_fields=[*changed, "updated_at"])
    base = settings.PUBLIC_BASE_URL
    return [
        f"  widget:    {widget.public_key}  ({_allowed_text(widget)})",
        f'  snippet:   <script async src="{base}/widget.js" data-key="{widget.public_key}"></script>',
        f"  install:   {base}/app/settings/?tab=quickstart",
    ]
