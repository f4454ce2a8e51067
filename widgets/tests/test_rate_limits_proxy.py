# ruff: noqa: F811  (fixtures imported from support_api)
"""Issue 10 (4): rate limits hold whatever X-Forwarded-For says; whole-widget caps bound a widget's spend."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from django.core.cache import cache

from mejai.proxy import client_address, client_ip_of_scope
from widgets.tests.support_api import PAGE, assert_error, init_ok, post_json, widget  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def init(client, widget, **headers):
    body = {"public_key": widget.public_key, "page_url": PAGE, "visitor": {"id": "visitor-aaaa-1"}}
    return post_json(client, "/api/widget/init", body, **headers)


@pytest.fixture(autouse=True)
def _fresh_counters(settings):
    settings.TRUSTED_PROXIES = ""
    settings.WIDGET_TRUST_X_FORWARDED_FOR = False
    cache.clear()
    yield
    cache.clear()


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "client"),
    [
        ("", "198.51.100.1", "1.2.3.4", "198.51.100.1"),  # no proxy trusted: the header is ignored
        ("1", "10.0.0.2", "6.6.6.6, 203.0.113.7", "203.0.113.7"),  # one proxy: its hop, not the client's
        ("1", "10.0.0.2", "", "10.0.0.2"),
        ("2", "10.0.0.2", "6.6.6.6, 203.0.113.7, 10.0.0.9", "203.0.113.7"),
        ("10.0.0.0/8", "10.0.0.2", "6.6.6.6, 203.0.113.7, 10.1.1.1", "203.0.113.7"),
        ("10.0.0.0/8", "198.51.100.1", "6.6.6.6", "198.51.100.1"),  # the peer is no trusted proxy
        ("10.0.0.0/8, ::1", "::1", "2001:db8::5", "2001:db8::5"),
        ("1", "10.0.0.2", "[2001:db8::5]:4711", "2001:db8::5"),
        ("1", "10.0.0.2", "203.0.113.7:5555", "203.0.113.7"),
    ],
)
def test_client_address_rule(settings, trusted, peer, forwarded, client):
    settings.TRUSTED_PROXIES = trusted
    assert client_address(peer=peer, forwarded_for=forwarded) == client


def test_websocket_scope_uses_the_same_rule(settings):
    settings.TRUSTED_PROXIES = "1"
    scope = {"client": ("10.0.0.2", 5000), "headers": [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.7")]}
    assert client_ip_of_scope(scope) == "203.0.113.7"


def test_random_forwarded_for_values_do_not_bypass_the_init_limit(client, widget, settings):
    settings.WIDGET_RATE_INIT_IP, settings.WIDGET_RATE_INIT_IP_WINDOW = 5, 86400
    statuses = [init(client, widget, HTTP_X_FORWARDED_FOR=f"198.18.{i}.{i}").status_code for i in range(8)]
    assert statuses[:5] == [200] * 5 and set(statuses[5:]) == {429}


def test_behind_one_proxy_the_rightmost_hop_is_limited(client, widget, settings):
    settings.TRUSTED_PROXIES = "1"
    settings.WIDGET_RATE_INIT_IP, settings.WIDGET_RATE_INIT_IP_WINDOW = 5, 86400
    statuses = [init(client, widget, HTTP_X_FORWARDED_FOR=f"198.18.{i}.{i}, 203.0.113.7").status_code
                for i in range(7)]
    assert statuses[:5] == [200] * 5 and set(statuses[5:]) == {429}
    # Another client behind the same proxy has its own count.
    assert init(client, widget, HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 200


def test_whole_widget_cap_holds_across_visitors_and_addresses(client, widget, settings, offline_llm):
    settings.WIDGET_RATE_CHAT_WIDGET, settings.WIDGET_RATE_CHAT_WIDGET_WINDOW = 3, 86400
    tokens = [init_ok(client, widget, visitor={"id": f"visitor-{uuid.uuid4().hex}"})["widget_token"]
              for _ in range(4)]
    statuses = [post_json(client, "/api/widget/chat", {"message": "안녕하세요"}, token=token,
                          REMOTE_ADDR=f"198.51.100.{i}").status_code for i, token in enumerate(tokens)]
    assert statuses == [200, 200, 200, 429]
    again = post_json(client, "/api/widget/chat", {"message": "또"}, token=tokens[0], REMOTE_ADDR="198.51.100.77")
    assert_error(again, 429, "rate_limited")


def test_daily_widget_cap_is_configured():
    from widgets import conf

    count, window = conf.rate_limit("CHAT_WIDGET_DAY")
    assert count > 0 and window == 86400


def test_shipped_server_command_does_not_trust_forwarded_headers():
    # daphne --proxy-headers takes the leftmost X-Forwarded-For value as the client: never ship it.
    commands = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD")]
    commands += [line for line in (ROOT / "docker-compose.yml").read_text().splitlines() if "command:" in line]
    assert commands and not any("--proxy-headers" in line for line in commands)
