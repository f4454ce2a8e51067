"""widgets.demo.demo_setup: one demo widget, allowed on localhost and 127.0.0.1 with any port."""

from __future__ import annotations

from widgets.demo import demo_setup
from widgets.models import ChatWidget
from widgets.services import origin_allowed, origin_parse, patterns_parse


def test_demo_widget_is_created_once_and_allows_local_ports(organization, agent):
    lines = demo_setup(organization=organization, agent=agent)
    widget = ChatWidget.objects.get(organization=organization)
    assert any(widget.public_key in line for line in lines)
    assert any(f'data-key="{widget.public_key}"' in line and "/widget.js" in line for line in lines)
    patterns = patterns_parse(widget.allowed_domains)
    for origin in ("http://localhost:8000", "http://localhost:5173", "http://127.0.0.1:3000", "https://localhost"):
        assert origin_allowed(origin=origin_parse(origin), patterns=patterns)
    assert not origin_allowed(origin=origin_parse("http://localhost.evil.com"), patterns=patterns)
    again = demo_setup(organization=organization, agent=agent)
    assert ChatWidget.objects.count() == 1 and again == lines
