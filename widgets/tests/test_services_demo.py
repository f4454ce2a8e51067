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


def test_demo_widget_has_only_patterns_the_browser_can_use(organization, agent):
    from widgets.services import widget_frame_ancestors

    demo_setup(organization=organization, agent=agent)
    widget = ChatWidget.objects.get(organization=organization)
    assert widget.allowed_domains == ["localhost", "127.0.0.1"]
    assert "[" not in widget_frame_ancestors(widget)


def test_an_older_demo_widget_loses_its_ipv6_entry(organization, agent):
    from widgets.demo import DEMO_NAME

    ChatWidget.objects.create(organization=organization, agent=agent, name=DEMO_NAME,
                              allowed_domains=["localhost", "127.0.0.1", "[::1]"])
    demo_setup(organization=organization, agent=agent)
    assert ChatWidget.objects.get(organization=organization).allowed_domains == ["localhost", "127.0.0.1"]


def test_daily_counters_are_sharded_and_summed(organization, agent):
    from widgets.models import WidgetDailyStat
    from widgets.selectors import widget_stats_daily, widget_stats_day
    from widgets.services import stat_increment

    widget = ChatWidget.objects.create(organization=organization, agent=agent, name="w")
    for _ in range(40):
        stat_increment(widget_id=widget.pk, messages=1, loads=2)
    stat_increment(widget_id=widget.pk, opens=0)  # nothing to add: no row
    rows = WidgetDailyStat.objects.filter(widget=widget)
    assert 1 < rows.count() <= WidgetDailyStat.SHARDS  # 40 increments over 8 shards
    assert widget_stats_day(widget=widget) == {"loads": 80, "opens": 0, "conversations": 0, "messages": 40,
                                               "form_submits": 0}
    assert widget_stats_daily(widget=widget, days=7)[-1]["messages"] == 40
